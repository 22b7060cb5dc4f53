"""What the Celery tasks do, as plain functions: evaluate an event's rules, then run one action."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from fieldrelay.events import ChangeEvent
from fieldrelay.queues import EVENTS_QUEUE, NEXT_RUN_TASK, RUN_ACTION_TASK
from rules import ActionCall, Rule, TemplateError
from rules.engine import Verdict, evaluate
from rules.templating import build_context, render_params
from workers.actions.context import ActionContext, Clients
from workers.actions.registry import ACTIONS
from workers.admission import Deferred, admit, deferral, next_utc_midnight, observe
from workers.connectors.errors import NotFound, RateLimited
from workers.echo import EchoGuard
from workers.gate import TargetGate
from workers.rulebook import RuleBook
from workers.runs import Decision, RunCoordinator
from workers.state import PipelineState

log = logging.getLogger("fieldrelay.pipeline")

# (event_id, rule digest, action index, queue)
EnqueueAction = Callable[[str, str, int, str], None]


class PipelineError(Exception):
    """A permanent failure of one action: retrying cannot help."""

    def __init__(self, event_id: str, rule: str, index: int, detail: str) -> None:
        super().__init__(event_id, rule, index, detail)
        self.event_id, self.rule, self.index, self.detail = event_id, rule, index, detail

    def __str__(self) -> str:
        return f"rule {self.rule!r} action {self.index} for event {self.event_id}: {self.detail}"


@dataclass
class Runtime:
    """What the pipeline needs from its worker process; tests build one around real Redis."""

    state: PipelineState
    clients: Clients
    rulebook: RuleBook
    enqueue_action: EnqueueAction
    queue_for_target: Callable[[str], str]
    gate: TargetGate
    runs: RunCoordinator
    echoes: EchoGuard
    # (task name, args, queue, delay): the restart-safe delayed queue, not an ETA task.
    schedule: Callable[[str, list[object], str, float], None]
    alert: Callable[[str, dict[str, str]], None] = lambda message, tags: None
    env: dict[str, str] = field(default_factory=dict)  # the allowlisted variables rules may read
    quota_period: float = 86400.0  # Synchroteam's quota resets at UTC midnight; tests compress the day


def fetch_entity(event: ChangeEvent, clients: Clients) -> dict[str, Any] | None:
    """The entity's current state from its source system, or None when it is gone."""
    if event.action == "deleted":
        return None
    ref = event.entity
    try:
        if event.source == "servicetrade":
            if ref.uri:
                return clients.servicetrade.get(ref.uri)
            return clients.servicetrade.get_entity(ref.type, ref.id)
        if event.source == "synchroteam":
            return clients.synchroteam.details(ref.type, id=ref.id)
        if ref.type == "activity":
            return clients.synergist.activity(int(ref.id))
        if ref.type == "job":
            return clients.synergist.job(str(ref.id))
        return None  # Synergist calendar and timesheet records have no documented read by id
    except NotFound:
        return None


