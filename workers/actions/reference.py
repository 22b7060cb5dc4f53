"""The Markdown reference of every action, generated from the parameter models."""

from __future__ import annotations

import inspect
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from workers.actions.registry import ACTIONS, ActionSpec


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
    for name, field in spec.params.model_fields.items():
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
