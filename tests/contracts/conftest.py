"""Factories for contract tests: sandboxes served over real sockets, and clients pointed at them.

Each test module shares one runner of the default sandboxes (`shared`), put back to its seed before
every test; tests that need an app built with other options start their own with `serve`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox import servicetrade, synchroteam, synergist
from sandbox.control import build_app
from sandbox.runner import SandboxRunner

SYNCHROTEAM_KEY = "5e1d2c3b-0000-4000-8000-000000000001"
PASSWORD = "sandbox-password"


def hook_app() -> Starlette:
    """Any HTTP endpoint: answers 200 with what it got; the shared sandbox plumbing logs it and injects faults."""

    async def echo(request: Request) -> Response:
        raw = await request.body()
        return JSONResponse({"received": json.loads(raw) if raw else None})

    return build_app(
        [Route("/hooks/{name}", echo, methods=["POST", "PUT"])],
        state=None,
        reset=lambda: None,
        identify=lambda headers, query, body: None,
        error_body=lambda status, message: {"error": message},
    )


class Served:
    """One sandbox app on a free port: its client base URL, its state and its control endpoints."""

    def __init__(self, runner: SandboxRunner, name: str, http: httpx.Client) -> None:
        self.runner, self.name, self.http = runner, name, http
        self.app: Any = runner.apps[name]
        self.url = runner.urls[name]
        self.root = f"http://{runner.host}:{runner.ports[name]}"

    @property
    def state(self) -> Any:
        return self.app.state.sandbox

    def fault(self, **fault: Any) -> None:
        self.http.post(f"{self.root}/_sandbox/faults", json=fault).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return self.http.get(f"{self.root}/_sandbox/requests").json()

    def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, f"{self.root}/_sandbox{path}", **kwargs)

    def settle(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` requests are logged: a request the client gave up on still finishes here,
        and must not land in the next test's log of this shared sandbox."""
        deadline = time.monotonic() + timeout
        while len(self.requests()) < count:
            assert time.monotonic() < deadline, f"{self.name}: fewer than {count} requests logged"
            time.sleep(0.02)

    def reset(self) -> Served:
        """State, request log, faults and rate counters back to the start."""
        self.control("POST", "/reset").raise_for_status()
        return self


@pytest.fixture(scope="module")
def control_http() -> Iterator[httpx.Client]:
    """One client for the control endpoints: a new one per call costs an SSL context each time."""
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture(scope="module")
def shared_runner() -> Iterator[SandboxRunner]:
    apps = {
        "servicetrade": servicetrade.create_app(),
        "synchroteam": synchroteam.create_app(),
        "synergist": synergist.create_app(),
        "hook": hook_app(),
    }
    with SandboxRunner(apps) as runner:
        yield runner


@pytest.fixture
def shared(shared_runner: SandboxRunner, control_http: httpx.Client) -> Callable[[str], Served]:
    """`shared("synergist")`: this module's running sandbox of that name, back at its seed."""
    return lambda name: Served(shared_runner, name, control_http).reset()


@pytest.fixture
def serve(control_http: httpx.Client) -> Iterator[Callable[[str, Any], Served]]:
    """`serve("synchroteam", synchroteam.create_app(...))` starts it; all are stopped after the test."""
    runners: list[SandboxRunner] = []

    def start(name: str, app: Any) -> Served:
        runner = SandboxRunner({name: app}).start()
        runners.append(runner)
        return Served(runner, name, control_http)

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
