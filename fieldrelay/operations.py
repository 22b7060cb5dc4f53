"""What operators change in a running pipeline: dead letters (retry, drop) and targets (pause, resume).

Plain functions over `PipelineState`, shared by the console and the command line; every change adds
a step to the affected event's trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fieldrelay.celery_messages import task_message
from fieldrelay.queries import OperationError, check_target
from fieldrelay.queues import ACTION_QUEUES, RUN_ACTION_TASK
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step

# (event_id, rule digest, action index, queue), as workers.pipeline.EnqueueAction
Enqueue = Callable[[str, str, int, str], None]


def redis_enqueue(state: PipelineState) -> Enqueue:
    """Enqueue `fieldrelay.run_action` by writing its Celery message straight to the target's queue."""

    def enqueue(event_id: str, digest: str, index: int, queue: str) -> None:
        state.r.lpush(
            queue,
            task_message(RUN_ACTION_TASK, [event_id, digest, index], queue, argsrepr=repr((event_id, digest, index))),
        )

    return enqueue


def retry_dead_letter(state: PipelineState, dlq_id: str, enqueue: Enqueue | None = None) -> dict[str, Any]:
    """Run the failed step again on its target's queue, with the rule version that matched.

    The step's ledger entry is cleared first (a step that was in fact done runs again; targets
    are idempotent), and the entry leaves the DLQ before the enqueue: the retry may fail again
    at once and dead-letter under the same id.
    """
    entry = state.dead_letter_entry(dlq_id)
    if entry is None:
        raise OperationError(f"no dead letter {dlq_id!r}")
    if entry.get("task"):
        return _retry_task(state, dlq_id, entry)
    event_id, digest, index, target = entry["event_id"], entry["rule_digest"], int(entry["index"]), entry["target"]
    if target not in ACTION_QUEUES:
        raise OperationError(f"dead letter {dlq_id} has no known target ({target!r})")
    if state.load_event(event_id) is None or state.load_rule(digest) is None:
        raise OperationError(
            f"dead letter {dlq_id}: its event or rule version expired from the store; replay the event instead"
        )
    state.forget_results(event_id, digest, index)
    state.remove_dead_letter(dlq_id)
    try:
        (enqueue or redis_enqueue(state))(event_id, digest, index, ACTION_QUEUES[target])
    except Exception:
        state.dead_letter({k: v for k, v in entry.items() if k not in ("id", "at")})
        raise
    state.trace(
        event_id,
        Step.DLQ_RETRIED,
        rule=entry.get("rule"),
        index=index,
        action=entry.get("action"),
        target=target,
        dead_letter=dlq_id,
    )
    return entry


def _retry_task(state: PipelineState, dlq_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A dead letter that is not a rule's step (an event, a webhook's events, a run, a poll): its task again."""
    task, args = entry["task"], state.dead_letter_args(dlq_id)
    if args is None:
        raise OperationError(f"dead letter {dlq_id}: what to run again is no longer stored")
    state.remove_dead_letter(dlq_id)
    try:
        state.r.lpush(task["queue"], task_message(task["name"], args, task["queue"], argsrepr=f"dlq retry {dlq_id}"))
    except Exception:
        state.dead_letter({k: v for k, v in entry.items() if k not in ("id", "at")}, task_args=args)
        raise
    if entry.get("event_id"):
        kind, action = entry.get("kind"), entry.get("action")
        state.trace(entry["event_id"], Step.DLQ_RETRIED, kind=kind, action=action, dead_letter=dlq_id)
    return entry


def retry_queue(entry: dict[str, Any]) -> str:
    """The queue a retried dead letter went to."""
    task = entry.get("task")
    return str(task["queue"]) if task else ACTION_QUEUES.get(str(entry.get("target")), "?")


def drop_dead_letter(state: PipelineState, dlq_id: str) -> dict[str, Any]:
    entry = state.dead_letter_entry(dlq_id)
    if entry is None or not state.remove_dead_letter(dlq_id):
        raise OperationError(f"no dead letter {dlq_id!r}")
    if not entry.get("event_id"):
        return entry
    state.trace(
        entry["event_id"],
        Step.DLQ_DROPPED,
        rule=entry.get("rule"),
        index=entry.get("index"),
        action=entry.get("action"),
        target=entry.get("target"),
        dead_letter=dlq_id,
    )
    return entry


def pause_target(state: PipelineState, target: str, reason: str = "") -> None:
    state.pause_target(check_target(target), reason=reason or "paused by an operator")


def resume_target(state: PipelineState, target: str) -> bool:
    return state.resume_target(check_target(target))
