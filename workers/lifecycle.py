"""A matched rule's run, from start to end: the one place a run starts, and the one place it ends.

follow(decision)        start the run now, or after its debounce, or let it wait its turn
next_run(run_key)       a debounce fell due, or the run before it ended: start the next waiting one
finish(...)             the last step succeeded: the run ends
fail_action(...)        a step failed for good: dead letter, the rule's `on_failure` steps, one
                        alert; the run ends
fail_event(...)         the event could not be evaluated at all: its trace says why, a dead letter
                        that runs it again, one alert
fail_task(...)          a task with no event to pin it on failed (ingest, a debounced run, a poll):
                        a dead letter that runs it again, one alert
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from fieldrelay.events import ChangeEvent
from fieldrelay.queues import EVENTS_QUEUE, NEXT_RUN_TASK, PROCESS_EVENT_TASK, RUN_ACTION_TASK
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from rules import Rule, rule_from_json
from workers.actions.registry import ACTIONS
from workers.alerts import alert_exception
from workers.execute import execute
from workers.runs import Decision
from workers.runtime import EnqueueAction, Runtime

log = logging.getLogger("fieldrelay.pipeline")


def follow(decision: Decision, rule: Rule, event: ChangeEvent, rt: Runtime, start: EnqueueAction | None = None) -> None:
    """Carry out a run decision: start a chain now (`start`, else `rt.enqueue_action`, takes its first
    action), or come back after the debounce."""
    run_key = rt.runs.run_key(rule.name, event.source, event.entity.type, event.entity.id)
    if decision.kind == "start" and decision.event_id:
        event_id, digest = decision.event_id, decision.digest or rule.digest
        rt.state.trace(event_id, Step.RUN_STARTED, rule=rule.name, mode=rule.mode)
        started = rule if digest == rule.digest else rule_from_json(rt.state.load_rule(digest) or rule.to_json())
        (start or rt.enqueue_action)(event_id, digest, 0, rt.queue_for(ACTIONS[started.then[0].name].target))
    elif decision.kind == "schedule":
        if rule.mode == "parallel":
            queue = rt.queue_for(ACTIONS[rule.then[0].name].target)
            rt.schedule(RUN_ACTION_TASK, [event.id, rule.digest, 0], queue, decision.delay)
        else:
            rt.schedule(NEXT_RUN_TASK, [run_key, rule.digest], EVENTS_QUEUE, decision.delay)
        rt.state.trace(event.id, Step.RUN_DEBOUNCED, rule=rule.name, seconds=decision.delay)
    elif decision.kind == "wait":
        rt.state.trace(event.id, Step.RUN_WAITING, rule=rule.name, mode=rule.mode)


def next_run(run_key: str, digest: str, finished_event_id: str, rt: Runtime) -> None:
    """A run ended, or a debounce fell due: start the next waiting event of that rule and entity."""
    decision = rt.runs.next_run(run_key, finished_event_id, after=rt.state.run_after_writes)
    if decision.kind != "start" or not decision.event_id:
        return
    raw_rule, raw_event = rt.state.load_rule(decision.digest or digest), rt.state.load_event(decision.event_id)
    if raw_rule is None or raw_event is None:
        return
    follow(decision, rule_from_json(raw_rule), ChangeEvent.model_validate(raw_event), rt)


def finish(event: ChangeEvent, rule: Rule, digest: str, rt: Runtime) -> None:
    """The run of `rule` for `event` is over; under `queued` or `latest` the entity's next run may start."""
    if rule.mode != "parallel":
        run_key = rt.runs.run_key(rule.name, event.source, event.entity.type, event.entity.id)
        next_run(run_key, digest, rt.runs.member(event.id, digest), rt)


def fail_action(rt: Runtime, event_id: str, digest: str, index: int, exc: Exception, attempts: int) -> None:
    """Dead-letter the step, run the rule's `on_failure` steps, alert once (grouped by rule and target), end the run."""
    rule_json = rt.state.load_rule(digest)
    rule = rule_from_json(rule_json) if rule_json is not None else None
    action = rule.then[index].name if rule is not None else ""
    name = rule.name if rule is not None else digest
    target = ACTIONS[action].target if action in ACTIONS else "unknown"
    error = f"{type(exc).__name__}: {exc}"
    detail = {
        "event_id": event_id,
        "rule": name,
        "rule_digest": digest,
        "index": index,
        "action": action,
        "target": target,
        "error": error,
        "attempts": attempts,
    }
    rt.state.dead_letter(detail)
    rt.state.trace(event_id, Step.ACTION_FAILED, **{k: v for k, v in detail.items() if k != "event_id"})
    raw_event = rt.state.load_event(event_id)
    if rule is not None and raw_event is not None:
        event = ChangeEvent.model_validate(raw_event)
        run_on_failure(event, rule, digest, index, error, rt, derived=raw_event.get("derived"))
        finish(event, rule, digest, rt)
    alert_exception(
        exc,
        f"action failed for good: {rt.state.redactor.text(error)}",
        {"event_id": event_id, "rule": name, "target": target, "action": action},
        ["fieldrelay-action-failed", name, target],
    )


