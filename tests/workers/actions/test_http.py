"""The http.request action."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from tests.workers.actions.conftest import FakeApis
from workers.actions.context import ActionContext, SettingsClients
from workers.actions.registry import ACTIONS
from workers.connectors.errors import Unavailable


def test_request_sends_the_context_idempotency_key(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = lambda r: httpx.Response(200, json={"received": json.loads(r.content)})
    spec = ACTIONS["http.request"]
    params = spec.params.model_validate(
        {"url": "https://hooks.test/in", "method": "put", "headers": {"X-A": "1"}, "json": {"job": 5}}
    )
    result = spec.run(clients, params, make_context(key="ev9:r:2"))
    assert result == {"status": 200, "json": {"received": {"job": 5}}, "text": None}
    request = apis.requests[0]
    assert request.method == "PUT" and request.headers["Idempotency-Key"] == "ev9:r:2"
    assert request.headers["X-A"] == "1"


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
