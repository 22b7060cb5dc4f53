"""Evaluate a rule set against one change event: which rules match, and why the others do not."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from fieldrelay.events import ChangeEvent
from rules.conditions import explain
from rules.context import LazyEntity, RuleContext
from rules.models import Rule, Verdict
from rules.ruleset import RuleSet
from rules.templating import build_context
from rules.trigger import EventView

# NamedTuple's generated __new__ is a Python function; the tuple constructor gives the same object cheaper.
_verdict = tuple.__new__


class _OnceLoader:
    """Calls the real loader at most once and remembers its failure, which evaluate re-raises."""

    def __init__(self, loader: Callable[[], Mapping[str, Any] | None]) -> None:
        self.loader = loader
        self.error: BaseException | None = None

    def __call__(self) -> Mapping[str, Any] | None:
        try:
            return self.loader()
        except Exception as exc:
            self.error = exc
            raise


class EventScope:
    """One event as every rule judged for it sees it: the trigger's view, and the context for `if`,
    built on first use (events whose candidates all miss on `when` never build it)."""

    def __init__(
        self, event: ChangeEvent, entity: LazyEntity, now: datetime | None, env: Mapping[str, str] | None
    ) -> None:
        self.view = EventView(event, entity)
        self.event, self.entity, self.now, self.env = event, entity, now, env
        self._context: RuleContext | None = None

    @property
    def context(self) -> RuleContext:
        if self._context is None:
            self._context = build_context(self.event, self.entity, now=self.now, env=self.env)
        return self._context


def allowed_env(names: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted environment variables rules may read as `env.NAME`; others stay invisible."""
    source = os.environ if environ is None else environ
    return {name: source[name] for name in names if name in source}


def evaluate_rules(
    rules: Iterable[Rule],
    event: ChangeEvent,
    entity_loader: Callable[[], Mapping[str, Any] | None],
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Verdict]:
    """Verdicts for the given rules in order; see `evaluate`."""
    loader = _OnceLoader(entity_loader)
    scope = EventScope(event, LazyEntity(loader), now, env)
    view, context = scope.view, None
    verdicts: list[Verdict] = []
    # The per-event matching cost is this loop, so it is written out flat rather than as calls.
    for rule in rules:
        reason = rule.match(view)
        if reason is None and (holds := rule.if_holds) is not None and (cond := rule.if_) is not None:
            if context is None:
                context = scope.context
            context["vars"] = rule.vars  # one context per event; only `vars` differs between rules
            if not holds(context):
                reason = explain(cond, context)  # a miss is evaluated again, this time writing the reason
        verdicts.append(rule.matched if reason is None else _verdict(Verdict, (rule, False, reason or "matched")))
        if loader.error is not None:
            raise loader.error
    return verdicts


def evaluate(
    ruleset: RuleSet,
    event: ChangeEvent,
    entity_loader: Callable[[], Mapping[str, Any] | None],
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
    return evaluate_rules(ruleset.candidate_tuple(event), event, entity_loader, now=now, env=env)
