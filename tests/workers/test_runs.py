"""Run modes per rule and entity: queued in order, latest collapses a burst, parallel starts each."""

from __future__ import annotations

import pytest

from fieldrelay.events import ChangeEvent, EntityRef
from workers.runs import LATEST_WINDOW, RunCoordinator


def event(n: int, job: int = 1) -> ChangeEvent:
    return ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=job),
        occurred_at=1000 + n,
    )


@pytest.fixture
def runs(redis_client) -> RunCoordinator:
    return RunCoordinator(redis_client)


def key(job: int = 1) -> str:
    return RunCoordinator.run_key("r", "servicetrade", "job", job)


def test_queued_runs_one_at_a_time_in_arrival_order(runs):
    first = runs.offer("r", "queued", 0, event(1), "d")
    assert (first.kind, first.event_id, first.digest) == ("start", event(1).id, "d")
    assert runs.offer("r", "queued", 0, event(2), "d").kind == "wait"
    assert runs.offer("r", "queued", 0, event(3), "d").kind == "wait"
    assert runs.next_run(key(), "someone-else|d").kind == "wait"  # only the active run may hand over
    second = runs.next_run(key(), runs.member(event(1).id, "d"))
    assert (second.kind, second.event_id) == ("start", event(2).id)
    assert runs.next_run(key(), runs.member(event(2).id, "d")).event_id == event(3).id
    assert runs.next_run(key(), runs.member(event(3).id, "d")).kind == "idle"
    assert runs.offer("r", "queued", 0, event(4), "d").kind == "start"


def test_latest_collapses_a_burst_to_its_newest_event(runs):
    decisions = [runs.offer("r", "latest", 0, event(n), "d") for n in range(20)]
    assert decisions[0].kind == "schedule" and decisions[0].delay == LATEST_WINDOW
    assert {d.kind for d in decisions[1:]} == {"wait"}
    due = runs.next_run(key(), "")
    assert (due.kind, due.event_id) == ("start", event(19).id)
    assert runs.next_run(key(), runs.member(event(19).id, "d")).kind == "idle"


def test_debounce_delays_the_first_run(runs):
    assert runs.offer("r", "queued", 30, event(1), "d").delay == 30
    assert runs.offer("r", "queued", 30, event(2), "d").kind == "wait"
    assert runs.next_run(key(), "").event_id == event(1).id


def test_parallel_starts_every_event(runs):
    assert [runs.offer("r", "parallel", 0, event(n), "d").kind for n in range(3)] == ["start"] * 3
    assert runs.offer("r", "parallel", 5, event(4), "d").kind == "schedule"


def test_entities_and_rules_are_independent(runs):
    assert runs.offer("r", "queued", 0, event(1, job=1), "d").kind == "start"
    assert runs.offer("r", "queued", 0, event(1, job=2), "d").kind == "start"
    assert runs.offer("other", "queued", 0, event(1, job=1), "d").kind == "start"


def test_a_redelivery_restarts_its_own_run_and_is_not_queued_twice(runs):
    assert runs.offer("r", "queued", 0, event(1), "d").kind == "start"
    assert runs.offer("r", "queued", 0, event(1), "d").kind == "start"  # the claimer, redelivered
    assert runs.offer("r", "queued", 0, event(2), "d").kind == "wait"
    assert runs.offer("r", "queued", 0, event(2), "d").kind == "wait"
    assert runs.next_run(key(), runs.member(event(1).id, "d")).event_id == event(2).id
    assert runs.next_run(key(), runs.member(event(2).id, "d")).kind == "idle"
