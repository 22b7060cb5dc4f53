"""Conditions: the `when` trigger filter and the `if` expression tree, each explaining a non-match."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fieldrelay.events import ChangeEvent
from rules.catalog import canonical_entity
from rules.context import LazyEntity
from rules.errors import TemplateError
from rules.templating import Expression, compile_expression, explain_failure

if TYPE_CHECKING:
    from rules.models import WhenBase

Loc = tuple[str | int, ...]
Problems = list[tuple[Loc, str]]
_WRAPPED = re.compile(r"^\{\{-?((?:(?!\}\}).)*?)-?\}\}$", re.DOTALL)


@dataclass(frozen=True)
class Expr:
    expression: Expression


@dataclass(frozen=True)
class AllOf:
    items: tuple[Condition, ...]
    label: str  # "" for a bare list, "all" for {all: [...]}


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Expr | AllOf | AnyOf | Not


def parse_condition(raw: Any, loc: Loc, problems: Problems) -> Condition | None:
    """Compile an `if` value; problems are appended as (location, message)."""
    if isinstance(raw, str):
        wrapped = _WRAPPED.match(raw.strip())
        try:
            # `if: "{{ x }}"` is a common slip from templates; the braces add nothing, so drop them.
            return Expr(compile_expression(wrapped.group(1).strip() if wrapped else raw))
        except TemplateError as exc:
            problems.append((loc, exc.message))
            return None
    if isinstance(raw, list):
        if not raw:
            problems.append((loc, "must not be empty"))
        items = [parse_condition(item, (*loc, i), problems) for i, item in enumerate(raw)]
        return AllOf(tuple(i for i in items if i is not None), "")
    if isinstance(raw, Mapping) and len(raw) == 1:
        (key, value), = raw.items()
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                problems.append(((*loc, key), f"'{key}' takes a non-empty list of conditions"))
                return None
            items = [parse_condition(item, (*loc, key, i), problems) for i, item in enumerate(value)]
            kept = tuple(i for i in items if i is not None)
            return AllOf(kept, "all") if key == "all" else AnyOf(kept)
        if key == "not":
            inner = parse_condition(value, (*loc, key), problems)
            return Not(inner) if inner is not None else None
    problems.append((loc, "expected an expression string, a list, or a mapping with one of all/any/not"))
    return None


def condition_names(cond: Condition | None) -> set[str]:
    """Every top-level name the condition reads (`entity`, `event`, ...)."""
    if cond is None:
        return set()
    if isinstance(cond, Expr):
        return set(cond.expression.names)
    if isinstance(cond, Not):
        return condition_names(cond.item)
    return set().union(*(condition_names(i) for i in cond.items))


def condition_refs(cond: Condition | None, loc: Loc = ("if",)) -> list[tuple[Loc, str, str]]:
    """(location, root, key) for every `steps.x`/`vars.x`/`event.x` the condition reads."""
    if cond is None:
        return []
    if isinstance(cond, Expr):
        return [(loc, root, key) for root, key in sorted(cond.expression.refs)]
    if isinstance(cond, Not):
        return condition_refs(cond.item, (*loc, "not"))
    if isinstance(cond, AnyOf):
        inner: Loc = (*loc, "any")
    elif cond.label:
        inner = (*loc, "all")
    else:
        inner = loc
    return [r for i, item in enumerate(cond.items) for r in condition_refs(item, (*inner, i))]


def check_condition(cond: Condition, context: Mapping[str, Any], where: str = "if") -> str | None:
    """None when the condition holds, else why not, naming the failing item and values seen."""
    if isinstance(cond, Expr):
        return _check_expr(cond.expression, context, where)
    if isinstance(cond, AllOf):
        label = f"{where}.all" if cond.label else where
        for i, item in enumerate(cond.items, 1):
            reason = check_condition(item, context, f"{label} (item {i} of {len(cond.items)})")
            if reason is not None:
                return reason
        return None
    if isinstance(cond, AnyOf):
        reasons = [check_condition(item, context, f"{where}.any (item {i} of {len(cond.items)})")
                   for i, item in enumerate(cond.items, 1)]
        if any(r is None for r in reasons):
            return None
        return f"{where}.any: none of {len(reasons)} held; " + "; ".join(r for r in reasons if r)
    if check_condition(cond.item, context, f"{where}.not") is None:
        return f"{where}.not: the inner condition held"
    return None


def _check_expr(expr: Expression, context: Mapping[str, Any], where: str) -> str | None:
    try:
        if expr.evaluate(context):
            return None
    except Exception as exc:
        return f"{where}: {expr.source}: {explain_failure(exc, context).message}"
    detail = ""
    if expr.left is not None:
        if "env" in expr.left.names:
            detail = f"; {expr.left.source} was (hidden: reads env)"
        else:
            try:
                detail = f"; {expr.left.source} was {show(expr.left.evaluate(context))}"
            except Exception as exc:
                detail = f"; {expr.left.source} failed: {explain_failure(exc, context).message}"
    return f"{where}: {expr.source} is false{detail}"


def show(value: Any, *, quote: bool = True, limit: int = 120) -> str:
    """A value for a reason line: repr'd, and cut short so one huge field cannot flood the logs."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def same(wanted: Any, seen: Any) -> bool:
    """YAML `to: 5` should match a changeset that carries "5"."""
    if isinstance(wanted, list):
        return any(same(w, seen) for w in wanted)
    if wanted == seen:
        return True
    scalar = (str, int, float)
    return isinstance(wanted, scalar) and isinstance(seen, scalar) and str(wanted) == str(seen)


