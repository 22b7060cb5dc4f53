"""Factories for contract tests: sandboxes served over real sockets, and clients pointed at them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from sandbox.runner import SandboxRunner

SYNCHROTEAM_KEY = "5e1d2c3b-0000-4000-8000-000000000001"
PASSWORD = "sandbox-password"


class Served:
    """One sandbox app on a free port: its client base URL, its state and its control endpoints."""

    def __init__(self, runner: SandboxRunner, name: str) -> None:
        self.runner, self.name = runner, name
        self.app: Any = runner.apps[name]
        self.url = runner.urls[name]
        self.root = f"http://{runner.host}:{runner.ports[name]}"

    @property
    def state(self) -> Any:
        return self.app.state.sandbox

    def fault(self, **fault: Any) -> None:
        httpx.post(f"{self.root}/_sandbox/faults", json=fault, timeout=5).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.root}/_sandbox/requests", timeout=5).json()

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.root}/_sandbox{path}", timeout=5, **kwargs)


@pytest.fixture
def serve() -> Iterator[Callable[[str, Starlette], Served]]:
    """`serve("synchroteam", synchroteam.create_app(...))` starts it; all are stopped after the test."""
    runners: list[SandboxRunner] = []

    def start(name: str, app: Starlette) -> Served:
        runner = SandboxRunner({name: app}).start()
        runners.append(runner)
        return Served(runner, name)

    yield start
    for runner in runners:
        runner.stop()


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Registers connector clients to close after the test: `client = closing(ServiceTradeClient(...))`."""
    opened: list[Any] = []

    def track(client: Any) -> Any:
        opened.append(client)
        return client

    yield track
    for client in opened:
        client.close()
