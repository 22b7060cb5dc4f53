"""What the Celery tasks do, as plain functions: evaluate an event's rules, then run one action of a run."""

from __future__ import annotations

import logging
from typing import Any

from fieldrelay.events import ChangeEvent
from fieldrelay.steps import Step
from rules import rule_from_json
from rules.engine import evaluate
from rules.models import Verdict
from workers.actions.registry import ACTIONS
from workers.execute import PipelineError, execute, fetch_entity
from workers.lifecycle import finish, follow
from workers.runtime import Runtime

log = logging.getLogger("fieldrelay.pipeline")


def process_event(event: ChangeEvent, task_id: str, rt: Runtime, *, replay: bool = False) -> list[Verdict]:
    """Claim the event, evaluate the rules, and start each matched rule's first action.

    A `replay` (an operator's `fieldrelay replay`) skips the duplicate and stale checks.
    """
    eid = event.id
    if replay:
        rt.state.trace(eid, Step.REPLAYED, task_id=task_id)
    elif not rt.state.claim_event(eid, task_id):
        rt.state.trace(eid, Step.DUPLICATE, message_id=event.message_id, task_id=task_id)
        log.info("duplicate event skipped", extra={"event_id": eid})
        return []
    newest = rt.state.seen_at(event.source, event.entity.type, event.entity.id)
    if not replay and newest is not None and event.occurred_at < newest:
        # Out of order: a newer change to this entity was already applied, and actions read the
        # entity's current state anyway. Equal timestamps are two changes in one second: both run.
        rt.state.trace(eid, Step.STALE, occurred_at=event.occurred_at, newest_applied=newest)
        return []
    rt.state.save_event(eid, event.model_dump(mode="json"))
    rt.state.mark_seen(event.source, event.entity.type, event.entity.id, event.occurred_at)
    if not replay and rt.echoes.is_echo(event):
        rt.state.trace(eid, Step.OWN_WRITE, detail="the change our own action made; rules not run (loop guard)")
        return []
    rt.state.trace(eid, Step.RECEIVED, via=event.via, message_id=event.message_id)
    # A failed entity fetch propagates out of evaluate: the task retries, nothing is enqueued yet.
    ruleset = rt.rulebook.current()
    verdicts = evaluate(ruleset, event, lambda: fetch_entity(event, rt.clients), env=rt.env)
    if not verdicts:
        rt.state.trace(
            eid,
            Step.NO_RULES,
            detail=f"no rule listens for {event.source} {event.entity.type} "
            f"{event.action} ({len(ruleset.rules)} rules loaded)",
        )
    for verdict in verdicts:
        rule = verdict.rule
        rt.state.trace(
            eid, Step.RULE_MATCHED if verdict.matched else Step.RULE_SKIPPED, rule=rule.name, reason=verdict.reason
        )
        if verdict.matched and rule.then:
            rt.state.save_rule(rule.digest, rule.to_json())
            decision = rt.runs.offer(rule.name, rule.mode, rule.debounce, event, rule.digest)
            follow(decision, rule, event, rt)
    return verdicts


def run_action(event_id: str, digest: str, index: int, rt: Runtime, *, owner: str | None = None) -> dict[str, Any]:
    """Run action `index` of the stored rule once (the ledger skips a done one), then chain the next."""
    rule_json = rt.state.load_rule(digest)
    raw_event = rt.state.load_event(event_id)
    if rule_json is None or raw_event is None:
        raise PipelineError(event_id, digest, index, "event or rule expired from the store")
    rule = rule_from_json(rule_json)
    event = ChangeEvent.model_validate(raw_event)
    result = rt.state.action_done(event_id, digest, index)
    if result is None:
        result = execute(event, rule, digest, index, rt, owner=owner)
    if index + 1 < len(rule.then):
        target = ACTIONS[rule.then[index + 1].name].target
        rt.enqueue_action(event_id, digest, index + 1, rt.queue_for(target))
    else:
        finish(event, rule, digest, rt)
    return result
