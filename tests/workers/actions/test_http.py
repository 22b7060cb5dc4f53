"""The http.request action."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from tests.workers.actions.conftest import FakeApis
from workers.actions.context import ActionContext
from workers.actions.registry import ACTIONS
from workers.clients import SettingsClients
from workers.connectors.errors import Unavailable


def test_request_sends_the_context_idempotency_key(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = lambda r: httpx.Response(200, json={"received": json.loads(r.content)})
    spec = ACTIONS["http.request"]
    params = spec.params.model_validate(
        {"url": "https://hooks.test/in", "method": "put", "headers": {"X-A": "1"}, "json": {"job": 5}}
    )
    ctx = make_context(key="servicetrade:job:5:rule:0")
    result = spec.run(clients, params, ctx)
    assert result == {"status": 200, "json": {"received": {"job": 5}}, "text": None}
    request = apis.requests[0]
    assert request.method == "PUT" and request.headers["Idempotency-Key"] == ctx.call_key()
    assert request.headers["X-A"] == "1"


def test_the_key_is_per_event_and_stable_across_retries() -> None:
    first = ActionContext("ev1", "rule", 0, "servicetrade:job:5:rule:0")
    assert first.call_key() == ActionContext("ev1", "rule", 0, "servicetrade:job:5:rule:0").call_key()
    assert first.call_key() != ActionContext("ev2", "rule", 0, "servicetrade:job:5:rule:0").call_key()
    assert first.call_key() != ActionContext("ev1", "rule", 1, "servicetrade:job:5:rule:1").call_key()


def test_server_errors_are_retryable(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = lambda r: httpx.Response(502)
    spec = ACTIONS["http.request"]
    with pytest.raises(Unavailable):
        spec.run(clients, spec.params.model_validate({"url": "https://hooks.test/"}), make_context())


@pytest.mark.parametrize(
    "params",
    [
        {"url": "ftp://x/"},
        {"url": "hooks.test/x"},
        {"url": "https://x/", "method": "TRACE"},
        {"uri": "https://x/"},
    ],
)
def test_invalid_params(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ACTIONS["http.request"].params.model_validate(params)
