"""Numbers and other hostile bodies: never a 500 for a body, nothing enqueued on a 4xx (issue 12, item 4)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from fieldrelay.queues import EVENTS_QUEUE
from fieldrelay.settings import Settings
from receiver.app import create_app
from workers.actions.registry import action_params

TOKEN = "numbers-token-0123456789"
ITEM = {
    "action": "updated",
    "timestamp": 1401833052,
    "entity": {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/job/35769"},
    "changeset": [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}],
}
MESSAGE: dict[str, Any] = {"messageId": "m-1", "timestamp": "1401833057", "data": [ITEM]}


@pytest.fixture(scope="module")
def receiver(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, redis.Redis]]:
    settings = Settings(redis_url=redis_server, webhook_tokens=TOKEN, data_dir=tmp_path_factory.mktemp("numbers"))
    r = redis.Redis.from_url(redis_server)
    with TestClient(create_app(settings, action_params()), raise_server_exceptions=False) as client:
        yield client, r
    r.close()


def post(receiver: tuple[TestClient, redis.Redis], body: bytes) -> tuple[int, dict[str, Any], int]:
    client, r = receiver
    before = r.llen(EVENTS_QUEUE)
    resp = client.post(f"/webhooks/servicetrade/{TOKEN}", content=body, headers={"content-type": "application/json"})
    try:
        payload = resp.json()
    except ValueError:
        payload = {}
    return resp.status_code, payload, r.llen(EVENTS_QUEUE) - before


def with_value(path: str, value: Any) -> bytes:
    message = copy.deepcopy(MESSAGE)
    target: Any = message
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("path", "value", "detail"),
    [
        # Each of these used to make orjson fail in the receiver: a 500, and ServiceTrade retried.
        ("data.0.entity.id", 2**64, "data.0.entity.id: Input should be less than or equal to 9223372036854775807"),
        ("data.0.entity.id", -1, "data.0.entity.id: Input should be greater than or equal to 0"),
        ("data.0.timestamp", 10**30, "data.0.timestamp: Input should be less than or equal to 253402300799"),
        ("timestamp", 2**70, "timestamp: Input should be less than or equal to 253402300799"),
        (
            "data.0.changeset.0.newValue",
            {"a": [1, 2**63]},
            "data.0.changeset.0.newValue: at a.1: integer out of range (it must fit in 64 bits)",
        ),
        (
            "data.0.changeset.0.oldValue",
            -(2**63) - 1,
            "data.0.changeset.0.oldValue: integer out of range (it must fit in 64 bits)",
        ),
        ("data.0.entity.uri", "http://[::1", "data.0.entity.uri: not a URI: Invalid IPv6 URL"),
    ],
)
def test_out_of_range_numbers_are_a_400_with_the_path(receiver, path: str, value: Any, detail: str) -> None:
    status, payload, enqueued = post(receiver, with_value(path, value))
    assert status == 400 and enqueued == 0
    assert detail in payload["detail"]


def test_numbers_at_the_edges_are_accepted(receiver) -> None:
    message = copy.deepcopy(MESSAGE)
    message["data"][0]["entity"]["id"] = 2**63 - 1
    message["data"][0]["changeset"][0]["newValue"] = {"min": -(2**63), "max": 2**63 - 1, "f": 1.5e300}
    status, payload, enqueued = post(receiver, json.dumps(message).encode())
    assert (status, payload, enqueued) == (200, {"accepted": 1}, 1)


@pytest.mark.parametrize(
    "body",
    [
        b'{"messageId": "m", "timestamp": 1, "data": [{"action": "updated", "timestamp": 1, '
        b'"entity": {"type": "job", "id": 1, "uri": "u"}, "changeset": [{"field": "f", "newValue": 1e400}]}]}',
        b'{"messageId": "\\ud800", "timestamp": 1, "data": []}',
        b'{"messageId": "m", "timestamp": 1, "data": [' + b"[" * 5000 + b"]" * 5000 + b"]}",
        b"\xff\xfe not utf-8",
    ],
    ids=["infinity", "lone-surrogate", "deep", "bytes"],
)
def test_hostile_bodies_are_a_400(receiver, body: bytes) -> None:
    status, _, enqueued = post(receiver, body)
    assert status == 400 and enqueued == 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def near_valid() -> st.SearchStrategy[dict[str, Any]]:
    """Messages shaped like ServiceTrade's, with any JSON where the values go."""
    entity = st.fixed_dictionaries(
        {"type": st.sampled_from(["job", "invoice"]) | JSON, "id": st.integers() | JSON, "uri": st.text() | JSON}
    )
    change = st.fixed_dictionaries({"field": st.text() | JSON}, optional={"oldValue": JSON, "newValue": JSON})
    item = st.fixed_dictionaries(
        {
            "action": st.sampled_from(["created", "updated", "deleted"]) | JSON,
            "timestamp": st.integers() | st.text() | JSON,
            "entity": entity | JSON,
        },
        optional={"changeset": st.lists(change, max_size=3) | JSON},
    )
    return st.fixed_dictionaries(
        {"messageId": st.text() | JSON, "timestamp": st.integers() | st.text(), "data": st.lists(item, max_size=3)}
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(JSON, near_valid()).map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
def test_arbitrary_json_never_gets_a_5xx_and_a_4xx_enqueues_nothing(receiver, body: bytes) -> None:
    status, payload, enqueued = post(receiver, body)
    assert status < 500, (status, body[:300])
    if status >= 400:
        assert enqueued == 0
    else:
        assert status == 200 and enqueued == (1 if payload["accepted"] else 0)  # one message per webhook
