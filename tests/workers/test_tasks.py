"""The Celery tasks' own guard; what they run is tested in test_pipeline, test_retry and test_runs."""

from __future__ import annotations

import importlib

import pytest
import redis

from fieldrelay.state import PipelineState
from fieldrelay.steps import Step

EVENT = {
    "source": "servicetrade",
    "via": "webhook",
    "action": "updated",
    "occurred_at": 1700000000,
    "entity": {"type": "job", "id": 35769, "uri": None},
    "message_id": "m-1",
    "changes": None,
}


def test_process_event_without_a_task_id_or_claim_refuses_to_claim(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # Celery gives every task it runs an id; only a direct call, outside a worker, has none, and the
    # event's claim (its task id, stored in Redis) cannot be made without one.
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)  # the Celery app reads it when first imported
    tasks = importlib.import_module("workers.tasks")
    with pytest.raises(RuntimeError, match="needs a task id"):
        tasks.process_event(EVENT)


def test_a_task_runs_at_most_chain_inline_steps_after_its_own_then_enqueues_the_next(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    tasks = importlib.import_module("workers.tasks")
    ran: list[int] = []
    enqueued: list[tuple] = []

    def one_step(event_id, digest, index, attempt, queue, owner, *, saved=None):
        ran.append(index)
        return (event_id, digest, "actions.http")  # every next step is taken inline

    class Runtime:
        def enqueue_action(self, *args):
            enqueued.append(args)

    monkeypatch.setattr(tasks, "_one_action_step", one_step)
    monkeypatch.setattr(tasks, "runtime", Runtime)
    tasks.action_step("ev1", "d1", 3, 0, "actions.http", "task-1")
    assert ran == list(range(3, 3 + tasks.CHAIN + 1))  # its own step, then CHAIN more
    assert enqueued == [("ev1", "d1", 3 + tasks.CHAIN + 1, "actions.http")]


def test_grouped_events_are_claimed_by_position_and_hand_off_what_the_budget_leaves(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    tasks = importlib.import_module("workers.tasks")
    evaluated: list[tuple[int, str]] = []
    scheduled: list[tuple] = []

    class Runtime:
        state = PipelineState(redis.Redis.from_url(redis_url))

        def schedule(self, *args):
            scheduled.append(args)

    monkeypatch.setattr(tasks, "evaluate_event", lambda event, token: evaluated.append((event["n"], token)))
    monkeypatch.setattr(tasks, "runtime", Runtime)
    events = [{"n": n} for n in range(4)]
    tasks.evaluate_events(events, "task-1")  # well within the budget: all four, each its own claim token
    assert evaluated == [(0, "task-1:0"), (1, "task-1:1"), (2, "task-1:2"), (3, "task-1:3")]
    assert scheduled == []

    evaluated.clear()
    tasks.evaluate_events(events, "task-2", budget=0.0)  # past it at once: one event, then hand the rest off
    assert evaluated == [(0, "task-2:0")]
    # A new message, claimed by its own task's id: if this one is delivered again, one of the two runs each.
    assert scheduled == [(tasks.PROCESS_EVENTS_TASK, [events[1:]], tasks.EVENTS_QUEUE, 0.0)]


def test_a_grouped_message_that_is_not_a_list_is_dead_lettered_whole(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client
) -> None:
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    tasks = importlib.import_module("workers.tasks")
    tasks.evaluate_events({"source": "servicetrade"}, "task-3")
    (letter,) = PipelineState(redis_client).dead_letters()
    assert letter["kind"] == "ingest" and letter["task"]["name"] == tasks.PROCESS_EVENTS_TASK
    assert "takes a list of events, not dict" in letter["error"]
    assert PipelineState(redis_client).dead_letter_args(letter["id"]) == [{"source": "servicetrade"}]


def test_the_events_of_one_message_are_listed_for_the_console_with_one_command(redis_client) -> None:
    state = PipelineState(redis_client)
    with state.list_together() as list_them:
        for n in range(3):
            with state.batched():
                state.save_event(f"ev{n}", {"n": n})
                state.trace(f"ev{n}", Step.RECEIVED, via="webhook")
        assert redis_client.zcard("fieldrelay:events") == 0  # not yet: each step wrote its record only
        redis_client.config_resetstat()
        list_them()
    assert redis_client.info("commandstats")["cmdstat_zadd"]["calls"] == 1
    assert sorted(redis_client.zrange("fieldrelay:events", 0, -1)) == [b"ev0", b"ev1", b"ev2"]
    with state.batched():  # outside: listed by the step itself, as before
        state.save_event("ev3", {"n": 3})
        state.trace("ev3", Step.RECEIVED, via="webhook")
    assert redis_client.zscore("fieldrelay:events", "ev3") is not None


def test_a_grouped_message_whose_runtime_cannot_be_built_is_dead_lettered_whole(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client
) -> None:
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    tasks = importlib.import_module("workers.tasks")

    def broken() -> None:
        raise ValueError("a bug while building the runtime")

    monkeypatch.setattr(tasks, "runtime", broken)
    events = [{"n": 1}, {"n": 2}]
    tasks.evaluate_events(events, "task-4")  # returns: Celery acks, and the dead letter holds the events
    (letter,) = PipelineState(redis_client).dead_letters()
    assert letter["task"]["name"] == tasks.PROCESS_EVENTS_TASK and "a bug while building" in letter["error"]
    assert PipelineState(redis_client).dead_letter_args(letter["id"]) == [events]
