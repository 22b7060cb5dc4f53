"""Factories for sandbox apps and clients; each test builds its own, nothing is shared or mutated."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from sandbox import servicetrade, synchroteam, synergist

SYNCHROTEAM_KEY = "5e1d2c3b-0000-4000-8000-000000000001"


class FakeClock:
    """A settable clock so windows, quotas and timestamps can be compressed in tests."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def basic(domain: str = "sandbox", key: str = SYNCHROTEAM_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{domain}:{key}".encode()).decode()}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def st_app(clock: FakeClock) -> Any:
    return servicetrade.create_app(servicetrade.ServiceTradeState(clock=clock))


@pytest.fixture
def st_client(st_app: Any) -> Iterator[TestClient]:
    """A ServiceTrade client already logged in (its cookie jar holds PHPSESSID)."""
    with TestClient(st_app) as client:
        response = client.post("/api/auth", json={"username": "sandbox", "password": "sandbox-password"})
        assert response.status_code == 200
        yield client


@pytest.fixture
def sync_factory(clock: FakeClock) -> Callable[..., TestClient]:
    def make(**options: Any) -> TestClient:
        app = synchroteam.create_app(synchroteam.SynchroteamState(clock=clock), **options)
        client = TestClient(app)
        client.headers.update(basic())
        return client

    return make


@pytest.fixture
def sync_client(sync_factory: Callable[..., TestClient]) -> TestClient:
    return sync_factory()


@pytest.fixture
def syn_client(clock: FakeClock) -> TestClient:
    return TestClient(synergist.create_app(synergist.SynergistState(clock=clock), error_form="json404"))


HOOK = "http://hooks.test/catcher?xuid=2346"


class Catcher:
    """Stands in for the product's receiver; answers with the queued statuses, then 200."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.messages: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content)
        if str(message.get("messageId", "")).startswith("confirm-"):
            self.probes.append(message)  # the confirmation probe: answered, not counted as a message
            return httpx.Response(200)
        self.messages.append(message)
        return httpx.Response(self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def catcher(st_app: Any) -> Catcher:
    catcher = Catcher()
    st_app.state.sandbox.dispatcher.transport = httpx.MockTransport(catcher)
    st_app.state.sandbox.dispatcher.set_controls({"retry_delay": 0})
    return catcher


def add_hook(client: TestClient, **extra: Any) -> dict[str, Any]:
    response = client.post("/api/webhook", json={"hookUrl": HOOK, **extra})
    assert response.status_code == 200
    return response.json()["data"]
