"""The receiver against a real Redis: every documented answer, and nothing enqueued on bad input."""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENTS_TASK
from fieldrelay.settings import Settings
from fieldrelay_cli.embedded_redis import free_port
from receiver.app import MAX_BODY, create_app
from receiver.spool import Spool
from workers.actions.registry import action_params

SAMPLE: dict[str, Any] = {
    "messageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    "timestamp": "1401833057",
    "data": [
        {
            "action": "created",
            "timestamp": 1401833052,
            "entity": {"type": "job", "id": 34872, "uri": "https://api.servicetrade.com/api/job/34872"},
        },
        {
            "action": "updated",
            "timestamp": 1401833052,
            "entity": {"type": "invoice", "id": 9623, "uri": "https://api.servicetrade.com/api/invoice/9623"},
            "changeset": [],
        },
        {
            "action": "updated",
            "timestamp": 1401833052,
            "entity": {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/job/35769"},
            "changeset": [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}],
        },
        {
            "action": "deleted",
            "timestamp": 1401833052,
            "entity": {"type": "attachment", "id": 453845, "uri": "https://api.servicetrade.com/api/attachment/453845"},
        },
    ],
}


@pytest.fixture
def make_client(redis_url: str, tmp_path) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def factory(url: str = redis_url, tokens: str = "tok-new-0123456789,tok-old-0123456789") -> TestClient:
        client = TestClient(
            create_app(Settings(redis_url=url, webhook_tokens=tokens, data_dir=tmp_path), action_params())
        )
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for c in clients:
        c.__exit__(None, None, None)


def queued(r: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(m) for m in r.lrange(EVENTS_QUEUE, 0, -1)]


def test_sample_message_becomes_one_normalized_event_per_entity(make_client, redis_client):
    resp = make_client().post("/webhooks/servicetrade/tok-new-0123456789", json=SAMPLE)
    assert resp.status_code == 200
    assert resp.json()["accepted"] == 4
    messages = queued(redis_client)
    # The webhook's four entities share one message (FIELDRELAY_EVENTS_PER_MESSAGE, 8 by default): a worker
    # evaluates each in turn, no split hop.
    assert [m["headers"]["task"] for m in messages] == [PROCESS_EVENTS_TASK]
    (batch,) = json.loads(base64.b64decode(messages[0]["body"]))[0]
    events = {(e["entity"]["type"], e["entity"]["id"]): e for e in batch}
    assert len(events) == 4
    job = events[("job", 35769)]
    assert job["changes"] == {"status": {"old": "scheduled", "new": "completed"}}
    assert job["via"] == "webhook" and job["message_id"] == SAMPLE["messageId"]
    assert events[("invoice", 9623)]["changes"] == {}
    assert events[("job", 34872)]["changes"] is None


def test_rotated_token_is_accepted(make_client):
    assert make_client().post("/webhooks/servicetrade/tok-old-0123456789", json=SAMPLE).status_code == 200


def test_unknown_token_is_401_and_nothing_enqueued(make_client, redis_client):
    resp = make_client().post("/webhooks/servicetrade/tok-wrong-0123456789", json=SAMPLE)
    assert resp.status_code == 401
    assert "tok-new-0123456789" not in resp.text
    assert redis_client.llen(EVENTS_QUEUE) == 0


def test_no_tokens_configured_rejects_everything(make_client, redis_client):
    resp = make_client(tokens="").post("/webhooks/servicetrade/", json=SAMPLE)
    assert resp.status_code in (401, 404)
    assert make_client(tokens="").post("/webhooks/servicetrade/x", json=SAMPLE).status_code == 401
    assert redis_client.llen(EVENTS_QUEUE) == 0


def test_bad_json_is_400_with_clear_message(make_client, redis_client):
    resp = make_client().post(
        "/webhooks/servicetrade/tok-new-0123456789", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert resp.status_code == 400
    assert "not valid JSON" in resp.json()["detail"]
    assert redis_client.llen(EVENTS_QUEUE) == 0


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda m: m.pop("messageId"), "messageId: Field required"),
        (
            lambda m: m["data"][2].update(action="archived"),
            "data.2.action: Input should be 'created', 'updated' or 'deleted'",
        ),
        (lambda m: m["data"][0]["entity"].pop("uri"), "data.0.entity.uri: Field required"),
        (lambda m: m["data"][1].update(timestamp="yesterday"), "data.1.timestamp: Input should be a valid integer"),
        (lambda m: m.update(data="nope"), "data: Input should be a valid array"),
    ],
)
def test_schema_errors_are_400_and_nothing_enqueued(make_client, redis_client, mutate, expected):
    message = copy.deepcopy(SAMPLE)
    mutate(message)
    resp = make_client().post("/webhooks/servicetrade/tok-new-0123456789", json=message)
    assert resp.status_code == 400
    assert expected in resp.json()["detail"]
    assert redis_client.llen(EVENTS_QUEUE) == 0


def test_one_bad_item_rejects_the_whole_message(make_client, redis_client):
    message = copy.deepcopy(SAMPLE)
    message["data"][3]["entity"]["id"] = "not-a-number"
    assert make_client().post("/webhooks/servicetrade/tok-new-0123456789", json=message).status_code == 400
    assert redis_client.llen(EVENTS_QUEUE) == 0


def test_body_over_one_mib_is_413(make_client, redis_client):
    big = b'{"messageId":"x","timestamp":"1","data":[],"pad":"' + b"a" * MAX_BODY + b'"}'
    resp = make_client().post("/webhooks/servicetrade/tok-new-0123456789", content=big)
    assert resp.status_code == 413
    assert redis_client.llen(EVENTS_QUEUE) == 0


def test_chunked_body_over_limit_is_413_without_content_length(make_client, redis_client):
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"a" * (64 * 1024)

    resp = make_client().post("/webhooks/servicetrade/tok-new-0123456789", content=chunks())
    assert resp.status_code == 413
    assert redis_client.llen(EVENTS_QUEUE) == 0


def test_redis_unreachable_is_503_so_servicetrade_retries(make_client, tmp_path):
    client = make_client(url=f"redis://127.0.0.1:{free_port()}/0")
    resp = client.post("/webhooks/servicetrade/tok-new-0123456789", json=SAMPLE)
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    assert Spool(tmp_path / "spool").pending() == 1  # kept on disk too, replayed when Redis is back
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_an_outage_is_logged_when_it_starts_not_once_per_webhook(make_client, tmp_path, caplog):
    client = make_client(url=f"redis://127.0.0.1:{free_port()}/0")
    with caplog.at_level(logging.INFO, logger="fieldrelay.receiver"):
        answers = [client.post("/webhooks/servicetrade/tok-new-0123456789", json=SAMPLE).status_code for _ in range(5)]
    assert answers == [503] * 5
    assert Spool(tmp_path / "spool").pending() == 5
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "fieldrelay.receiver"] == [
        (
            "ERROR",
            "enqueue failed, spooling webhooks to disk and answering 503 until Redis answers: ConnectionError",
        )
    ]


def test_health_and_ready(make_client):
    client = make_client()
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
