"""A step's batched writes: sent together at its end, before what follows them, and never lost while held."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.client

from fieldrelay.state import PipelineState
from fieldrelay.steps import Step


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))


def test_a_steps_writes_wait_for_its_end_and_go_in_order(redis_client):
    state = PipelineState(redis_client)
    with state.batched():
        state.save_event("ev1", {"source": "servicetrade"})
        state.trace("ev1", Step.REPLAYED, task_id="t-1")
        state.trace("ev1", Step.EVENT_FAILED, error="boom")
        assert redis_client.get("fieldrelay:event:ev1") is None and not redis_client.exists("fieldrelay:trace:ev1")
    assert [e["step"] for e in state.load_trace("ev1")] == [Step.REPLAYED, Step.EVENT_FAILED]
    assert redis_client.ttl("fieldrelay:trace:ev1") > state.retention  # a failure keeps its trace longer
    assert state.load_event("ev1") == {"source": "servicetrade"}


def test_a_later_trace_never_shortens_a_failures_retention(redis_client):
    state = PipelineState(redis_client)
    with state.batched():
        state.trace("ev1", Step.EVENT_FAILED, error="boom")
    with state.batched():
        state.trace("ev1", Step.REPLAY_REQUESTED)
    assert redis_client.ttl("fieldrelay:trace:ev1") > state.retention


def test_a_read_after_writes_carries_them(redis_client):
    state = PipelineState(redis_client)
    with state.batched():
        state.save_event("ev1", {"a": 1})
        [value] = state.read_after_writes(lambda pipe: pipe.get("fieldrelay:event:ev1"))
    assert value == b'{"a":1}'


def test_a_read_after_writes_reads_them_on_a_redis_that_does_not_know_the_script_yet(redis_client):
    redis_client.script_flush()  # a new, restarted or flushed server
    state = PipelineState(redis_client)
    with state.batched():
        state.save_event("ev1", {"a": 1})
        state.trace("ev1", Step.REPLAYED)
        [value, length] = state.read_after_writes(
            lambda pipe: pipe.get("fieldrelay:event:ev1").llen("fieldrelay:trace:ev1")
        )
    assert (value, length) == (b'{"a":1}', 1)


def test_a_trace_list_gets_its_ttl_when_made_and_a_failure_extends_it(redis_client):
    state = PipelineState(redis_client)
    with state.batched():
        state.trace("ev1", Step.REPLAYED)
    assert 0 < redis_client.ttl("fieldrelay:trace:ev1") <= state.retention
    with state.batched():
        state.trace("ev1", Step.ACTION_RETRY, index=0, error="503", attempt=1)
    assert 0 < redis_client.ttl("fieldrelay:trace:ev1") <= state.retention
    with state.batched():
        state.trace("ev1", Step.ACTION_FAILED, rule="r", index=0, action="http.request", error="400")
    assert redis_client.ttl("fieldrelay:trace:ev1") > state.retention


def test_a_held_batch_keeps_its_writes_through_a_failed_send(redis_client, monkeypatch):
    state = PipelineState(redis_client)
    with state.batched(hold=lambda: True):  # an inline action's event writes, handed to its step
        state.save_event("ev1", {"a": 1})
        state.trace("ev1", Step.REPLAYED)
    assert state.batch is not None and redis_client.get("fieldrelay:event:ev1") is None

    real, down = redis.client.Pipeline.execute, [True]

    def outage(self: Any, *args: Any, **kwargs: Any) -> Any:
        if down:
            self.reset()
            raise redis.ConnectionError("Redis went away")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", outage)
    with pytest.raises(redis.ConnectionError), state.batched():  # the action's step, cut by the outage
        state.read_after_writes(lambda pipe: pipe.get("fieldrelay:ledger:ev1:d:0"))
    assert state.batch is not None  # kept for the step's rerun
    down.clear()
    with state.batched():  # the rerun, once Redis is back
        state.read_after_writes(lambda pipe: pipe.get("fieldrelay:ledger:ev1:d:0"))
    assert state.batch is None
    assert state.load_event("ev1") == {"a": 1}
    assert [e["step"] for e in state.load_trace("ev1")] == [Step.REPLAYED]


def test_a_step_that_is_not_held_drops_its_writes_when_the_send_fails(redis_client, monkeypatch):
    # Its rerun writes them again; keeping them too would write them twice.
    state = PipelineState(redis_client)

    def down(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.reset()
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(redis.client.Pipeline, "execute", down)
    with pytest.raises(redis.ConnectionError), state.batched():
        state.save_event("ev1", {"a": 1})
    assert state.batch is None


def test_a_step_read_ahead_with_a_script_costs_no_round_trip_of_its_own(redis_client):
    state = PipelineState(redis_client)
    state.mark_action_done("ev1", "d1", 0, None, {"id": 7})
    script = redis_client.register_script("return redis.call('INCR', KEYS[1])")
    with state.batched():
        state.trace("ev1", Step.RUN_STARTED, rule="r", mode="queued")
        assert state.run_and_prefetch(("ev1", "d1", 0))(script, ["n"], []) == 1
    before = commands(redis_client)
    assert state.done_and_steps("ev1", "d1", 0) == ({"id": 7}, {"0": {"id": 7}})
    assert commands(redis_client) == before  # read with the script
    state.done_and_steps("ev1", "d1", 0)
    assert commands(redis_client) == before + 2  # read once: a second call reads Redis again
