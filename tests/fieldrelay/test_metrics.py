"""Metrics from trace steps, counted in Redis and read back in the Prometheus text format."""

from __future__ import annotations

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from fieldrelay.metrics import observe, render
from fieldrelay.state import PipelineState

EVENT = {
    "source": "servicetrade",
    "via": "webhook",
    "action": "updated",
    "occurred_at": 1700000000,
    "entity": {"type": "job", "id": 35769, "uri": None},
    "message_id": "m-1",
    "changes": None,
}


def samples(client: redis.Redis) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(render(client).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def state(redis_client) -> PipelineState:
    return PipelineState(redis_client)


def test_one_event_through_every_step(state, redis_client):
    state.save_event("ev1", EVENT)
    state.trace("ev1", "event.received", via="webhook")
    state.trace("ev1", "event.duplicate", message_id="m-2")
    state.trace("ev1", "rule.matched", rule="mirror", reason="")
    state.trace("ev1", "rule.skipped", rule="other", reason="no")
    state.trace("ev1", "action.started", rule="mirror", index=0, action="synchroteam.job.upsert")
    state.trace("ev1", "action.retry", index=0, error="503", attempt=1)
    state.trace("ev1", "action.succeeded", rule="mirror", index=0, action="synchroteam.job.upsert", result={})
    state.trace("ev1", "action.started", rule="mirror", index=1, action="http.request")
    state.trace(
        "ev1", "action.failed", rule="mirror", index=1, action="http.request", target="http", error="400", attempts=1
    )
    state.trace("ev2", "event.stale", reason="older than the newest applied")
    state.trace("ev1", "action.deferred", index=0, reason="rate", seconds=0.5)
    state.dead_letter({"event_id": "ev1", "rule": "mirror", "rule_digest": "d", "index": 1})
    redis_client.lpush("actions.http", b"x", b"y")
    state.record_rate("synchroteam", {"limit": 120, "remaining": 7, "quota_remaining": 999})
    state.pause_target("synergist")

    got = samples(redis_client)
    assert (
        got[
            (
                "fieldrelay_events_received_total",
                (("action", "updated"), ("entity", "job"), ("source", "servicetrade"), ("via", "webhook")),
            )
        ]
        == 1
    )
    assert got[("fieldrelay_duplicates_dropped_total", ())] == 1
    assert got[("fieldrelay_stale_events_skipped_total", ())] == 1
    assert got[("fieldrelay_rule_matches_total", (("rule", "mirror"),))] == 1
    assert ("fieldrelay_rule_matches_total", (("rule", "other"),)) not in got
    assert (
        got[
            (
                "fieldrelay_actions_total",
                (("action", "synchroteam.job.upsert"), ("outcome", "succeeded"), ("target", "synchroteam")),
            )
        ]
        == 1
    )
    assert (
        got[("fieldrelay_actions_total", (("action", "http.request"), ("outcome", "failed"), ("target", "http")))] == 1
    )
    assert got[("fieldrelay_retries_total", ())] == 1
    assert got[("fieldrelay_action_deferrals_total", (("reason", "rate"),))] == 1
    assert got[("fieldrelay_action_duration_seconds_count", (("action", "http.request"), ("target", "http")))] == 1
    assert (
        got[
            (
                "fieldrelay_action_duration_seconds_bucket",
                (("action", "http.request"), ("le", "+Inf"), ("target", "http")),
            )
        ]
        == 1
    )
    assert got[("fieldrelay_event_to_action_seconds_count", ())] == 1
    assert got[("fieldrelay_dlq_size", ())] == 1
    assert got[("fieldrelay_queue_depth", (("queue", "actions.http"),))] == 2
    assert got[("fieldrelay_queue_depth", (("queue", "events"),))] == 0
    assert got[("fieldrelay_target_rate_remaining", (("target", "synchroteam"),))] == 7
    assert got[("fieldrelay_target_quota_remaining", (("target", "synchroteam"),))] == 999
    assert got[("fieldrelay_target_paused", (("target", "synergist"),))] == 1
    assert got[("fieldrelay_target_paused", (("target", "synchroteam"),))] == 0


def test_histogram_buckets_are_cumulative(state, redis_client):
    for i, seconds in enumerate((0.01, 0.3, 0.3, 100.0)):
        observe(state, f"e{i}", {"step": "action.started", "at": 1000.0, "rule": "r", "index": 0})
        observe(
            state,
            f"e{i}",
            {
                "step": "action.succeeded",
                "at": 1000.0 + seconds,
                "rule": "r",
                "index": 0,
                "action": "synergist.job.create",
            },
        )
    got = samples(redis_client)

    def bucket(le: str) -> float:
        return got[
            (
                "fieldrelay_action_duration_seconds_bucket",
                (("action", "synergist.job.create"), ("le", le), ("target", "synergist")),
            )
        ]

    assert [bucket("0.05"), bucket("0.5"), bucket("60.0"), bucket("300.0"), bucket("+Inf")] == [1, 3, 3, 4, 4]
    assert got[
        ("fieldrelay_action_duration_seconds_sum", (("action", "synergist.job.create"), ("target", "synergist")))
    ] == pytest.approx(100.61)


def test_metrics_never_fail_the_step(caplog):
    dead = PipelineState(redis.Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)))
    observe(dead, "e1", {"step": "rule.matched", "at": 1.0, "rule": "r"})  # no exception
    assert "metrics not recorded for rule.matched" in caplog.text
