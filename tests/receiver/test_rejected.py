"""Rejected webhooks are kept (bounded, with a TTL), listed and replayed; throttled token guessing (issue 12)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from fieldrelay.metrics import render
from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK
from fieldrelay.settings import Settings
from fieldrelay_cli.main import main
from receiver import rejected
from receiver.app import MAX_BODY, create_app
from receiver.throttle import Throttle
from workers.actions.registry import action_params

TOKEN = "rejected-token-0123456789"
GOOD = {
    "messageId": "m-new-field",
    "timestamp": "1401833057",
    "data": [
        {
            "action": "updated",
            "timestamp": 1401833052,
            "entity": {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/job/35769"},
        }
    ],
}


@pytest.fixture
def client(redis_url: str, tmp_path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, webhook_tokens=TOKEN, data_dir=tmp_path)
    with TestClient(create_app(settings, action_params())) as c:
        yield c


def hook(client: TestClient, body: bytes, token: str = TOKEN, address: str | None = None):
    headers = {"content-type": "application/json"}
    return client.post(f"/webhooks/servicetrade/{token}", content=body, headers=headers)


def queued_events(r: redis.Redis) -> list[dict]:
    out = []
    for raw in r.lrange(EVENTS_QUEUE, 0, -1):
        message = orjson.loads(raw)
        assert message["headers"]["task"] == PROCESS_EVENT_TASK
        out.append(orjson.loads(base64.b64decode(message["body"]))[0][0])
    return out


def test_a_400_keeps_the_body_its_reason_and_time_and_replay_enqueues_it(client, redis_client, monkeypatch) -> None:
    # A schema the receiver did not expect (an action it does not know yet): ServiceTrade will not resend it.
    bad = json.loads(json.dumps(GOOD))
    bad["data"][0]["action"] = "merged"
    body = json.dumps(bad).encode()
    resp = hook(client, body)
    assert resp.status_code == 400 and redis_client.llen(EVENTS_QUEUE) == 0
    rejected_id = resp.json()["rejected_id"]

    [entry] = rejected.list_rejected(redis_client)
    assert entry["id"] == rejected_id and entry["message_id"] == "m-new-field" and entry["bytes"] == len(body)
    assert "data.0.action: Input should be 'created', 'updated' or 'deleted'" in entry["reason"]
    assert 0 < redis_client.ttl(rejected.entry_key(rejected_id)) <= rejected.KEEP_SECONDS
    assert rejected.show_rejected(redis_client, rejected_id)["body"] == body.decode()
    assert b'fieldrelay_webhooks_rejected_total{reason="invalid"} 1.0' in render(redis_client)

    with pytest.raises(rejected.RejectedError, match=r"is still invalid: data\.0\.action"):
        rejected.replay_rejected(redis_client, rejected_id)
    assert len(rejected.list_rejected(redis_client)) == 1  # still kept

    # The schema is fixed (here: the body is the fixed one): the same entry goes through.
    redis_client.set(
        rejected.entry_key(rejected_id),
        orjson.dumps({**orjson.loads(redis_client.get(rejected.entry_key(rejected_id))), "body": _packed(GOOD)}),
    )
    assert rejected.replay_rejected(redis_client, rejected_id) == 1
    [event] = queued_events(redis_client)
    assert event["entity"] == {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/job/35769"}
    assert rejected.list_rejected(redis_client) == []


def _packed(message: dict) -> str:
    import zlib

    return base64.b64encode(zlib.compress(json.dumps(message).encode())).decode()


def test_not_json_is_kept_too(client, redis_client) -> None:
    assert hook(client, b"{not json").status_code == 400
    [entry] = rejected.list_rejected(redis_client)
    assert entry["kind"] == "not_json" and entry["message_id"] is None


def test_unknown_tokens_and_oversize_bodies_are_not_kept(client, redis_client) -> None:
    assert hook(client, b"{not json", token="someone-else-0123456789").status_code == 401
    assert hook(client, b"x" * (MAX_BODY + 1)).status_code == 413
    assert rejected.list_rejected(redis_client) == []


def test_at_most_keep_entries_are_kept(client, redis_client, monkeypatch) -> None:
    monkeypatch.setattr(rejected, "KEEP", 3)
    for i in range(5):
        assert hook(client, f'{{"n": {i}}}'.encode()).status_code == 400
    kept = rejected.list_rejected(redis_client)
    assert len(kept) == 3 and len(list(redis_client.scan_iter(match=f"{rejected.INDEX}:*"))) == 3


def test_the_cli_lists_and_replays(client, redis_client, redis_url, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    rejected_id = hook(client, b'{"messageId": "m-cli", "timestamp": 1, "data": [{"action": 1}]}').json()["rejected_id"]
    assert main(["webhooks", "rejected"]) == 0
    out = capsys.readouterr().out
    assert rejected_id in out and "m-cli" in out and "data.0.action" in out
    assert main(["webhooks", "rejected", "--json"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["id"] == rejected_id and "body" not in listed
    with pytest.raises(SystemExit, match="is still invalid"):
        main(["webhooks", "rejected", "replay", rejected_id])
    with pytest.raises(SystemExit, match="no rejected webhook 'nope'"):
        main(["webhooks", "rejected", "replay", "nope"])


def test_wrong_tokens_are_throttled_per_address_with_a_metric_and_a_log_line(client, redis_client, caplog) -> None:
    for _ in range(10):
        assert hook(client, b"{}", token="guess-0123456789abcdef").status_code == 401
    resp = hook(client, b"{}", token="guess-0123456789abcdef")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    # An address that has only ever guessed is refused even with the right token...
    assert hook(client, json.dumps(GOOD).encode()).status_code == 429
    text = render(redis_client)
    assert b'fieldrelay_auth_failures_total{kind="webhook"} 10.0' in text
    assert b'fieldrelay_auth_throttled_total{kind="webhook"} 2.0' in text
    assert [r.getMessage() for r in caplog.records if "unknown webhook token" in r.getMessage()] == [
        "unknown webhook token from testclient (1 in 60 s)",
        "unknown webhook token from testclient (10 in 60 s; throttled)",
    ]


def test_an_address_that_delivered_with_a_valid_token_keeps_delivering(client) -> None:
    """ServiceTrade with a stale token on one hook: its valid deliveries must never be refused."""
    assert hook(client, json.dumps(GOOD).encode()).status_code == 200
    for _ in range(12):
        assert hook(client, b"{}", token="stale-token-0123456789").status_code in (401, 429)
    assert hook(client, json.dumps(GOOD).encode()).status_code == 200


def test_the_throttle_forgets_after_its_window() -> None:
    now = [0.0]
    t = Throttle(limit=2, window=60, clock=lambda: now[0])
    t.failed("a")
    t.failed("a")
    assert t.blocked("a") == 60 and t.blocked("b") == 0
    now[0] = 61
    assert t.blocked("a") == 0 and t.failed("a") == 1


def test_a_replay_reads_timestamps_with_the_receivers_clock_skew(client, redis_client) -> None:
    """A replayed body is read as the receiver reads it: an item far ahead of the clock is clamped by
    FIELDRELAY_CLOCK_SKEW (issue 11), not let through because the replay path forgot the setting."""
    import time

    future = json.loads(json.dumps(GOOD))
    future["data"][0]["action"] = "merged"  # rejected now; fixed below
    rejected_id = hook(client, json.dumps(future).encode()).json()["rejected_id"]
    future["data"][0]["action"] = "updated"
    future["data"][0]["timestamp"] = int(time.time()) + 7200
    key = rejected.entry_key(rejected_id)
    redis_client.set(key, orjson.dumps({**orjson.loads(redis_client.get(key)), "body": _packed(future)}))
    assert rejected.replay_rejected(redis_client, rejected_id, max_skew=60) == 1
    [event] = queued_events(redis_client)
    assert event["clamped_from"] == future["data"][0]["timestamp"] and event["occurred_at"] < event["clamped_from"]
