"""Celery tasks: thin wrappers that handle serialization, message headers and retries around `pipeline`.

Arguments are ids and plain JSON, never objects; what to do after a failure is `workers.retry`'s
one policy, and how a run ends is `workers.lifecycle`'s.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Task

from fieldrelay.events import ChangeEvent
from fieldrelay.queues import (
    ACTION_QUEUES,
    EVENTS_QUEUE,
    INGEST_TASK,
    NEXT_RUN_TASK,
    PROCESS_EVENT_TASK,
    PROCESS_EVENTS_TASK,
    RUN_ACTION_TASK,
)
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from workers import lifecycle, pipeline
from workers.celery_app import app
from workers.inline import CHAIN, InlineAction
from workers.process import failure_state, inline_action_queues, policy, runtime
from workers.retry import Next, run_once, run_step, through_redis_outages


@app.task(name=INGEST_TASK, acks_late=True, reject_on_worker_lost=True)
def ingest(events: list[dict[str, Any]]) -> None:
    """Split one webhook's events into one `process_event` task each.

    The receiver now writes the `process_event` messages itself; this stays for `ingest` messages
    written before (queued, spooled, or in a dead letter's `task`).

    A malformed event is dead-lettered here, visibly, and the others go on; any other failure
    dead-letters the whole message, whose `dlq retry` fans it out again (duplicates stop at the claim).
    """

    def fan_out() -> None:
        for event in events:
            try:
                ChangeEvent.model_validate(event)
            except ValueError as exc:
                lifecycle.fail_task(
                    failure_state(), "ingest", INGEST_TASK, [[event]], EVENTS_QUEUE, exc, what="a malformed event"
                )
                continue
            process_event.apply_async((event,), queue=EVENTS_QUEUE)

    run_once(
        fan_out,
        lambda exc, _: lifecycle.fail_task(
            failure_state(), "ingest", INGEST_TASK, [events], EVENTS_QUEUE, exc, what="a webhook's events"
        ),
    )


@app.task(name=PROCESS_EVENT_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def process_event(
    self: Task[..., None], event: dict[str, Any], replay: bool = False, attempt: int = 0, claim: str | None = None
) -> None:
    """Evaluate the rules for one normalized event.

    `claim` is the id of the first delivery's task: a retry keeps it, so it may claim again.
    """
    token = claim or self.request.id
    if token is None:  # Celery gives every task it runs an id; only a direct call outside a worker has none
        raise RuntimeError("process_event needs a task id (or a claim) to claim the event with")
    evaluate_event(event, token, replay=replay, attempt=attempt)


@app.task(name=PROCESS_EVENTS_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def process_events(self: Task[..., None], events: list[dict[str, Any]]) -> None:
    """Evaluate several events in turn, each exactly as `process_event` does: its own claim (this task's id
    and its position, which a redelivery keeps), retries, inline actions and dead letter.

    The receiver writes one such message for the events of the webhooks it commits together
    (receiver/publisher.py), so a burst costs one broker message per group, not per event.
    """
    if self.request.id is None:
        raise RuntimeError("process_events needs a task id to claim its events with")
    evaluate_events(events, self.request.id)


# Seconds a `process_events` task evaluates before it hands its remaining events to a new message:
# each event may fetch a record and run a chain of inline actions, and the task must stay far below
# the soft time limit (workers/celery_app.py).
EVENTS_BUDGET = 20.0


def evaluate_events(events: Any, task_id: str, *, budget: float = EVENTS_BUDGET) -> None:
    """`process_events`' body. Past `budget` seconds, the events not started yet go to a new message, without
    a claim: should this task be delivered again and take them too, the claim lets one of the two run each."""
    if not isinstance(events, list):  # a message no receiver wrote: kept whole where a person sees it
        bad = ValueError(f"process_events takes a list of events, not {type(events).__name__}")
        through_redis_outages(
            lambda: lifecycle.fail_task(
                failure_state(), "ingest", PROCESS_EVENTS_TASK, [events], EVENTS_QUEUE, bad, what="a malformed message"
            )
        )
        return
    started, state = time.monotonic(), _state(events)
    if state is None:
        return
    with state.list_together() as list_them:
        try:
            for position, event in enumerate(events):
                if position and time.monotonic() - started > budget:
                    _hand_off(events[position:])
                    return
                evaluate_event(event, f"{task_id}:{position}")
        finally:
            through_redis_outages(list_them)  # one ZADD for the console's index, before the message is acked


def _state(events: list[Any]) -> PipelineState | None:
    """The process's pipeline state; None if the runtime cannot be built, the message then dead-lettered whole
    (`dlq retry` runs it again). Building it talks to Redis: an outage is waited out, as in any step."""
    states: list[PipelineState] = []
    run_once(
        lambda: states.append(runtime().state),
        lambda exc, _: lifecycle.fail_task(
            failure_state(), "ingest", PROCESS_EVENTS_TASK, [events], EVENTS_QUEUE, exc, what="a message of events"
        ),
    )
    return states[0] if states else None


def _hand_off(events: list[Any]) -> None:
    through_redis_outages(lambda: runtime().schedule(PROCESS_EVENTS_TASK, [events], EVENTS_QUEUE, 0.0))


def evaluate_event(event: Any, token: str, *, replay: bool = False, attempt: int = 0) -> None:
    """One event's evaluation under the retry policy, claimed with `token`, then its inline first action."""
    try:
        parsed = ChangeEvent.model_validate(event)
    except ValueError as exc:
        bad = exc  # a malformed event: recorded where a person sees it, not in Celery's log alone
        through_redis_outages(
            lambda: lifecycle.fail_task(
                failure_state(),
                "ingest",
                PROCESS_EVENT_TASK,
                [event, replay],
                EVENTS_QUEUE,
                bad,
                what="a malformed event",
            )
        )
        return

    def again(next_: Next) -> None:
        rt = runtime()
        rt.state.trace(parsed.id, Step.EVENT_RETRY, error=next_.reason, attempt=next_.attempt)
        rt.schedule(PROCESS_EVENT_TASK, [event, replay, next_.attempt, token], EVENTS_QUEUE, next_.delay)

    first = InlineAction(inline_action_queues(), lambda *args: runtime().enqueue_action(*args))
    done = False

    def evaluate() -> None:
        nonlocal done
        first.taken = None  # run again after a Redis outage: the run's same start gives it back
        rt = runtime()
        # Held open when the first action runs inline: its first read carries the event's writes.
        with rt.state.batched(hold=lambda: first.taken is not None):
            pipeline.process_event(parsed, token, rt, replay=replay, start=first)
        done = True

    # runtime() is called inside the step: building it talks to Redis, and an outage there must
    # wait and run again like any other step, never fail the task (which would ack it).
    run_step(
        evaluate,
        attempt,
        policy(),
        again=again,
        fail=lambda exc, attempts: lifecycle.fail_event(failure_state(), parsed, exc, attempts),
    )
    if not done:
        through_redis_outages(first.release)
    elif first.taken is not None:
        event_id, digest, queue = first.taken
        try:
            action_step(event_id, digest, 0, 0, queue, token, saved=runtime().state.just_saved(event_id))
        finally:
            through_redis_outages(runtime().state.end_batch)  # held open above, should the step not have run


@app.task(name=NEXT_RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def next_run(run_key: str, rule_digest: str) -> None:
    """A debounce fell due: start the waiting run of that rule and entity."""
    run_once(
        lambda: lifecycle.next_run(run_key, rule_digest, "", runtime()),
        lambda exc, _: lifecycle.fail_task(
            failure_state(),
            "run",
            NEXT_RUN_TASK,
            [run_key, rule_digest],
            EVENTS_QUEUE,
            exc,
            what=f"starting the next run of {run_key}",
        ),
    )


@app.task(name=RUN_ACTION_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_action(self: Task[..., None], event_id: str, rule_digest: str, index: int, attempt: int = 0) -> None:
    """Run one action of a matched rule; arguments are ids, the state lives in Redis."""
    queue = (self.request.delivery_info or {}).get("routing_key") or ACTION_QUEUES["http"]
    action_step(event_id, rule_digest, index, attempt, queue, self.request.id)


def action_step(
    event_id: str,
    rule_digest: str,
    index: int,
    attempt: int,
    queue: str,
    owner: str | None,
    *,
    saved: dict[str, Any] | None = None,
) -> None:
    """One action under the retry policy, from a `run_action` task or inline in its event's task (`owner`
    is that task's id, kept by a redelivery), then the actions after it that run inline (workers/inline.py),
    up to CHAIN of them; a retry or a deferral goes to its step's queue as a `run_action`."""
    for _ in range(CHAIN + 1):
        taken = _one_action_step(event_id, rule_digest, index, attempt, queue, owner, saved=saved)
        if taken is None:
            return
        event_id, rule_digest, queue = taken
        index, attempt, saved = index + 1, 0, None
    through_redis_outages(lambda: runtime().enqueue_action(event_id, rule_digest, index, queue))


def _one_action_step(
    event_id: str,
    rule_digest: str,
    index: int,
    attempt: int,
    queue: str,
    owner: str | None,
    *,
    saved: dict[str, Any] | None = None,
) -> tuple[str, str, str] | None:
    """`action_step`'s one step; the step after it, when this task is to run it inline."""
    after = InlineAction(inline_action_queues(), lambda *args: runtime().enqueue_action(*args), index=index + 1)
    done = False

    def again(next_: Next) -> None:
        rt = runtime()
        if next_.kind == "defer":  # not a failure: the target asked us to wait, no retry is spent
            rt.state.trace(
                event_id, Step.ACTION_DEFERRED, index=index, reason=next_.reason, seconds=round(next_.delay, 3)
            )
        else:
            rt.state.trace(
                event_id,
                Step.ACTION_RETRY,
                index=index,
                error=next_.reason,
                attempt=next_.attempt,
                seconds=round(next_.delay, 3),
            )
        rt.schedule(RUN_ACTION_TASK, [event_id, rule_digest, index, next_.attempt], queue, next_.delay)

    def step() -> None:
        nonlocal done
        after.taken = None  # run again after a Redis outage: the ledger skips the step and it is taken again
        rt = runtime()
        with rt.state.batched():
            pipeline.run_action(event_id, rule_digest, index, rt, owner=owner, saved=saved, then=after)
        done = True

    run_step(
        step,
        attempt,
        policy(),
        again=again,
        fail=lambda exc, attempts: lifecycle.fail_action(runtime(), event_id, rule_digest, index, exc, attempts),
    )
    if not done:
        through_redis_outages(after.release)
        return None
    return after.taken
