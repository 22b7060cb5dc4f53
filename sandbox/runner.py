"""Serve sandbox apps from a background thread on free ports, for end-to-end tests in one process."""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette

from sandbox import servicetrade, synchroteam, synergist

# What a client is configured with: ServiceTrade's base includes /api, the others are bare hosts.
BASE_PATHS = {"servicetrade": "/api", "synchroteam": "", "synergist": ""}


class SandboxRunner:
    """Start uvicorn servers for `apps` (default: all three sandboxes) on free ports.

    >>> with SandboxRunner() as running:                     # doctest: +SKIP
    ...     httpx.get(running.urls["servicetrade"] + "/")    # http://127.0.0.1:<port>/api/
    """

    def __init__(self, apps: dict[str, Starlette] | None = None, *, host: str = "127.0.0.1") -> None:
        self.apps = apps or {
            "servicetrade": servicetrade.create_app(),
            "synchroteam": synchroteam.create_app(),
            "synergist": synergist.create_app(),
        }
        self.host = host
        self.servers = {
            name: uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off"))
            for name, app in self.apps.items()
        }
        self.ports: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="sandbox-runner", daemon=True)

    @property
    def urls(self) -> dict[str, str]:
        return {name: f"http://{self.host}:{port}{BASE_PATHS.get(name, '')}" for name, port in self.ports.items()}

    def _run(self) -> None:
        async def serve_all() -> None:
            await asyncio.gather(*(server.serve() for server in self.servers.values()))

        asyncio.run(serve_all())

    def start(self, timeout: float = 10.0) -> SandboxRunner:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not all(s.started for s in self.servers.values()):
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("sandbox servers did not start")
            time.sleep(0.01)
        for name, server in self.servers.items():
            self.ports[name] = server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def __enter__(self) -> SandboxRunner:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
