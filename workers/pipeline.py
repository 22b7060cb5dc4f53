"""What the Celery tasks do, as plain functions: evaluate an event's rules, then run one action of a run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from fieldrelay.batch import VersionConflict
from fieldrelay.entitystate import MODIFIED_FIELD, VOLATILE_FIELDS, EntityVersion, canonical, comparable, successor
from fieldrelay.events import ChangeEvent
from fieldrelay.records import Claim
from fieldrelay.steps import Step
from rules import rule_from_json
from rules.context import LazyEntity
from rules.engine import EventScope, judge
from rules.models import Rule, Verdict
from rules.ruleset import RuleSet
from rules.trigger import SNAPSHOT
from workers.actions.registry import ACTIONS
from workers.admission import Deferred
from workers.execute import PipelineError, execute, fetch_entity, uri_note
from workers.inline import InlineAction
from workers.lifecycle import finish, follow
from workers.links import LinkReader
from workers.runtime import EnqueueAction, Runtime

log = logging.getLogger("fieldrelay.pipeline")


# Two events of one record evaluated at once: the second to write its version evaluates again
# against the first's (no second fetch). Past this many rounds the task comes back shortly.
WRITE_ATTEMPTS = 5


def process_event(
    event: ChangeEvent, task_id: str, rt: Runtime, *, replay: bool = False, start: EnqueueAction | None = None
) -> list[Verdict]:
    """Claim the event, evaluate the rules against the record's last seen version, store the version this
    event brings, and start each matched rule's first action (through `start`, else `rt.enqueue_action`).

    The version is written with compare-and-set before any run starts, so two events of one record
    evaluated at once cannot both claim the same transition. A `replay` (an operator's `fieldrelay
    replay`) skips the duplicate and stale checks and writes no version.
    """
    eid = event.id
    store, ref = rt.state.entities, event.entity
    # The claim, the echo mark and the stored version, in one round trip.
    echo_key, entity_key = rt.echoes.key(event.source, ref.type, ref.id), store.key(event.source, ref.type, ref.id)
    claim = None if replay else task_id  # a replay claims nothing: it runs whoever holds the claim
    # The stored version rides along when the entity store shares the state's Redis (it always does, but
    # for bench/entity_state_commands.py, which gives the store a server of its own to count it apart).
    shared = store.r is rt.state.r
    claimed, (echo_mark, *read) = rt.state.claim_and_read(eid, claim, echo_key, *([entity_key] if shared else []))
    # Claimed for the first time: none of its runs' steps ran yet, and its inline first action need not look.
    new = claimed is Claim.NEW
    first = EntityVersion.decode(read[0]) if shared else store.read(event.source, ref.type, ref.id)
    if replay:
        rt.state.trace(eid, Step.REPLAYED, task_id=task_id)
    elif not claimed.claimed:
        rt.state.trace(eid, Step.DUPLICATE, message_id=event.message_id, task_id=task_id)
        log.info("duplicate event skipped", extra={"event_id": eid})
        return []
    ruleset = rt.rulebook.current()
    # Fetched at most once, however many rules read it and however often the evaluation runs again below.
    entity = LazyEntity(lambda: fetch_entity(event, rt.clients))
    links = LinkReader(rt.rulebook.current, rt.state.link_store().get_many)
    echo = not replay and rt.echoes.judge(event, echo_mark)
    ctx = _Evaluation(event, rt, replay, start, new, ruleset, entity, links, echo)
    for attempt in range(WRITE_ATTEMPTS):
        stored = first if attempt == 0 else store.read(event.source, ref.type, ref.id)
        try:
            verdicts = _decide(ctx, stored)
            rt.state.send_guarded()  # a refused version write must surface here, where it is evaluated again
        except VersionConflict:  # another event of the record wrote its version first: none of this was written
            rt.state.conflicted()
            continue
        if verdicts is not None:
            return verdicts
    raise Deferred(1.0, "busy")


@dataclass(frozen=True)
class _Evaluation:
    """What one event's evaluation keeps across its attempts to write the record's version."""

    event: ChangeEvent
    rt: Runtime
    replay: bool
    start: EnqueueAction | None
    new: bool  # claimed for the first time just now
    ruleset: RuleSet
    entity: LazyEntity
    links: LinkReader
    echo: bool  # our own write, come back


def _decide(ctx: _Evaluation, stored: EntityVersion) -> list[Verdict] | None:
    """Evaluate against `stored`, write the version the event brings and start each matched rule's run; None
    when another writer changed the version first (read it again). The version's write goes with the step's
    first send (`PipelineState.write_entity`), which is refused whole if it lost: no entry, record or run of
    this attempt is written then (VersionConflict)."""
    event, rt, entity, eid = ctx.event, ctx.rt, ctx.entity, ctx.event.id
    ref = event.entity
    turned_away = None if ctx.replay else turn_away(event, stored)
    if turned_away is not None:
        step, detail = turned_away
        if step is Step.DUPLICATE:  # the same change, come the other way: decided like its twin
            decided = successor(stored, None, at=event.occurred_at, **_brought(event, rt), decided=True)
            if not rt.state.entities.write(event.source, ref.type, ref.id, decided, expect=stored.token):
                return None
        rt.state.trace(eid, step, **detail)
        return []
    scope = None if ctx.echo else EventScope(event, entity, None, rt.env, stored.as_seen_by(eid), ctx.links)
    # A failed fetch propagates out of judge: the task retries, nothing is written or enqueued yet.
    verdicts = [] if scope is None else judge(ctx.ruleset.candidate_tuple(event), scope)
    if ctx.echo and not event.changes and stored.known and event.action != "deleted":
        # Our own write, reported without values: the stored version takes it in, or the next
        # comparison would show our write as someone's change (and a rule on it would loop).
        entity.value  # noqa: B018 (fetch once; next_version stores it)
    if not ctx.replay and not rt.state.write_entity(
        event.source, ref.type, ref.id, next_version(event, stored, entity, rt), expect=stored.token
    ):
        return None
    derived = scope.derived() if scope is not None else {}
    saved = event.model_dump(mode="json")
    if derived:
        saved["derived"] = derived
    rt.state.save_event(eid, saved)
    _EVALUATED.clear()
    _EVALUATED[eid] = event
    if ctx.echo:
        rt.state.trace(eid, Step.OWN_WRITE, detail="the change our own action made; rules not run (loop guard)")
        return []
    rt.state.trace(eid, Step.RECEIVED, via=event.via, message_id=event.message_id, **_notes(event, stored, derived, rt))
    if not verdicts:
        rt.state.trace(
            eid,
            Step.NO_RULES,
            detail=f"no rule can match this {event.source} {event.entity.type} {event.action} "
            f"({len(ctx.ruleset.rules)} rules loaded)",
        )
    for verdict in verdicts:
        rule = verdict.rule
        seen = {n: scope.view.seen(n) for n in rule.when.changed} if scope is not None else {}
        transitions = {n: c.describe() for n, c in seen.items() if c is not None}
        rt.state.trace(
            eid,
            Step.RULE_MATCHED if verdict.matched else Step.RULE_SKIPPED,
            rule=rule.name,
            reason=verdict.reason,
            **({"transitions": transitions} if transitions else {}),
        )
        if verdict.matched and rule.then:
            rt.state.save_rule(rule.digest, rule.to_json())
            # The offer goes with the step's writes; when this task will run the first action itself, the
            # action's ledger and step results are read in that round trip too.
            first_queue = rt.queue_for(ACTIONS[rule.then[0].name].target)
            inline = isinstance(ctx.start, InlineAction) and ctx.start.would_take(first_queue)
            after = (
                rt.state.run_and_prefetch((eid, rule.digest, 0), new=ctx.new) if inline else rt.state.run_after_writes
            )
            decision = rt.runs.offer(rule.name, rule.mode, rule.debounce, event, rule.digest, after=after)
            rt.state.send_guarded()  # `parallel` runs ask Redis nothing: the version must be in before one starts
            follow(decision, rule, event, rt, ctx.start)
    return verdicts


# The event this process evaluated last, by id: its inline first action (`saved`) takes it as it is.
_EVALUATED: dict[str, ChangeEvent] = {}
_RULES: dict[str, Rule] = {}
RULES_KEPT = 128  # rule versions kept built, as PipelineState keeps their JSON (rules are immutable per digest)


def _rule(digest: str, rule_json: dict[str, Any]) -> Rule:
    rule = _RULES.get(digest)
    if rule is None:
        if len(_RULES) >= RULES_KEPT:
            _RULES.clear()
        rule = _RULES[digest] = rule_from_json(rule_json)
    return rule


def turn_away(event: ChangeEvent, stored: EntityVersion) -> tuple[Step, dict[str, Any]] | None:
    """Why the event is not evaluated: stale (something newer was decided or stored), or the same change
    as the stored version's event, come the other way (a webhook and a poll of one version); else None.

    Not for the event that wrote the stored version itself (a redelivery, or a poll event whose
    snapshot the poller stored first): that one is evaluated against the version before it.
    """
    if stored.event_id == event.id:
        return None
    newest = stored.ordering_time()
    if newest is not None and event.occurred_at < newest:
        # Out of order: a newer change to this entity was already applied, and actions read the
        # entity's current state anyway. Equal timestamps are two changes in one second: both run.
        return Step.STALE, {"occurred_at": event.occurred_at, "newest_applied": newest}
    if same_version(event, stored):
        detail = (
            f"the same version of {event.entity.type} {event.entity.id} (modified at {event.occurred_at}, "
            f"same field values) that event {stored.event_id} brought via {stored.via}"
        )
        return Step.DUPLICATE, {"same_version_as": stored.event_id, "detail": detail}
    return None


def same_version(event: ChangeEvent, stored: EntityVersion) -> bool:
    """A webhook and a poll report one version: same action and modification time, and every field the
    event reports has the value the stored version has (fields only one of them knows are not compared)."""
    if stored.record is None or stored.event_id is None or stored.via in (None, event.via):
        return False
    if stored.version_at != event.occurred_at or stored.action != event.action:
        return False
    for name, change in (event.changes or {}).items():
        known, value = stored.field(name)
        if known and canonical(value) != canonical(change.new):
            return False
    return True


def next_version(event: ChangeEvent, stored: EntityVersion, entity: LazyEntity, rt: Runtime) -> EntityVersion:
    """What the store holds after this event: the fetched record, else the changeset's values patched in,
    else only the ordering time. The event that wrote the stored version (a redelivery, a poll event)
    leaves the record as it is, so it can be evaluated again against the same earlier version."""
    brought = _brought(event, rt)
    record = entity.value if entity.loaded and entity.error is None else None
    if stored.event_id == event.id or event.action == "deleted":
        return successor(stored, None, at=event.occurred_at, **brought, decided=True)
    if record is not None:
        fields = comparable(record, VOLATILE_FIELDS.get(event.source, ()))
        at = _modified_at(event, record, rt)
        return successor(stored, fields, at=at, **brought, decided=True)
    if event.changes:
        values = {name: change.new for name, change in event.changes.items()}
        return successor(stored, values, at=event.occurred_at, **brought, decided=True, patch=True)
    return successor(stored, None, at=event.occurred_at, **brought, decided=True)


def _brought(event: ChangeEvent, rt: Runtime) -> dict[str, Any]:
    return {"event_id": event.id, "via": event.via, "action": event.action, "max_bytes": rt.state.entities.max_bytes}


def _modified_at(event: ChangeEvent, record: dict[str, Any], rt: Runtime) -> int:
    """The fetched version's modification time (`updated`), never before the event nor in the future."""
    field = MODIFIED_FIELD.get(event.source)
    value = record.get(field) if field else None
    if not isinstance(value, int) or isinstance(value, bool):
        return event.occurred_at
    return min(max(value, event.occurred_at), int(time.time()) + rt.clock_skew)


def _notes(event: ChangeEvent, stored: EntityVersion, derived: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """What the `event.received` step says beyond the event itself: a clamped timestamp, a uri that was
    not followed, and which stored version the transitions were compared with."""
    notes: dict[str, Any] = {}
    if event.clamped_from is not None:
        notes["clamped"] = (
            f"timestamp {event.clamped_from} was more than {rt.clock_skew} s ahead of the receiver's clock; "
            f"ordered as received at {event.occurred_at}"
        )
    uri = uri_note(event)
    if uri:
        notes["uri"] = uri
    if any(d.get("old_from") == SNAPSHOT for d in derived.values()):
        if stored.event_id == event.id:
            notes["compared_with"] = "the version stored before this event"
        else:
            by = f"event {stored.event_id}" if stored.event_id else "a poller's first look"
            notes["compared_with"] = f"the version stored by {by} (via {stored.via}, modified at {stored.version_at})"
    return notes


def run_action(
    event_id: str,
    digest: str,
    index: int,
    rt: Runtime,
    *,
    owner: str | None = None,
    saved: dict[str, Any] | None = None,
    then: EnqueueAction | None = None,
) -> dict[str, Any]:
    """Run action `index` of the stored rule once (the ledger skips a done one), then chain the next
    (through `then`, else `rt.enqueue_action`).

    `saved` is the event as the calling task just saved it (an inline first action): no read back.
    """
    rule_json = rt.state.load_rule(digest)
    raw_event = saved if saved is not None else rt.state.load_event(event_id)
    if rule_json is None or raw_event is None:
        raise PipelineError(event_id, digest, index, "event or rule expired from the store")
    rule = _rule(digest, rule_json)
    event = _EVALUATED.get(event_id) if saved is not None else None
    event = event or ChangeEvent.model_validate(raw_event)
    result, steps = rt.state.done_and_steps(event_id, digest, index)
    if result is None:
        result = execute(event, rule, digest, index, rt, owner=owner, derived=raw_event.get("derived"), steps=steps)
    if index + 1 < len(rule.then):
        target = ACTIONS[rule.then[index + 1].name].target
        (then or rt.enqueue_action)(event_id, digest, index + 1, rt.queue_for(target))
    else:
        finish(event, rule, digest, rt)
    return result
