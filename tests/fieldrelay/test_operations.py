"""Queries and operations on a real Redis: dead letters (select, retry, drop), target pauses, the event index,
the webhook registration, and the CLI commands over them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import SecretStr

from fieldrelay import operations, queries
from fieldrelay.queues import RUN_ACTION_TASK
from fieldrelay.redaction import Redactor
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from sandbox import servicetrade
from sandbox.runner import SandboxRunner
from workers.connectors.servicetrade import ServiceTradeClient
from workers.webhooks import register_webhook, set_webhook_enabled

EVENT: dict[str, Any] = {
    "source": "servicetrade",
    "via": "webhook",
    "action": "updated",
    "occurred_at": 1700000000,
    "entity": {"type": "job", "id": 35769, "uri": None},
    "message_id": "m-1",
    "changes": None,
}


def failed(
    state: PipelineState,
    event_id: str = "ev1",
    *,
    rule: str = "mirror",
    digest: str = "d1",
    index: int = 0,
    target: str = "synchroteam",
    entity_id: int = 35769,
) -> str:
    state.save_event(event_id, {**EVENT, "entity": {**EVENT["entity"], "id": entity_id}})
    state.save_rule(digest, {"name": rule})
    return state.dead_letter(
        {
            "event_id": event_id,
            "rule": rule,
            "rule_digest": digest,
            "index": index,
            "action": f"{target}.job.upsert",
            "target": target,
            "error": "Rejected: 400",
            "attempts": 1,
        }
    )


@pytest.fixture
def state(redis_client):
    return PipelineState(redis_client)


def test_dead_letter_ids_are_stable_and_a_second_failure_replaces_the_first(state):
    first = failed(state)
    assert failed(state) == first
    [entry] = state.dead_letters()
    assert entry["id"] == first and entry["rule"] == "mirror" and entry["at"] > 0
    assert failed(state, index=1) != first


def test_dead_letters_are_selected_by_rule_target_entity_and_time(state):
    a = failed(state, "ev1", rule="mirror", target="synchroteam", entity_id=1)
    b = failed(state, "ev2", rule="notify", target="servicetrade", entity_id=2)

    def ids(**criteria):
        return [e["id"] for e in queries.list_dead_letters(state, queries.Selection(**criteria))]

    assert ids() == [b, a]  # newest first
    assert ids(rule="mirror") == [a]
    assert ids(target="servicetrade") == [b]
    assert ids(entity="job:2") == [b] and ids(entity="1") == [a] and ids(entity="job") == [b, a]
    assert ids(since=state.dead_letter_entry(b)["at"]) == [b]
    assert ids(until=0) == []


def test_retry_clears_the_ledger_enqueues_on_the_target_queue_and_leaves_the_dlq(state, redis_client):
    dlq_id = failed(state, digest="d9", index=2)
    state.mark_action_done("ev1", "d9", 2, None, {"stale": True})
    operations.retry_dead_letter(state, dlq_id)

    assert state.dead_letters() == []
    assert state.action_done("ev1", "d9", 2) is None
    [raw] = redis_client.lrange("actions.synchroteam", 0, -1)
    message = json.loads(raw)
    assert message["headers"]["task"] == RUN_ACTION_TASK
    assert json.loads(base64.b64decode(message["body"]))[0] == ["ev1", "d9", 2]
    assert state.load_trace("ev1")[-1]["step"] == "dlq.retried"


def test_retry_of_an_expired_event_fails_and_keeps_the_dead_letter(state, redis_client):
    dlq_id = failed(state)
    redis_client.delete(state.record_key("ev1"))
    with pytest.raises(queries.OperationError, match="expired"):
        operations.retry_dead_letter(state, dlq_id)
    assert [e["id"] for e in state.dead_letters()] == [dlq_id]


def test_a_failed_enqueue_puts_the_dead_letter_back(state):
    dlq_id = failed(state)

    def broken(*args):
        raise ConnectionError("redis went away")

    with pytest.raises(ConnectionError):
        operations.retry_dead_letter(state, dlq_id, enqueue=broken)
    assert [e["id"] for e in state.dead_letters()] == [dlq_id]


def test_drop_removes_and_traces(state):
    dlq_id = failed(state)
    operations.drop_dead_letter(state, dlq_id)
    assert state.dead_letters() == []
    assert state.load_trace("ev1")[-1]["step"] == "dlq.dropped"
    with pytest.raises(queries.OperationError, match="no dead letter"):
        operations.drop_dead_letter(state, dlq_id)


def test_pause_resume_and_status(state):
    assert not state.target_paused("synchroteam")
    operations.pause_target(state, "synchroteam", "maintenance window")
    status = queries.target_status(state, "synchroteam")
    assert status["paused"] and status["pause"]["reason"] == "maintenance window"
    assert not state.target_paused("synergist")
    assert operations.resume_target(state, "synchroteam") and not state.target_paused("synchroteam")
    with pytest.raises(queries.OperationError, match="unknown target 'synchro'"):
        operations.pause_target(state, "synchro")


def test_a_timed_pause_expires(state, redis_client):
    import time

    state.pause_target("http", until=time.time() + 100)
    assert 0 < redis_client.ttl(state.key("paused", "http")) <= 100


def test_rate_info_is_recorded_for_status(state):
    from workers.connectors.errors import RateInfo

    state.record_rate("synchroteam", RateInfo(limit=120, remaining=17, reset_at=1.0, quota_remaining=900))
    rate = queries.target_status(state, "synchroteam")["rate"]
    assert rate["remaining"] == 17 and rate["quota_remaining"] == 900 and "quota_limit" not in rate


def test_the_event_index_follows_trace_steps(state):
    state.save_event("ev1", EVENT)
    state.trace("ev1", Step.RECEIVED, via="webhook")
    state.trace("ev1", Step.RULE_MATCHED, rule="mirror", reason="")
    state.trace("ev1", Step.ACTION_STARTED, rule="mirror", index=0, action="synchroteam.job.upsert")
    state.trace(
        "ev1", "action.failed", rule="mirror", index=0, action="synchroteam.job.upsert", target="synchroteam", error="x"
    )
    state.save_event("ev2", {**EVENT, "source": "synergist"})
    state.trace("ev2", "event.received", via="poll")

    [one] = queries.list_events(state, queries.EventFilter(rule="mirror"))
    assert one["id"] == "ev1" and one["outcome"] == "failed" and one["entity_id"] == "35769"
    assert [e["id"] for e in queries.list_events(state)] == ["ev2", "ev1"]
    assert [e["id"] for e in queries.list_events(state, queries.EventFilter(source="synergist"))] == ["ev2"]
    # Received but not evaluated (yet, or because evaluating failed without a trace): never "no match".
    assert [e["outcome"] for e in queries.list_events(state, queries.EventFilter(source="synergist"))] == ["processing"]
    state.trace("ev2", "rules.none", detail="no rule listens")
    assert [e["outcome"] for e in queries.list_events(state, queries.EventFilter(outcome="no match"))] == ["no match"]
    detail = queries.event_detail(state, "ev1")
    assert detail is not None and [s["step"] for s in detail["trace"]][-1] == "action.failed"
    assert queries.event_detail(state, "nope") is None


def test_webhook_registration_is_idempotent():
    runner = SandboxRunner({"servicetrade": servicetrade.create_app()}).start()
    client = ServiceTradeClient(runner.urls["servicetrade"], "sandbox", SecretStr("sandbox-password"), timeout=5)
    try:
        url = "https://relay.example/webhooks/servicetrade/tok"
        hook, created = register_webhook(client, url)
        assert created and hook["includeChangesets"] and hook["enabled"]
        set_webhook_enabled(client, url, False)
        again, created = register_webhook(client, url)
        assert not created and again["id"] == hook["id"] and again["enabled"]
        assert [h["hookUrl"] for h in client.list_webhooks()] == [url]
        with pytest.raises(queries.OperationError):
            set_webhook_enabled(client, "https://other", True)
    finally:
        client.close()
        runner.stop()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("90s", 910.0),
        ("15m", 100.0),
        ("1h", -2600.0),
        ("1700000000", 1700000000.0),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T22:13:20", 1700000000.0),
    ],
)
def test_times_are_relative_iso_or_unix(text, expected):
    assert queries.parse_time(text, now=1000.0) == expected


def test_a_bad_time_says_what_is_accepted():
    with pytest.raises(queries.OperationError, match="not a time: 'yesterday'"):
        queries.parse_time("yesterday")


def test_a_retried_step_that_succeeds_clears_the_failed_outcome(state):
    state.save_event("ev1", EVENT)
    state.trace("ev1", Step.RECEIVED, via="webhook")
    state.trace("ev1", Step.RULE_MATCHED, rule="mirror", reason="")
    state.trace("ev1", Step.ACTION_FAILED, rule="mirror", index=0, action="synchroteam.job.upsert", error="x")
    assert queries.list_events(state)[0]["outcome"] == "failed"
    state.trace("ev1", "action.succeeded", rule="mirror", index=0, action="synchroteam.job.upsert", result={})
    [summary] = queries.list_events(state)
    # Steps are counted by their latest outcome: the retried step succeeded.
    assert (summary["outcome"], summary["succeeded"], summary["failed"]) == ("succeeded", 1, 0)


@pytest.fixture
def cli(redis_url, monkeypatch, tmp_path, capsys):
    """`fieldrelay ...` in-process against the test Redis; returns (exit code, stdout)."""
    from fieldrelay_cli.main import main

    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    monkeypatch.setenv("FIELDRELAY_DATA_DIR", str(tmp_path))

    def run(*argv: str) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    return run


def test_cli_dead_letters(cli, state):
    dlq_id = failed(state)
    failed(state, "ev2", rule="notify", target="servicetrade")
    code, out = cli("dlq", "list", "--rule", "mirror")
    assert code == 0 and dlq_id in out and "Rejected: 400" in out and "notify" not in out
    code, out = cli("dlq", "show", dlq_id)
    assert json.loads(out)["event"]["entity"]["id"] == 35769
    code, out = cli("dlq", "retry", "--all", "--target", "synchroteam")
    assert code == 0 and out.startswith(f"{dlq_id}: re-enqueued on actions.synchroteam")
    code, out = cli("dlq", "drop", "--all", "--since", "1h")
    assert code == 0 and "dropped" in out and state.dead_letters() == []
    code, out = cli("dlq", "retry", dlq_id)
    assert code == 1


def test_cli_targets(cli, state):
    assert cli("target", "pause", "synchroteam", "--reason", "vendor maintenance")[0] == 0
    state.record_rate("synchroteam", {"limit": 120, "remaining": 17, "quota_remaining": 900})
    out = cli("target", "status")[1]
    assert "synchroteam   PAUSED   queued=0  rate left=17/120  quota left=900" in out
    assert "synergist     running  queued=0  rate: not reported yet" in out
    assert cli("target", "resume", "synchroteam")[1] == "synchroteam: resumed\n"
    with pytest.raises(SystemExit, match="unknown target 'nope'"):
        cli("target", "pause", "nope")


def test_cli_webhooks(cli, monkeypatch):
    with SandboxRunner({"servicetrade": servicetrade.create_app()}) as runner:
        monkeypatch.setenv("FIELDRELAY_SERVICETRADE_BASE_URL", runner.urls["servicetrade"])
        monkeypatch.setenv("FIELDRELAY_SERVICETRADE_USERNAME", "sandbox")
        monkeypatch.setenv("FIELDRELAY_SERVICETRADE_PASSWORD", "sandbox-password")
        url = "https://relay.example/webhooks/servicetrade/tok"
        assert cli("webhooks", "register", "--url", url)[1].startswith("registered: webhook")
        assert cli("webhooks", "disable", url)[1].startswith("webhook ")
        assert cli("webhooks", "register", "--url", url)[1].startswith("already registered")
        out = cli("webhooks", "list")[1]
        assert out.count(url) == 1 and "enabled" in out and "changesets=on" in out


def test_stale_and_own_write_events_are_listed(state):
    state.trace("ev-stale", "event.stale", occurred_at=1, newest_applied=2)
    state.save_event("ev-own", EVENT)
    state.trace("ev-own", "event.own_write", detail="loop guard")
    outcomes = {e["id"]: e["outcome"] for e in queries.list_events(state)}
    assert outcomes == {"ev-stale": "stale", "ev-own": "own write"}


def test_a_dead_letter_keeps_the_rendered_request_from_its_trace(redis_client):
    state = PipelineState(redis_client, redactor=Redactor(["api-secret-123"]))
    state.trace(
        "ev1",
        Step.ACTION_STARTED,
        rule="mirror",
        index=0,
        action="http.request",
        params={"url": "https://x/?key=api-secret-123", "headers": {"Authorization": "Bearer z"}},
    )
    entry = state.dead_letter_entry(failed(state))
    assert entry is not None and entry["params"] == {
        "url": "https://x/?key=[redacted]",
        "headers": {"Authorization": "[redacted]"},
    }
