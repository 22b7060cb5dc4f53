"""Sandboxes on real sockets with steerable clocks, and a factory for poll contexts that capture events."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from pydantic import SecretStr

from fieldrelay.settings import Settings, load_settings
from sandbox import servicetrade, synchroteam, synergist
from sandbox.runner import SandboxRunner
from sandbox.servicetrade_store import ServiceTradeState
from sandbox.synchroteam_store import SynchroteamState
from sandbox.synergist_store import SynergistState
from workers.connectors.synchroteam import SynchroteamClient
from workers.connectors.synergist import SynergistClient
from workers.polling.pollers import PollContext

SYNCHROTEAM_KEY = "5e1d2c3b-0000-4000-8000-000000000001"


@dataclass
class Clock:
    """A sandbox's clock: real time plus `offset`, or `frozen` when set (equal timestamps)."""

    offset: float = 0.0
    frozen: float | None = None

    def __call__(self) -> float:
        return self.frozen if self.frozen is not None else time.time() + self.offset


@dataclass
class Sandboxes:
    runner: SandboxRunner
    clocks: dict[str, Clock]
    states: dict[str, Any]

    def control(self, system: str, path: str) -> str:
        return f"http://127.0.0.1:{self.runner.ports[system]}/_sandbox{path}"

    def reset(self) -> None:
        for system, clock in self.clocks.items():
            clock.offset, clock.frozen = 0.0, None
            httpx.post(self.control(system, "/reset"), timeout=10).raise_for_status()


def start_sandboxes(**synchroteam_limits: Any) -> Sandboxes:
    clocks = {name: Clock() for name in ("servicetrade", "synchroteam", "synergist")}
    states: dict[str, Any] = {
        "servicetrade": ServiceTradeState(clock=clocks["servicetrade"]),
        "synchroteam": SynchroteamState(clock=clocks["synchroteam"]),
        "synergist": SynergistState(clock=clocks["synergist"]),
    }
    apps = {
        "servicetrade": servicetrade.create_app(states["servicetrade"]),
        "synchroteam": synchroteam.create_app(states["synchroteam"], **synchroteam_limits),
        "synergist": synergist.create_app(states["synergist"]),
    }
    return Sandboxes(SandboxRunner(apps).start(), clocks, states)


@pytest.fixture(scope="module")
def module_sandboxes() -> Iterator[Sandboxes]:
    sandboxes = start_sandboxes()
    yield sandboxes
    sandboxes.runner.stop()


@pytest.fixture
def sandboxes(module_sandboxes: Sandboxes) -> Sandboxes:
    module_sandboxes.reset()
    return module_sandboxes


def sandbox_settings(sandboxes: Sandboxes, redis_url: str, **overrides: Any) -> Settings:
    return load_settings(**sandbox_values(sandboxes, redis_url, **overrides))


def sandbox_values(sandboxes: Sandboxes, redis_url: str, **overrides: Any) -> dict[str, Any]:
    urls = sandboxes.runner.urls
    values: dict[str, Any] = dict(
        redis_url=redis_url,
        servicetrade_base_url=urls["servicetrade"],
        servicetrade_username="sandbox",
        servicetrade_password="sandbox-password",
        synchroteam_base_url=urls["synchroteam"],
        synchroteam_domain="sandbox",
        synchroteam_api_key=SYNCHROTEAM_KEY,
        synergist_base_url=urls["synergist"],
        synergist_user="sandbox",
        synergist_password="sandbox-password",
        poll_overlap=30,
        poll_webhook_grace=0,
        poll_interval=0.001,  # tests poll back to back
    )
    values.update(overrides)
    return values


@dataclass
class Capture:
    """A poll context whose enqueue appends to `events`; `poll(name)` runs one poller once."""

    context: PollContext
    events: list[dict[str, Any]] = field(default_factory=list)

    def poll(self, name: str) -> Any:
        return self.context.poller(name).run()

    def take(self) -> list[dict[str, Any]]:
        taken, self.events[:] = list(self.events), []
        return taken


MakeCapture = Callable[..., Capture]


@pytest.fixture
def capture(sandboxes: Sandboxes, redis_url: str) -> Iterator[MakeCapture]:
    """`capture(reconcile=..., **settings)`: a fresh context against the sandboxes and the test's Redis."""
    made: list[Capture] = []

    def make(reconcile: bool = False, **overrides: Any) -> Capture:
        settings = sandbox_settings(sandboxes, redis_url, **overrides)
        events: list[dict[str, Any]] = []
        ctx = PollContext(settings, redis.Redis.from_url(redis_url), enqueue=events.append, reconcile=reconcile)
        made.append(Capture(ctx, events))
        return made[-1]

    yield make
    for one in made:
        assert one.context.clients is not None
        one.context.clients.close()
        one.context.redis.close()


@pytest.fixture
def synchroteam_client(sandboxes: Sandboxes) -> Iterator[SynchroteamClient]:
    """A client of the Synchroteam sandbox, closed however the test ends: a client left open by a failed
    assertion warns about its socket when collected, in whichever later test that happens."""
    client = SynchroteamClient(sandboxes.runner.urls["synchroteam"], "sandbox", SecretStr(SYNCHROTEAM_KEY))
    yield client
    client.close()


@pytest.fixture
def synergist_client(sandboxes: Sandboxes) -> Iterator[SynergistClient]:
    client = SynergistClient(sandboxes.runner.urls["synergist"], "sandbox", SecretStr("sandbox-password"), "1")
    yield client
    client.close()
