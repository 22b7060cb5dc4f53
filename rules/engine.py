"""Evaluate a rule set against one change event: which rules match, and why the others do not."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from fieldrelay.entitystate import EntityVersion, canonical
from fieldrelay.events import ChangeEvent
from rules.candidates import Bucket
from rules.conditions import explain
from rules.context import LazyEntity, LinkLookup, RuleContext
from rules.models import Rule, Verdict
from rules.ruleset import RuleSet
from rules.templating import build_context
from rules.trigger import CHANGESET, CURRENT, SNAPSHOT, EventView, Resolved

# NamedTuple's generated __new__ is a Python function; the tuple constructor gives the same object cheaper.
_verdict = tuple.__new__


class EventScope:
    """One event as every rule judged for it sees it: the trigger's view, and the context for `if`,
    built on first use (events whose candidates all miss on `when` never build it).

    `entity` is fetched at most once however many rules read it; `previous` is the version of the
    record fieldrelay saw before this event (see `rules.trigger.EventView`).
    """

    def __init__(
        self,
        event: ChangeEvent,
        entity: LazyEntity,
        now: datetime | None,
        env: Mapping[str, str] | None,
        previous: EntityVersion | None = None,
        links: LinkLookup | None = None,
    ) -> None:
        self.view = EventView(event, entity, previous)
        self.event, self.entity, self.now, self.env, self.links = event, entity, now, env, links
        self._context: RuleContext | None = None
        self._derived_seen = -1

    @property
    def context(self) -> RuleContext:
        if self._context is None:
            self._context = build_context(self.event, self.entity, now=self.now, env=self.env, links=self.links)
        if self._derived_seen != len(self.view.resolved):  # `changes` shows what the triggers worked out
            self._derived_seen = len(self.view.resolved)
            merged = {k: {"old": v.old, "new": v.new} for k, v in self._derived().items()}
            merged.update({k: {"old": v.old, "new": v.new} for k, v in (self.event.changes or {}).items()})
            self._context["changes"] = merged
        return self._context

    def transitions(self) -> dict[str, Resolved]:
        """Every field transition worked out so far, wherever its values came from."""
        return {k: v for k, v in self.view.resolved.items() if isinstance(v, Resolved)}

    def derived(self) -> dict[str, dict[str, Any]]:
        """The transitions not read from the changeset: `{field: {old, new, old_from, new_from}}`.

        Once the record was read and an earlier version is known, every top-level field that differs
        from it is one, whether a rule asked about it or not: that comparison is the changeset for the
        fields ServiceTrade's does not cover.
        """
        return {k: v.describe() for k, v in self._derived().items()}

    def _derived(self) -> dict[str, Resolved]:
        found = {k: v for k, v in self.view.resolved.items() if type(v) is Resolved and v.old_from != CHANGESET}
        previous, changes = self.view.previous, self.event.changes or {}
        current = self.entity.value if self.entity.loaded and self.entity.error is None else None
        if previous is None or current is None or self.view.complete:
            return found
        for name, new in current.items():
            if name in found or name in changes:
                continue
            known, old = previous.field(name)
            if known and canonical(old) != canonical(new):
                found[name] = Resolved(old, new, SNAPSHOT, CURRENT)
        return found


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
    previous: EntityVersion | None = None,
    links: LinkLookup | None = None,
) -> list[Verdict]:
    """Verdicts for the given rules in order; see `evaluate`."""
    return judge(rules, EventScope(event, LazyEntity(entity_loader), now, env, previous, links))


def judge(rules: Iterable[Rule], scope: EventScope) -> list[Verdict]:
    """Verdicts for `rules` in order, in a scope the caller keeps (to read its transitions afterwards).

    A `Bucket` (`RuleSet.candidate_tuple`) is judged as selected by the values of the event's transitions:
    the rules it leaves out could not match. Any other iterable (a dry run's every rule) is judged whole.
    A failed entity fetch raises, even when an `if` that read the entity swallowed it.
    """
    view, entity, context = scope.view, scope.entity, None
    if type(rules) is Bucket:
        rules = rules.select(view)
    verdicts: list[Verdict] = []
    # The per-event matching cost is this loop, so it is written out flat rather than as calls.
    for rule in rules:
        reason = rule.match(view)
        if reason is None and (holds := rule.if_holds) is not None and (cond := rule.if_) is not None:
            context = scope.context
            context["vars"] = rule.vars  # one context per event; only `vars` differs between rules
            if not holds(context):
                reason = explain(cond, context)  # a miss is evaluated again, this time writing the reason
        verdicts.append(rule.matched if reason is None else _verdict(Verdict, (rule, False, reason or "matched")))
        if entity.error is not None:
            raise entity.error
    return verdicts


def evaluate(
    ruleset: RuleSet,
    event: ChangeEvent,
    entity_loader: Callable[[], Mapping[str, Any] | None],
    *,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    previous: EntityVersion | None = None,
    links: LinkLookup | None = None,
) -> list[Verdict]:
    """Verdicts for the candidate rules of `event`, in run order.

    `entity_loader` is called at most once, and only when a rule reads `entity` or needs the current
    value of a `changed:` field the changeset does not cover. Its exceptions propagate, so a failed
    fetch is retried rather than mistaken for "no match". `previous` is the version of the record seen
    before this event (None: none known). `env` holds only the allowlisted environment values rules
    may read; `links` answers `linked_id(...)`.
    """
    return evaluate_rules(
        ruleset.candidate_tuple(event), event, entity_loader, now=now, env=env, previous=previous, links=links
    )
