"""Carry out one action call: render its parameters, wait for its target, call it once, record the result."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from fieldrelay.events import ChangeEvent
from fieldrelay.redaction import MASK
from fieldrelay.steps import Step
from rules import ActionCall, Rule, TemplateError, build_context, render_params
from rules.templating import derived_paths, mask_paths
from workers.actions.context import ActionContext, Clients
from workers.actions.registry import ACTIONS
from workers.admission import admit, deferral, observe
from workers.connectors.errors import NotFound, RateLimited
from workers.connectors.servicetrade import UnreadableEntity, api_path, entity_path
from workers.connectors.servicetrade_records import ServiceTradeEntity
from workers.connectors.synchroteam_records import SynchroteamRecord
from workers.connectors.synergist_records import SynergistRecord
from workers.links import LinkReader, entity_key, step_name
from workers.runtime import Runtime


class PipelineError(Exception):
    """A permanent failure of one action: retrying cannot help."""

    def __init__(self, event_id: str, rule: str, index: int, detail: str) -> None:
        super().__init__(event_id, rule, index, detail)
        self.event_id, self.rule, self.index, self.detail = event_id, rule, index, detail

    def __str__(self) -> str:
        return f"rule {self.rule!r} action {self.index} for event {self.event_id}: {self.detail}"


def fetch_entity(
    event: ChangeEvent, clients: Clients
) -> ServiceTradeEntity | SynchroteamRecord | SynergistRecord | None:
    """The entity's current state from its source system, or None when it is gone (or unreadable).

    ServiceTrade records are read by type and id from the connector's table of documented paths; the
    event's `uri` is never followed (see `uri_note`).
    """
    if event.action == "deleted":
        return None
    ref = event.entity
    try:
        if event.source == "servicetrade":
            return clients.servicetrade.get_entity(ref.type, ref.id)
        if event.source == "synchroteam":
            return clients.synchroteam.details(ref.type, id=ref.id)
        if ref.type == "activity":
            return clients.synergist.activity(int(ref.id))
        if ref.type == "job":
            return clients.synergist.job(str(ref.id))
        return None  # Synergist calendar and timesheet records have no documented read by id
    except (NotFound, UnreadableEntity):
        return None


def shown(params: BaseModel, call: ActionCall) -> dict[str, Any]:
    """The parameters as the trace keeps them: whatever a template derived from a secret (`env`, `secret()`,
    `!secret`) is masked whole, in any form a filter gave it; the target gets the real values."""
    dumped: dict[str, Any] = params.model_dump(mode="json")
    paths = derived_paths(call.params)
    if not paths:
        return dumped
    by_alias = {info.alias: name for name, info in type(params).model_fields.items() if info.alias}
    fields = [(by_alias.get(str(p[0]), p[0]), *p[1:]) for p in paths]
    masked: dict[str, Any] = mask_paths(dumped, fields, MASK)
    return masked


def uri_note(event: ChangeEvent) -> str | None:
    """What the trace says when a ServiceTrade item's `uri` names another record than its type and id.

    The doc's own sample gives job 35769 the uri `.../api/invoice/35789`; the worker reads the job.
    """
    ref = event.entity
    if event.source != "servicetrade" or not ref.uri:
        return None
    try:
        expected = entity_path(ref.type, ref.id)
    except UnreadableEntity as exc:
        return f"not read: {exc}"
    try:
        given = api_path(ref.uri).split("?", 1)[0]
    except ValueError as exc:
        return f"uri {ref.uri!r} ignored ({exc}); read {expected} by type and id"
    if given.rstrip("/").lower() != expected.lower():
        return f"uri {ref.uri!r} names another record than {ref.type} {ref.id}; read {expected} by type and id"
    return None


def idempotency_key(event: ChangeEvent, rule: Rule, index: int, call: ActionCall) -> str:
    # Keyed by the source entity, not the event: a later change to the same job updates
    # the record this rule created for it instead of creating another (Synergist has no upsert).
    step = step_name(rule, index, call)
    return entity_key(event.source, event.entity.type, event.entity.id, rule.name, step)


def execute(
    event: ChangeEvent,
    rule: Rule,
    digest: str,
    index: int,
    rt: Runtime,
    *,
    call: ActionCall | None = None,
    extra: dict[str, Any] | None = None,
    owner: str | None = None,
    derived: dict[str, Any] | None = None,
    steps: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run step `index` of `rule` for `event` (or `call`, an `on_failure` step) and record it as done.

    `derived` holds the transitions the event's evaluation worked out beyond its changeset (templates
    read them in `changes`); `steps`, the run's step results when the caller read them already.
    """
    eid = event.id
    call = call or rule.then[index]
    spec = ACTIONS[call.name]
    # Lazy: the entity's current state is fetched only if this action's templates read it.
    context = build_context(
        event,
        lambda: fetch_entity(event, rt.clients),
        rt.state.load_steps(eid, digest) if steps is None else steps,
        rule.vars,
        datetime.now(UTC),
        rt.env,
        derived=derived,
        links=LinkReader(rt.rulebook.current, rt.state.link_store().get_many),
    )
    context.update(extra or {})
    try:
        params = spec.params.model_validate(render_params(call, context))
    except TemplateError as exc:
        raise PipelineError(eid, rule.name, index, str(exc)) from None
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PipelineError(eid, rule.name, index, f"{call.name} parameters: {detail}") from None
    key = idempotency_key(event, rule, index, call)
    ctx = ActionContext(
        eid, rule.name, index, key, rt.state.link_store(), on_missing=call.on_missing, intents=rt.intents
    )
    limits = rt.targets[spec.target]
    # One call per (entity, rule, step) at a time: two events for one entity (mode: parallel, or a
    # redelivery racing its original) could otherwise both miss the link store and both create.
    # The lock is taken with the target's slot, in one round trip; another owner's lock defers as `busy`.
    lock = rt.state.step_lock(ctx.idempotency_key, owner)
    # The trace shows what is sent before it is sent: `action.started` is written with the slot and the lock,
    # by the gate's script (the step's earlier writes go before it in that round trip), and logged after.
    shown_params = shown(params, call)
    log_started = admit(
        rt.gate,
        spec.target,
        lock,
        then=lambda: rt.state.prepared_trace(
            eid, Step.ACTION_STARTED, rule=rule.name, index=index, action=call.name, params=shown_params
        ),
        run=rt.state.run_after_writes,
    )
    granted = time.monotonic()
    if log_started is not None:
        log_started()
    token = lock[1]
    try:
        result = spec.run(rt.clients, params, ctx)
    except RateLimited as exc:
        raise deferral(rt.gate, limits, exc, rt.alert) from exc
    finally:
        rt.state.unlock_step(ctx.idempotency_key, token, taken_at=granted, lease=lock[2])
        observe(rt.gate, limits, rt.clients.last_rate(spec.target), rt.alert)
    if spec.writes:
        rt.echoes.remember(call.name, params, result)
    rt.state.mark_action_done(eid, digest, index, call.id, result)
    rt.state.trace(eid, Step.ACTION_SUCCEEDED, rule=rule.name, index=index, action=call.name, result=result)
    # The ledger goes with the step's next round trip (the run's end, the next step's message, the task's end).
    return result