def _wanted(value: Any) -> str:
    if isinstance(value, list):
        return "one of " + ", ".join(repr(v) for v in value)
    return repr(value)


def _one(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


def field_value(record: Mapping[str, Any], field: str) -> tuple[bool, Any]:
    """Dotted lookup (`source.status`); (found, value)."""
    if field in record:
        return True, record[field]
    value: Any = record
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def match_when(when: WhenBase, event: ChangeEvent, entity: LazyEntity) -> str | None:
    """None when the trigger matches the event, else the first failing clause and what was seen."""
    if when.source != event.source:
        return f"when.source: wanted {when.source!r}, event had {event.source!r}"
    if when.via != "any" and when.via != event.via:
        return f"when.via: wanted {when.via!r}, event had {event.via!r}"
    if when.entity_keys is not None and canonical_entity(event.entity.type) not in when.entity_keys:
        return f"when.entity: wanted {_wanted(_one(when.entity or []))}, event had {show(event.entity.type)}"
    if when.action is not None and event.action not in when.action:
        return f"when.action: wanted {_wanted(_one(when.action))}, event had {event.action!r}"
    for name, transition in when.changed.items():
        reason = _match_transition(name, transition.checks, event, entity)
        if reason is not None:
            return reason
    return None


def _match_transition(
    name: str, checks: list[tuple[str, Any]], event: ChangeEvent, entity: LazyEntity
) -> str | None:
    where = f"when.changed.{name}"
    if event.changes is None:
        for kind, _ in checks or [("any", None)]:
            if kind not in ("to", "not_to"):
                what = "any change" if kind == "any" else repr(kind)
                return f"{where}: the event carried no changeset, so {what} cannot be checked"
        if entity.value is None:
            return f"{where}: the event carried no changeset and the entity could not be loaded"
        found, current = field_value(entity.value, name)
        if not found:
            return f"{where}: the event carried no changeset and the entity has no field {name!r}"
        return _compare(where, checks, None, current, "the entity has")
    change = event.changes.get(name)
    if change is None:
        seen = show(", ".join(sorted(event.changes)), quote=False) or "nothing"
        return f"{where}: the event did not change {name!r} (changed: {seen})"
    return _compare(where, checks, change.old, change.new, "event had")


def _compare(where: str, checks: list[tuple[str, Any]], old: Any, new: Any, had: str) -> str | None:
    for kind, wanted in checks:
        seen = old if kind in ("from", "not_from") else new
        hit = same(wanted, seen)
        if kind.startswith("not_") and hit:
            return f"{where}.{kind}: wanted anything but {_wanted(wanted)}, {had} {show(seen)}"
        if not kind.startswith("not_") and not hit:
            return f"{where}.{kind}: wanted {_wanted(wanted)}, {had} {show(seen)}"
    return None
