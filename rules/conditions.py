"""Conditions: the `if` expression tree, compiled at load, explaining a non-match (`when` is trigger.py)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from rules.errors import TemplateError, show
from rules.templating import Expression, compile_expression, explain_failure

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
        ((key, value),) = raw.items()
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


def holds(cond: Condition, context: Mapping[str, Any]) -> bool:
    """Whether the condition holds; an expression that raises does not. No reason is written."""
    if type(cond) is Expr:
        return cond.expression.truth(context)
    if type(cond) is AllOf:
        return all(holds(item, context) for item in cond.items)
    if type(cond) is AnyOf:
        return any(holds(item, context) for item in cond.items)
    assert isinstance(cond, Not)
    return not holds(cond.item, context)


def predicate(cond: Condition) -> Callable[[Mapping[str, Any]], bool]:
    """`holds` for this one condition, with the dispatch done once, at load."""
    if type(cond) is Expr:
        return cond.expression.truth
    return partial(holds, cond)


def explain(cond: Condition, context: Mapping[str, Any], where: str = "if") -> str | None:
    """Why the condition does not hold, or None if it does; evaluates every item it names."""
    return _explain(cond, context, where)


def _explain(cond: Condition, context: Mapping[str, Any], where: str) -> str | None:
    if isinstance(cond, Expr):
        return _check_expr(cond.expression, context, where)
    if isinstance(cond, AllOf):
        label = f"{where}.all" if cond.label else where
        for i, item in enumerate(cond.items, 1):
            reason = _explain(item, context, f"{label} (item {i} of {len(cond.items)})")
            if reason is not None:
                return reason
        return None
    if isinstance(cond, AnyOf):
        reasons = [
            _explain(item, context, f"{where}.any (item {i} of {len(cond.items)})")
            for i, item in enumerate(cond.items, 1)
        ]
        if any(r is None for r in reasons):
            return None
        return f"{where}.any: none of {len(reasons)} held; " + "; ".join(r for r in reasons if r)
    if _explain(cond.item, context, f"{where}.not") is None:
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
        hidden = sorted(expr.left.names & {"env", "secret"})
        if hidden:
            detail = f"; {expr.left.source} was (hidden: reads {' and '.join(hidden)})"
        else:
            try:
                detail = f"; {expr.left.source} was {show(expr.left.evaluate(context))}"
            except Exception as exc:
                detail = f"; {expr.left.source} failed: {explain_failure(exc, context).message}"
    return f"{where}: {expr.source} is false{detail}"
