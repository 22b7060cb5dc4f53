"""OutboundClient (the http.request action's client) against httpx.MockTransport."""

from __future__ import annotations

import pickle

import httpx
import pytest

from workers.connectors.errors import AuthFailed, ConnectorError, NotFound, RateLimited, Rejected, Unavailable
from workers.connectors.outbound import (
    OutboundClient,
    OutboundNotFound,
    OutboundRateLimited,
    OutboundRejected,
    OutboundUnavailable,
)


def test_request_sends_json_and_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"ok": True})

    client = OutboundClient(transport=httpx.MockTransport(handler))
    result = client.request("post", "https://hooks.test/x?a=1", json={"n": 1}, idempotency_key="k1")
    assert result == {"status": 201, "json": {"ok": True}, "text": None}
    assert seen[0].method == "POST" and seen[0].headers["Idempotency-Key"] == "k1"
    assert seen[0].content == b'{"n":1}'
    client.request("GET", "https://hooks.test/x", headers={"idempotency-key": "mine"}, idempotency_key="k1")
    assert seen[1].headers.get_list("Idempotency-Key") == ["mine"]


def test_text_answers_come_back_as_text() -> None:
    client = OutboundClient(transport=httpx.MockTransport(lambda r: httpx.Response(200, text="fine")))
    assert client.request("GET", "https://hooks.test/") == {"status": 200, "json": None, "text": "fine"}


@pytest.mark.parametrize(
    ("status", "cls", "generic"),
    [
        (302, OutboundRejected, Rejected),
        (400, OutboundRejected, Rejected),
        (401, OutboundRejected, AuthFailed),
        (404, OutboundNotFound, NotFound),
        (429, OutboundRateLimited, RateLimited),
        (503, OutboundUnavailable, Unavailable),
    ],
)
def test_statuses_map_to_typed_errors(status: int, cls: type[ConnectorError], generic: type) -> None:
    response = httpx.Response(status, headers={"Retry-After": "5", "Location": "https://elsewhere.test/"})
    client = OutboundClient(transport=httpx.MockTransport(lambda r: response))
    token = "Bearer very-secret-token"
    with pytest.raises(cls) as info:
        client.request("POST", "https://hooks.test/x?token=abc", headers={"Authorization": token})
    err = info.value
    assert isinstance(err, generic) and err.path == "/x" and err.status == status
    assert type(pickle.loads(pickle.dumps(err))) is type(err)
    assert "abc" not in str(err) and token not in repr(err)


def test_network_errors_are_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow")

    with pytest.raises(OutboundUnavailable):
        OutboundClient(transport=httpx.MockTransport(handler)).request("GET", "https://hooks.test/")


def test_a_request_httpx_cannot_build_is_rejected_not_raised_raw() -> None:
    client = OutboundClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    with pytest.raises(OutboundRejected) as info:
        client.request("GET", "https://hooks.test/x", headers={"X-Name": "Zoë"})
    assert info.value.status is None and info.value.path == "/x"
