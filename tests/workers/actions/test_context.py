"""SettingsClients builds each client once, on first use; errors from clients reach the caller typed."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest

from tests.workers.actions.conftest import FakeApis
from workers.actions.context import ActionContext
from workers.actions.registry import ACTIONS
from workers.clients import SettingsClients
from workers.connectors.errors import RateLimited
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synchroteam import SynchroteamClient


def test_clients_are_built_lazily_and_once(clients: SettingsClients) -> None:
    assert clients._built == {}
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(clients.synchroteam)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 1 and isinstance(seen[0], SynchroteamClient)
    assert isinstance(clients.servicetrade, ServiceTradeClient)
    assert set(clients._built) == {"synchroteam", "servicetrade"}


def test_client_reprs_hide_the_settings_secrets(clients: SettingsClients) -> None:
    text = " ".join(repr(c) for c in (clients.servicetrade, clients.synchroteam, clients.synergist, clients.http))
    for secret in ("st-pass", "sy-key", "sg-pass"):
        assert secret not in text


def test_a_rate_limit_reaches_the_pipeline_typed(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = lambda r: httpx.Response(429, json={"message": "slow"}, headers={"X-RateLimit-Reset": "99"})
    spec = ACTIONS["synchroteam.job.upsert"]
    with pytest.raises(RateLimited) as info:
        spec.run(clients, spec.params.model_validate({"myId": "st-1"}), make_context())
    assert info.value.reset_at == 99.0
