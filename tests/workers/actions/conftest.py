"""Factories for actions tests: clients whose every API call goes to one MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fieldrelay.settings import Settings
from workers.actions.context import ActionContext, MemoryLinkStore
from workers.clients import SettingsClients

Responder = Callable[[httpx.Request], httpx.Response]


class FakeApis:
    """Records each request and answers it with ``responder`` (a test sets it)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.responder: Responder = lambda request: httpx.Response(200, json={})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responder(request)

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


@pytest.fixture
def apis() -> FakeApis:
    return FakeApis()


@pytest.fixture
def clients(apis: FakeApis) -> SettingsClients:
    settings = Settings(
        _env_file=None,
        servicetrade_base_url="https://st.test/api",
        servicetrade_username="bot",
        servicetrade_password=SecretStr("st-pass"),
        synchroteam_base_url="https://ws.synchroteam.test",
        synchroteam_domain="acme",
        synchroteam_api_key=SecretStr("sy-key"),
        synergist_base_url="http://synergist.test",
        synergist_user="api",
        synergist_password=SecretStr("sg-pass"),
    )
    return SettingsClients(settings, transport=httpx.MockTransport(apis))


@pytest.fixture
def make_context() -> Callable[..., ActionContext]:
    def make(key: str = "ev1:rule:0", store: MemoryLinkStore | None = None) -> ActionContext:
        return ActionContext("ev1", "rule", 0, key, store if store is not None else MemoryLinkStore())

    return make