def run_on_failure(
    event: ChangeEvent,
    rule: Rule,
    digest: str,
    failed_index: int,
    error: str,
    rt: Runtime,
    derived: dict[str, Any] | None = None,
) -> None:
    """Run the rule's `on_failure` actions once, in order; each one's own failure is traced, not retried."""
    failure: dict[str, Any] = {"index": failed_index, "action": rule.then[failed_index].name, "error": error}
    for offset, call in enumerate(rule.on_failure):
        index = len(rule.then) + offset  # ledger slots after the `then` steps
        if rt.state.action_done(event.id, digest, index) is not None:
            continue
        try:
            execute(event, rule, digest, index, rt, call=call, extra={"failure": failure}, derived=derived)
        except Exception as exc:  # an alert about an alert would loop; the trace keeps it
            rt.state.trace(
                event.id, Step.ON_FAILURE_FAILED, rule=rule.name, action=call.name, error=f"{type(exc).__name__}: {exc}"
            )


def fail_event(state: PipelineState, event: ChangeEvent, exc: Exception, attempts: int) -> None:
    """The rules could not be evaluated for `event`: its trace, a dead letter that runs it again, one alert.

    The event is stored first, so `fieldrelay replay` finds it too; the console lists it as failed. Only
    the state is needed: this works even when the worker's runtime could not be built.
    """
    error = f"{type(exc).__name__}: {exc}"
    raw = event.model_dump(mode="json")
    state.save_event(event.id, raw)
    state.dead_letter(
        {
            "kind": "event",
            "event_id": event.id,
            "rule": "",
            "rule_digest": "",
            "index": "event",
            "action": "evaluate rules",
            "target": "events",
            "error": error,
            "attempts": attempts,
            "task": {"name": PROCESS_EVENT_TASK, "queue": EVENTS_QUEUE},
        },
        task_args=[raw, True],  # a replay: past the duplicate and stale checks
    )
    state.trace(event.id, Step.EVENT_FAILED, error=error, attempts=attempts)
    alert_exception(
        exc,
        f"event {event.id} could not be evaluated: {state.redactor.text(error)}; "
        f"`fieldrelay dlq retry` or `fieldrelay replay {event.id}` runs it again",
        {"event_id": event.id, "alert": "event"},
        ["fieldrelay-event-failed", event.source, event.entity.type],
    )


def fail_task(
    state: PipelineState,
    kind: str,
    task: str,
    args: list[Any],
    queue: str,
    exc: Exception,
    *,
    what: str,
    event_id: str = "",
    alert_once_per: int | None = None,
) -> str:
    """A task failed for good outside any rule's run (`kind`: ingest, run, poll): a dead letter that runs
    `task(*args)` again on `queue`, the event's trace when there is one, and one alert (at most one per
    `alert_once_per` seconds for the same failure, for work that repeats on a schedule). Returns its id."""
    error = f"{type(exc).__name__}: {exc}"
    key = hashlib.blake2b(repr((task, args)).encode(), digest_size=8).hexdigest()
    dlq_id = state.dead_letter(
        {
            "kind": kind,
            "event_id": event_id,
            "rule": "",
            "rule_digest": kind,
            "index": key,
            "action": what,
            "target": "events",
            "error": error,
            "attempts": 1,
            "task": {"name": task, "queue": queue},
        },
        task_args=args,
    )
    if event_id:
        state.trace(event_id, Step.EVENT_FAILED, error=error, attempts=1, dead_letter=dlq_id)
    if alert_once_per is not None and not state.first_alert(f"{dlq_id}:{type(exc).__name__}", alert_once_per):
        return dlq_id
    alert_exception(
        exc,
        f"{what} failed: {state.redactor.text(error)}; `fieldrelay dlq retry {dlq_id}` runs it again",
        {"alert": kind, **({"event_id": event_id} if event_id else {})},
        [f"fieldrelay-{kind}-failed", type(exc).__name__],
    )
    return dlq_id
