"""Factories for sandbox apps and clients; each test builds its own, nothing is shared or mutated."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

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
