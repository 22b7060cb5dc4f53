"""The Markdown reference of every action, generated from the parameter models."""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from workers.actions.registry import ACTIONS, ActionSpec
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synchroteam import SynchroteamClient
from workers.connectors.synergist import SynergistClient

CRASHES = """\
## Creates, crashes and retries

A step's result is recorded only after its target answered, so a worker killed in between runs the step
again. Upserts (Synchroteam's `…upsert` by `myId`) and updates absorb that. A create without a natural key
records its intent before the call (`workers/intents.py`). A run after a crash first waits until the earlier
call can no longer be in flight (`FIELDRELAY_HTTP_TIMEOUT`), then reads the target, and creates only when it
finds nothing. "Since the first attempt" reaches 5 minutes further back, for the target's clock."""
# The connector method that reads back each create; its docstring quotes the seed passage it rests on.
READ_BACK_METHODS: dict[str, Any] = {
    "servicetrade.job.comment": ServiceTradeClient.find_job_comment,
    "servicetrade.job.create": ServiceTradeClient.find_job,
    "servicetrade.attachment.upload": ServiceTradeClient.find_attachment,
    "servicetrade.appointment.create": ServiceTradeClient.find_appointment,
    "synchroteam.activity.upsert": SynchroteamClient.find_activity,
    "synergist.activity.create": SynergistClient.find_activity,
    "synergist.job.create": SynergistClient.find_job,
    "synergist.calendar.create": SynergistClient.find_booking,
    "synergist.timesheet.create": SynergistClient.find_pending_timesheet,
}
_SEED = re.compile(r'Seed (\d{3}), ("[^"]+")')


def read_back_source(action: str) -> str:
    """`002 "Job" · ServiceTradeClient.find_job`: the seed passage the method's docstring quotes, and the method."""
    method = READ_BACK_METHODS.get(action)
    if method is None:
        return "—"
    match = _SEED.search(inspect.getdoc(method) or "")
    if match is None:
        raise ValueError(f'{method.__qualname__} quotes no seed passage (Seed NNN, "Section")')
    return f"{match.group(1)} {match.group(2)} · `{method.__qualname__}`"


# What a run after a crash reads to find the record an earlier attempt made (the connectors' `find_*`).
READ_BACKS = {
    "servicetrade.job.comment": (
        "The job's comments (`GET /job/{id}/comment`): the `[fieldrelay:…]` marker at the end of ours, or with "
        "`marker: false` the same text created since the first attempt (then an identical comment someone else "
        "posted meanwhile is taken for ours)."
    ),
    "servicetrade.job.create": (
        "The location's jobs created since the first attempt (`GET /job?locationId=…&createdAfter=…`, with the "
        "status sent, else `new`) with the type and description sent."
    ),
    "servicetrade.attachment.upload": (
        "Per file: the record's attachments (`GET /attachment?entityId=…&entityType=…`) with the same file name "
        "created since the first attempt."
    ),
    "servicetrade.appointment.create": (
        "The job's appointments created since the first attempt (`GET /appointment?jobId=…&createdAfter=…`, "
        "every status) with the window, techs, status and release sent."
    ),
    "synchroteam.activity.upsert": (
        "Without `id`, before its first success: the activities over the same span "
        "(`GET /api/v3/activity/list?startDate=…&endDate=…`) with the type, user or team, dates and note sent. "
        "Activities carry no creation time, so an identical one entered by hand is taken for ours."
    ),
    "synergist.activity.create": (
        "The client's activities modified since the first attempt (`client=`, `Timestampfrom=`) that show the "
        "values sent."
    ),
    "synergist.job.create": (
        "The `jobNumber` sent (manual numbering), else the client's jobs modified since the first attempt that "
        "show the values sent."
    ),
    "synergist.calendar.create": (
        "The day's bookings (`action=calendardisplay`) of the same resource, start and time summary."
    ),
    "synergist.timesheet.create": (
        "The resource's pending entries of that day (`tspendingslist`) with the job phase and values sent."
    ),
    "http.request": (
        "Nothing: an arbitrary endpoint has no way to be read back. Each request carries an `Idempotency-Key`, "
        "the same for every retry of one event's step. An endpoint that honours it applies the request once; "
        "one that ignores it can get it twice when a worker dies between its answer and our record."
    ),
}