def process_event(event: ChangeEvent, task_id: str, rt: Runtime, *, replay: bool = False) -> list[Verdict]:
    """Claim the event, evaluate the rules, and start each matched rule's first action.

    A `replay` (an operator's `fieldrelay replay`) skips the duplicate and stale checks.
    """
    eid = event.id
    if replay:
        rt.state.trace(eid, "event.replayed", task_id=task_id)
    elif not rt.state.claim_event(eid, task_id):
        rt.state.trace(eid, "event.duplicate", message_id=event.message_id, task_id=task_id)
        log.info("duplicate event skipped", extra={"event_id": eid})
        return []
    newest = rt.state.seen_at(event.source, event.entity.type, event.entity.id)
    if not replay and newest is not None and event.occurred_at < newest:
        # Out of order: a newer change to this entity was already applied, and actions read the
        # entity's current state anyway. Equal timestamps are two changes in one second: both run.
        rt.state.trace(eid, "event.stale", occurred_at=event.occurred_at, newest_applied=newest)
        return []
    rt.state.save_event(eid, event.model_dump(mode="json"))
    rt.state.mark_seen(event.source, event.entity.type, event.entity.id, event.occurred_at)
    if not replay and rt.echoes.is_echo(event):
        rt.state.trace(eid, "event.own_write", detail="the change our own action made; rules not run (loop guard)")
        return []
    rt.state.trace(eid, "event.received", via=event.via, message_id=event.message_id)
    # A failed entity fetch propagates out of evaluate: the task retries, nothing is enqueued yet.
    ruleset = rt.rulebook.current()
    verdicts = evaluate(ruleset, event, lambda: fetch_entity(event, rt.clients), env=rt.env)
    if not verdicts:
        rt.state.trace(eid, "rules.none", detail=f"no rule listens for {event.source} {event.entity.type} "
                       f"{event.action} ({len(ruleset.rules)} rules loaded)")
    for verdict in verdicts:
        rule = verdict.rule
        rt.state.trace(eid, "rule.matched" if verdict.matched else "rule.skipped",
                       rule=rule.name, reason=verdict.reason)
        if verdict.matched and rule.then:
            rt.state.save_rule(rule.digest, rule.to_json())
            decision = rt.runs.offer(rule.name, rule.mode, rule.debounce, event, rule.digest)
            follow(decision, rule, event, rt)
    return verdicts


def follow(decision: Decision, rule: Rule, event: ChangeEvent, rt: Runtime) -> None:
    """Carry out a run decision: start a chain now, or come back after the debounce."""
    run_key = rt.runs.run_key(rule.name, event.source, event.entity.type, event.entity.id)
    if decision.kind == "start" and decision.event_id:
        event_id, digest = decision.event_id, decision.digest or rule.digest
        rt.state.trace(event_id, "run.started", rule=rule.name, mode=rule.mode)
        first = Rule.from_json(rt.state.load_rule(digest) or rule.to_json()).then[0]
        rt.enqueue_action(event_id, digest, 0, rt.queue_for_target(ACTIONS[first.name].target))
    elif decision.kind == "schedule":
        if rule.mode == "parallel":
            queue = rt.queue_for_target(ACTIONS[rule.then[0].name].target)
            rt.schedule(RUN_ACTION_TASK, [event.id, rule.digest, 0], queue, decision.delay)
        else:
            rt.schedule(NEXT_RUN_TASK, [run_key, rule.digest], EVENTS_QUEUE, decision.delay)
        rt.state.trace(event.id, "run.debounced", rule=rule.name, seconds=decision.delay)
    elif decision.kind == "wait":
        rt.state.trace(event.id, "run.waiting", rule=rule.name, mode=rule.mode)


def next_run(run_key: str, digest: str, finished_event_id: str, rt: Runtime) -> None:
    """A run ended, or a debounce fell due: start the next waiting event of that rule and entity."""
    decision = rt.runs.next_run(run_key, finished_event_id)
    if decision.kind != "start" or not decision.event_id:
        return
    raw_rule, raw_event = rt.state.load_rule(decision.digest or digest), rt.state.load_event(decision.event_id)
    if raw_rule is None or raw_event is None:
        return
    follow(decision, Rule.from_json(raw_rule), ChangeEvent.model_validate(raw_event), rt)


def end_run(event: ChangeEvent, rule: Rule, digest: str, rt: Runtime) -> None:
    if rule.mode != "parallel":
        run_key = rt.runs.run_key(rule.name, event.source, event.entity.type, event.entity.id)
        next_run(run_key, digest, rt.runs.member(event.id, digest), rt)


def idempotency_key(event: ChangeEvent, rule: Rule, index: int, call: ActionCall) -> str:
    # Keyed by the source entity, not the event: a later change to the same job updates
    # the record this rule created for it instead of creating another (Synergist has no upsert).
    # A step without an `id` is named by its action and how many of that action precede it,
    # not by its position, so adding an unrelated step to the rule keeps the existing links.
    step = call.id
    if step is None:
        calls = [*rule.then, *rule.on_failure]
        nth = sum(1 for c in calls[:index] if c.name == call.name) if index < len(calls) else 0
        step = f"{call.name}#{nth}"
    return f"{event.source}:{event.entity.type}:{event.entity.id}:{rule.name}:{step}"


