"""An event's record: the event, its console summary and its step results in one hash, and the keys of
records written before that layout, still read."""

from __future__ import annotations

from fieldrelay.records import Claim, result_field, result_fields
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step


def test_an_events_record_holds_the_event_and_its_step_results_under_one_ttl(redis_client):
    state = PipelineState(redis_client)
    with state.batched():
        state.save_event("ev1", {"a": 1})
        state.trace("ev1", Step.RECEIVED, via="webhook")
    with state.batched():
        state.mark_action_done("ev1", "d1", 0, "first", {"id": 7})
        state.mark_action_done("ev1", "d2", 0, None, {"id": 8})
    # The record, the trace and the console's index: no key for the event, its steps or its ledger.
    assert set(redis_client.keys("fieldrelay:*")) == {
        b"fieldrelay:evsum:ev1",
        b"fieldrelay:trace:ev1",
        b"fieldrelay:events",
    }
    assert 0 < redis_client.ttl("fieldrelay:evsum:ev1") <= state.retention
    assert state.load_event("ev1") == {"a": 1}
    assert state.done_and_steps("ev1", "d1", 0) == ({"id": 7}, {"0": {"id": 7}, "first": {"id": 7}})
    assert state.done_and_steps("ev1", "d1", 1) == (None, {"0": {"id": 7}, "first": {"id": 7}})
    assert state.load_steps("ev1", "d2") == {"0": {"id": 8}}
    assert state.forget_results("ev1", "d1", 0) == 1  # that step only: its step-id result stays for templates
    assert state.done_and_steps("ev1", "d1", 0) == (None, {"first": {"id": 7}})
    assert state.action_done("ev1", "d2", 0) == {"id": 8}
    assert state.forget_results("ev1") == 2 and state.load_steps("ev1", "d2") == {}
    assert state.load_event("ev1") == {"a": 1}  # the event and its summary stay


def test_records_written_before_they_held_the_steps_are_still_read(redis_client):
    # LEGACY: an event saved, and a step done, by a version that kept them in keys of their own.
    state = PipelineState(redis_client)
    redis_client.set("fieldrelay:event:ev1", b'{"a":1}', ex=60)
    redis_client.hset("fieldrelay:evsum:ev1", mapping={"source": "servicetrade", "at": "1"})
    redis_client.set("fieldrelay:ledger:ev1:d1:0", b'{"id":7}', ex=60)
    redis_client.hset("fieldrelay:steps:ev1:d1", mapping={"0": b'{"id":7}', "first": b'{"id":7}'})
    assert state.load_event("ev1") == {"a": 1}
    assert state.done_and_steps("ev1", "d1", 0) == ({"id": 7}, {"0": {"id": 7}, "first": {"id": 7}})
    state.mark_action_done("ev1", "d1", 1, None, {"id": 9})  # a step run by this version
    assert state.done_and_steps("ev1", "d1", 1) == ({"id": 9}, {"0": {"id": 7}, "first": {"id": 7}, "1": {"id": 9}})
    state.forget_results("ev1", "d1", 0)  # `dlq retry`: the old ledger entry goes
    assert state.action_done("ev1", "d1", 0) is None
    assert state.forget_results("ev1") >= 2
    assert not redis_client.exists("fieldrelay:steps:ev1:d1")


def test_result_fields_pick_one_step_a_rule_version_or_all():
    names: list[bytes | str] = [b"event", b"source", b"r:d1:0", b"r:d1:first", b"r:d2:0", "s:rule:0"]
    assert result_fields(names, "d1", 0) == [result_field("d1", 0)]
    assert result_fields(names, "d1", None) == ["r:d1:0", "r:d1:first"]
    assert result_fields(names, None, None) == ["r:d1:0", "r:d1:first", "r:d2:0"]
    assert Claim.NEW.claimed and Claim.AGAIN.claimed and not Claim.TAKEN.claimed and not Claim.NONE.claimed