def render_reference() -> str:
    """One section per action: what it does, then a table of its parameters."""
    lines = [
        "# Actions",
        "",
        "Generated from `workers/actions` by `render_reference()`; field names are the target API's own.",
        "",
        "## Linked records",
        "",
        "Some actions create a record the target cannot find again by a key of ours (a Synergist activity, a",
        "ServiceTrade appointment). They keep a link: the record's id, stored for the source entity, the rule",
        "and the step, so the same step for a later event of that entity updates the record instead of",
        "creating another. Any rule reads those links with",
        "`linked_id(kind, rule, step=None, entity_type=None, entity_id=None)`: the id (or none) of the",
        "record that `rule` created for this event's entity (or the one named). `step` picks one when the",
        "rule creates several of that kind.",
        "",
        "```yaml",
        "- synergist.activity.update:",
        "    activityID: \"{{ linked_id('synergist.activity', rule='completed-job-to-synergist-activity') }}\"",
        "    activityStatus: Closed",
        "```",
        "",
        "When a linked record was deleted in the target, the step's `on_missing` decides: `fail` (the",
        "default) dead-letters the step and says which record is gone; `recreate` creates a new one and",
        "links it instead.",
        "",
        "```yaml",
        "- synergist.activity.create: {activityActivitytypeCode: SVC, activityClientCode: 1/F667}",
        "  on_missing: recreate",
        "```",
        "",
        CRASHES,
        "",
        "| Action | Read back by | Seed passage · connector method |",
        "|---|---|---|",
        *(f"| `{name}` | {how} | {read_back_source(name)} |" for name, how in READ_BACKS.items()),
    ]
    for spec in ACTIONS.values():
        lines += ["", *_section(spec)]
    return "\n".join(lines) + "\n"


def _section(spec: ActionSpec) -> list[str]:
    doc = spec.description or inspect.getdoc(spec.params) or ""
    summary = doc.splitlines()[0].replace("``", "`") if doc else ""
    lines = [f"## `{spec.name}`", "", f"Target: {spec.target}. {summary}".rstrip()]
    kind = getattr(spec.params, "link_kind", None)
    if kind:
        lines.append(f"Keeps a link: `linked_id('{kind}', rule=...)`; `on_missing: fail | recreate`.")
    custom = getattr(spec.params, "custom_prefix", "")
    if custom:
        lines.append(f"Custom fields: `custom_fields: {{{custom}CustomField<N>: value}}`.")
    lines += ["", "| Parameter | Type | Required | Description |", "|---|---|---|---|"]
    # Required parameters first (a model that extends shared fields lists its own, the ids, after them).
    fields = sorted(spec.params.model_fields.items(), key=lambda item: not item[1].is_required())
    for name, field in fields:
        required = "yes" if field.is_required() else "no"
        described = _describe(field).replace("<prefix>", custom)
        lines.append(f"| `{field.alias or name}` | {_type(field.annotation)} | {required} | {described} |")
    return lines


def _describe(field: FieldInfo) -> str:
    parts = [field.description or ""]
    if not field.is_required() and field.default not in (None, ...) and not field.default_factory:
        parts.append(f"default `{field.default}`")
    return "; ".join(p for p in parts if p).replace("|", "\\|")


def _type(annotation: Any) -> str:
    """A short readable type: ``str``, ``int | str``, ``list[UserRef]``, ``"low" | "high"``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " \\| ".join(f'"{a}"' for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type(a) for a in args)}]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = ", ".join(annotation.model_fields)
        return f"{{{fields}}}"
    if annotation is Any or annotation is None:
        return "any"
    return getattr(annotation, "__name__", str(annotation))
