"""Evaluate a rule set against one change event: which rules match, and why the others do not."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from fieldrelay.events import ChangeEvent
from rules.conditions import check_condition
from rules.context import LazyEntity, RuleContext
from rules.models import Rule
from rules.ruleset import RuleSet
from rules.templating import build_context
from rules.trigger import EventView


class Verdict(NamedTuple):
    """`Verdict(rule, matched=False, reason="when.changed.status.to: wanted 'completed', ...")`."""

    rule: Rule
    matched: bool
    reason: str


class _OnceLoader:
    """Calls the real loader at most once and remembers its failure, which evaluate re-raises."""

    def __init__(self, loader: Callable[[], dict[str, Any] | None]) -> None:
        self.loader = loader
        self.error: BaseException | None = None

    def __call__(self) -> dict[str, Any] | None:
        try:
            return self.loader()
        except Exception as exc:
            self.error = exc
            raise


def judge(rule: Rule, view: EventView, context: RuleContext) -> Verdict:
    """One rule's verdict; expression errors become the reason, never an exception.

    `context` is the event's shared context; its `vars` is switched to the rule's own.
    """
    if not rule.enabled:
        return Verdict(rule, False, "disabled")
    reason = rule.trigger.match(view)
    if reason is None and rule.if_ is not None:
        context["vars"] = rule.vars
        reason = check_condition(rule.if_, context)
    return Verdict(rule, reason is None, reason or "matched")


def allowed_env(names: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted environment variables rules may read as `env.NAME`; others stay invisible."""
    source = os.environ if environ is None else environ
    return {name: source[name] for name in names if name in source}


def evaluate_rules(
    rules: Iterable[Rule],
    event: ChangeEvent,
    entity_loader: Callable[[], dict[str, Any] | None],
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Verdicts for the given rules in order; see `evaluate`."""
    loader = _OnceLoader(entity_loader)
    entity = LazyEntity(loader)
    context = build_context(event, entity, now=now, env=env)
    view = EventView(event, entity)
    verdicts = []
    for rule in rules:
        verdicts.append(judge(rule, view, context))
        if loader.error is not None:
            raise loader.error
    return verdicts


def evaluate(
    ruleset: RuleSet,
    event: ChangeEvent,
    entity_loader: Callable[[], dict[str, Any] | None],
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Verdicts for the candidate rules of `event`, in run order.

    `entity_loader` is called at most once, and only when a rule reads `entity` (or must check
    `changed.to` against the record because the event had no changeset). Its exceptions propagate,
    so a failed fetch is retried rather than mistaken for "no match". `env` holds only the
    allowlisted environment values rules may read.
    """
    return evaluate_rules(ruleset.candidates(event), event, entity_loader, now=now, env=env)
