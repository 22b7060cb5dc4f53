"""A step's batched writes: sent together at its end, before what follows them, and never lost while held."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
import redis.client

from fieldrelay.batch import VersionConflict, WriteBatch, WriterScript, merged
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
        assert not redis_client.exists("fieldrelay:evsum:ev1") and not redis_client.exists("fieldrelay:trace:ev1")
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
        [value] = state.read_after_writes(lambda pipe: pipe.hget("fieldrelay:evsum:ev1", "event"))
    assert value == b'{"a":1}'


def test_a_read_after_writes_reads_them_on_a_redis_that_does_not_know_the_script_yet(redis_client):
    redis_client.script_flush()  # a new, restarted or flushed server
    state = PipelineState(redis_client)
    with state.batched():
        state.save_event("ev1", {"a": 1})
        state.trace("ev1", Step.REPLAYED)
        [value, length] = state.read_after_writes(
            lambda pipe: pipe.hget("fieldrelay:evsum:ev1", "event").llen("fieldrelay:trace:ev1")
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
    assert state.batch is not None and redis_client.hget("fieldrelay:evsum:ev1", "event") is None

    real, down = redis.client.Pipeline.execute, [True]

    def outage(self: Any, *args: Any, **kwargs: Any) -> Any:
        if down:
            self.reset()
            raise redis.ConnectionError("Redis went away")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", outage)
    with pytest.raises(redis.ConnectionError), state.batched():  # the action's step, cut by the outage
        state.read_after_writes(lambda pipe: pipe.hget("fieldrelay:evsum:ev1", "r:d:0"))
    assert state.batch is not None  # kept for the step's rerun
    down.clear()
    with state.batched():  # the rerun, once Redis is back
        state.read_after_writes(lambda pipe: pipe.hget("fieldrelay:evsum:ev1", "r:d:0"))
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
    state.save_event("ev1", {"a": 1})
    state.mark_action_done("ev1", "d1", 0, None, {"id": 7})
    script = WriterScript(redis_client, "return redis.call('INCR', KEYS[1])")
    with state.batched():
        state.trace("ev1", Step.RUN_STARTED, rule="r", mode="queued")
        assert state.run_and_prefetch(("ev1", "d1", 0))(script, ["n"], []) == 1
    before = commands(redis_client)
    assert state.done_and_steps("ev1", "d1", 0) == ({"id": 7}, {"0": {"id": 7}})
    assert commands(redis_client) == before  # read with the script
    state.done_and_steps("ev1", "d1", 0)
    assert commands(redis_client) == before + 1  # read once: a second call reads the record again


def test_a_new_events_read_ahead_reads_nothing(redis_client):
    state = PipelineState(redis_client)
    script = WriterScript(redis_client, "return redis.call('INCR', KEYS[1])")
    with state.batched():
        state.trace("ev1", Step.RUN_STARTED, rule="r", mode="queued")
        before = commands(redis_client)
        assert state.run_and_prefetch(("ev1", "d1", 0), new=True)(script, ["n"], []) == 1
    # One EVAL carried the writes and ran the script (an RPUSH and an EXPIRE for the trace, the INCR).
    assert commands(redis_client) - before == 4
    assert state.done_and_steps("ev1", "d1", 0) == (None, {})
    assert commands(redis_client) - before == 4
    assert [e["step"] for e in state.load_trace("ev1")] == [Step.RUN_STARTED]


def test_a_writer_scripts_call_makes_the_writes_before_its_body(redis_client):
    state = PipelineState(redis_client)
    script = WriterScript(redis_client, "return {redis.call('HGET', KEYS[1], 'event'), A[1], #A}")
    with state.batched():
        state.save_event("ev1", {"a": 1})
        answer = state.run_after_writes(script, ["fieldrelay:evsum:ev1"], ["own", "args"])
    assert answer == [b'{"a":1}', b"own", 2]
    assert script(["fieldrelay:evsum:ev1"], ["alone"]) == [b'{"a":1}', b"alone", 1]  # called alone: no writes


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        # Two HSETs of one key around its EXPIRE and another key's write: one HSET.
        (
            [("HSET", "s", "a", 1), ("EXPIRE", "s", 9), ("ZADD", "i", 1, "e"), ("HSET", "s", "b", 2)],
            [("HSET", "s", "a", 1, "b", 2), ("EXPIRE", "s", 9), ("ZADD", "i", 1, "e")],
        ),
        # A counter on another field between them commutes with the HSET; on the same field it does not.
        (
            [("HSET", "s", "a", 1), ("HINCRBY", "s", "n", 1), ("HSET", "s", "b", 2)],
            [("HSET", "s", "a", 1, "b", 2), ("HINCRBY", "s", "n", 1)],
        ),
        (
            [("HSET", "s", "a", 1), ("HINCRBY", "s", "b", 1), ("HSET", "s", "b", 2)],
            [("HSET", "s", "a", 1), ("HINCRBY", "s", "b", 1), ("HSET", "s", "b", 2)],
        ),
        # Anything else on the key (a DEL) keeps them apart; a field written twice keeps the later value.
        (
            [("HSET", "s", "a", 1), ("DEL", "s"), ("HSET", "s", "b", 2)],
            [("HSET", "s", "a", 1), ("DEL", "s"), ("HSET", "s", "b", 2)],
        ),
        ([("HSET", "s", "a", 1), ("HSET", "s", "a", 2)], [("HSET", "s", "a", 1, "a", 2)]),
        # An EXPIRE repeated past field writes goes; a different one, or one past a DEL, stays.
        (
            [("HSET", "s", "a", 1), ("EXPIRE", "s", 9), ("HINCRBY", "s", "n", 1), ("EXPIRE", "s", 9)],
            [("HSET", "s", "a", 1), ("EXPIRE", "s", 9), ("HINCRBY", "s", "n", 1)],
        ),
        (
            [("HSET", "s", "a", 1), ("EXPIRE", "s", 9), ("EXPIRE", "s", 99), ("EXPIRE", "s", 9)],
            [("HSET", "s", "a", 1), ("EXPIRE", "s", 9), ("EXPIRE", "s", 99), ("EXPIRE", "s", 9)],
        ),
        (
            [("EXPIRE", "s", 9), ("DEL", "s"), ("HSET", "s", "b", 2), ("EXPIRE", "s", 9)],
            [("EXPIRE", "s", 9), ("DEL", "s"), ("HSET", "s", "b", 2), ("EXPIRE", "s", 9)],
        ),
    ],
)
def test_merged_hsets_leave_redis_as_the_commands_one_by_one_would(redis_client, stack, expected):
    assert merged(stack) == expected
    state: dict[int, Any] = {}
    for commands_ in (stack, merged(stack)):
        redis_client.flushdb()
        redis_client.hset("s", "z", 0)  # a DEL in the stack must have something to delete
        for command in commands_:
            redis_client.execute_command(*command)
        state[len(state)] = (redis_client.hgetall("s"), redis_client.ttl("s"), redis_client.zrange("i", 0, -1))
    assert state[0] == state[1]


def test_a_scripts_entries_for_one_trace_go_in_one_rpush_in_order(redis_client):
    state = PipelineState(redis_client)
    grant = WriterScript(redis_client, "apply(A, 1, #A)\nreturn 1")  # as the gate writes `action.started`
    later = WriteBatch(redis_client)
    later.trace("fieldrelay:trace:ev1", b'{"step":"second"}', state.retention)
    with state.batched():
        state.trace("ev1", Step.RUN_STARTED, rule="r", mode="queued")
        redis_client.config_resetstat()
        assert state.run_after_writes(grant, [], later.words()) == 1
    calls = {k: v["calls"] for k, v in redis_client.info("commandstats").items()}
    assert calls["cmdstat_rpush"] == 1 and calls["cmdstat_expire"] == 1
    assert [e["step"] for e in state.load_trace("ev1")] == [Step.RUN_STARTED, "second"]
    assert 0 < redis_client.ttl("fieldrelay:trace:ev1") <= state.retention


def test_a_lock_freed_well_within_its_lease_is_deleted_without_reading_it_first(redis_client):
    state = PipelineState(redis_client)
    token = state.lock_step("k", "owner-1", lease=120)
    assert token is not None
    redis_client.config_resetstat()
    with state.batched():
        state.unlock_step("k", token, taken_at=time.monotonic(), lease=120)
    calls = {k: v["calls"] for k, v in redis_client.info("commandstats").items()}
    assert "cmdstat_get" not in calls and calls["cmdstat_del"] == 1
    assert not redis_client.exists("fieldrelay:steplock:k")


def test_a_lock_freed_near_the_end_of_its_lease_is_freed_only_if_it_is_still_its_holders(redis_client):
    state = PipelineState(redis_client)
    state.lock_step("k", "owner-1", lease=120)
    redis_client.set("fieldrelay:steplock:k", "owner-2")  # it expired, and another owner took it
    with state.batched():
        state.unlock_step("k", "owner-1", taken_at=time.monotonic() - 115, lease=120)
    assert redis_client.get("fieldrelay:steplock:k") == b"owner-2"
    state.unlock_step("k", "owner-2")  # no batch, no grant time: compared
    assert not redis_client.exists("fieldrelay:steplock:k")


@pytest.mark.parametrize("stored", [None, b"0000000000000001{}"])
def test_a_guarded_send_makes_all_its_writes_or_none(redis_client, stored):
    if stored is not None:
        redis_client.set("fieldrelay:servicetrade:job:1", stored)
    state, ran = PipelineState(redis_client), []
    token = "" if stored is None else "0000000000000001"
    with state.batched():
        state.trace("ev1", Step.REPLAYED)  # collected before the guard, sent after it
        assert state.batch is not None
        state.batch.guard("fieldrelay:servicetrade:job:1", token, b"0000000000000002{}", 60, 16)
        state.batch.after.append(lambda: ran.append("logged"))
        state.save_event("ev1", {"a": 1})
    assert redis_client.get("fieldrelay:servicetrade:job:1") == b"0000000000000002{}"
    assert state.load_event("ev1") == {"a": 1} and len(state.load_trace("ev1")) == 1 and ran == ["logged"]

    redis_client.set("fieldrelay:servicetrade:job:1", b"0000000000000003{}")  # another writer came first
    with pytest.raises(VersionConflict), state.batched():
        state.trace("ev2", Step.REPLAYED)
        assert state.batch is not None
        state.batch.guard("fieldrelay:servicetrade:job:1", "0000000000000002", b"0000000000000004{}", 60, 16)
        state.batch.after.append(lambda: ran.append("logged again"))
        state.save_event("ev2", {"b": 2})
        state.read_after_writes(lambda pipe: pipe.get("x"))
    assert redis_client.get("fieldrelay:servicetrade:job:1") == b"0000000000000003{}"
    assert not redis_client.exists("fieldrelay:trace:ev2") and state.load_event("ev2") is None
    assert ran == ["logged"]


def test_a_failed_steps_writes_refused_by_a_lost_version_race_leave_its_own_failure_to_handle(redis_client):
    state = PipelineState(redis_client)
    redis_client.set("fieldrelay:servicetrade:job:1", b"0000000000000009{}")
    with pytest.raises(KeyError), state.batched():
        assert state.batch is not None
        state.batch.guard("fieldrelay:servicetrade:job:1", "0000000000000001", b"0000000000000002{}", 60, 16)
        state.trace("ev1", Step.REPLAYED)
        raise KeyError("what the step raised")
    assert state.batch is None and redis_client.get("fieldrelay:servicetrade:job:1") == b"0000000000000009{}"
    assert not redis_client.exists("fieldrelay:trace:ev1")