def run_action(event_id: str, digest: str, index: int, rt: Runtime, *, owner: str | None = None) -> dict[str, Any]:
    """Run action `index` of the stored rule once (the ledger skips a done one), then chain the next."""
    rule_json = rt.state.load_rule(digest)
    raw_event = rt.state.load_event(event_id)
    if rule_json is None or raw_event is None:
        raise PipelineError(event_id, digest, index, "event or rule expired from the store")
    rule = Rule.from_json(rule_json)
    event = ChangeEvent.model_validate(raw_event)
    result = rt.state.action_done(event_id, digest, index)
    if result is None:
        result = _execute(event, rule, digest, index, rt, owner=owner)
    if index + 1 < len(rule.then):
        target = ACTIONS[rule.then[index + 1].name].target
        rt.enqueue_action(event_id, digest, index + 1, rt.queue_for_target(target))
    else:
        end_run(event, rule, digest, rt)
    return result


def run_on_failure(event_id: str, digest: str, failed_index: int, error: str, rt: Runtime) -> None:
    """Run the rule's `on_failure` actions once, in order; each one's own failure is traced, not retried."""
    rule_json, raw_event = rt.state.load_rule(digest), rt.state.load_event(event_id)
    if rule_json is None or raw_event is None:
        return
    rule, event = Rule.from_json(rule_json), ChangeEvent.model_validate(raw_event)
    failure = {"index": failed_index, "action": rule.then[failed_index].name, "error": error}
    for offset, call in enumerate(rule.on_failure):
        index = len(rule.then) + offset  # ledger slots after the `then` steps
        if rt.state.action_done(event_id, digest, index) is not None:
            continue
        try:
            _execute(event, rule, digest, index, rt, call=call, extra={"failure": failure})
        except Exception as exc:  # an alert about an alert would loop; the trace keeps it
            rt.state.trace(event_id, "on_failure.failed", rule=rule.name, action=call.name,
                           error=f"{type(exc).__name__}: {exc}")


def _execute(
    event: ChangeEvent, rule: Rule, digest: str, index: int, rt: Runtime,
    *, call: ActionCall | None = None, extra: dict[str, Any] | None = None, owner: str | None = None,
) -> dict[str, Any]:
    eid = event.id
    call = call or rule.then[index]
    spec = ACTIONS[call.name]
    # Lazy: the entity's current state is fetched only if this action's templates read it.
    context = build_context(
        event, lambda: fetch_entity(event, rt.clients), rt.state.load_steps(eid, digest), rule.vars,
        datetime.now(UTC), rt.env,
    )
    context.update(extra or {})
    try:
        params = spec.params.model_validate(render_params(call, context))
    except TemplateError as exc:
        raise PipelineError(eid, rule.name, index, str(exc)) from None
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PipelineError(eid, rule.name, index, f"{call.name} parameters: {detail}") from None
    ctx = ActionContext(eid, rule.name, index, idempotency_key(event, rule, index, call), rt.state.link_store())
    admit(rt.gate, spec.target)
    # One call per (entity, rule, step) at a time: two events for one entity (mode: parallel, or a
    # redelivery racing its original) could otherwise both miss the link store and both create.
    token = rt.state.lock_step(ctx.idempotency_key, owner)
    if token is None:
        raise Deferred(1.0, "busy")
    rt.state.trace(eid, "action.started", rule=rule.name, index=index, action=call.name,
                   params=params.model_dump(mode="json"))
    try:
        result = spec.run(rt.clients, params, ctx)
    except RateLimited as exc:
        raise deferral(rt.gate, spec.target, exc, rt.quota_period, rt.alert) from exc
    finally:
        rt.state.unlock_step(ctx.idempotency_key, token)
        observe(rt.gate, spec.target, rt.clients, rt.quota_period, rt.alert)
    rt.echoes.remember(call.name, params, result)
    rt.state.mark_action_done(eid, digest, index, call.id, result)
    rt.state.trace(eid, "action.succeeded", rule=rule.name, index=index, action=call.name, result=result)
    return result


__all__ = ["Deferred", "PipelineError", "Runtime", "next_utc_midnight", "process_event", "run_action"]
