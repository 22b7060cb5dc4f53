"""Candidates by value: which rules of a bucket can match an event, read off the values of its transitions.

    bucket = ruleset.candidate_tuple(event)       # the rules for the event's source, entity, action and via
    for rule in bucket.select(view): ...          # fewer: those whose first `changed:` field can match

A rule whose first `changed:` field has a `to` (else a `from`) of plain values is filed under those values,
by `rules.trigger.value_keys`, which files together what `same` equates (`to: 5` is found by "5" and 5.0).
Every other rule (`not_to`, `not_from` or `true` first, a list or mapping wanted) and every disabled one is
always selected. The first field is the one its trigger resolves first, so selecting by it reads
nothing the trigger would not. For each filed field, `select` takes the transition from `EventView`, the
resolution the trigger itself uses:
- the changeset lists the field: its value picks the rules;
- the event alone rules the field out (a deleted record without a changeset, a poll whose changeset does
  not list it): none of its rules can match, none is selected;
- it takes the current record (a webhook whose changeset does not cover it): the record is read now, as
  judging the field's first rule would have done anyway; if a rule before that one has an `if` that reads
  `changes` (which shows every transition worked out so far), the field waits for its first rule's turn;
- the record gives a reason instead of a transition ("did not change since the version fieldrelay saw
  last", "could not be loaded"): every rule on the field is selected and reports it, as the Transitions
  section promises. With no earlier version known, so is every rule that also checks the old value
  ("no earlier version known"). Otherwise the value picks the rules.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import Any

from rules.conditions import condition_names
from rules.models import Rule
from rules.trigger import UNKNOWN, EventView, Resolved, value_keys

Rules = tuple[Rule, ...]  # always in run order


class _Side:
    """One side of a field (its new values for `to`, its old ones for `from`): value key -> rules."""

    def __init__(self) -> None:
        self.every: Rules = ()
        self.by_key: dict[Hashable, Rules] = {}

    def add(self, rule: Rule, keys: Iterable[Hashable]) -> None:
        self.every += (rule,)
        for key in keys:
            self.by_key[key] = (*self.by_key.get(key, ()), rule)

    def find(self, value: Any, rank: Mapping[int, int]) -> Rules:
        if type(value) is str:  # the usual case, written out: a string's one key is itself
            return self.by_key.get(value, ())
        if not self.every:
            return ()
        keys = value_keys(value)
        if keys is None:  # a list, a mapping: the index cannot tell, the trigger will
            return self.every
        if len(keys) == 1:
            return self.by_key.get(keys[0], ())
        return _union([self.by_key.get(key, ()) for key in keys], rank)


class _Field:
    """The rules filed under one field; `head` is the run order of the first of them."""

    def __init__(self, name: str, head: int) -> None:
        self.name, self.head = name, head
        self.every: Rules = ()
        self.new, self.old = _Side(), _Side()
        self.need_old: Rules = ()  # with no earlier version known, these say so: always selected then
        self.waits = False  # resolved only when `head`'s turn comes (see `Bucket`)

    def add(self, rule: Rule) -> None:
        index = rule.trigger.index
        assert index is not None
        self.every += (rule,)
        (self.old if index.old else self.new).add(rule, index.keys)
        if index.needs_old:
            self.need_old += (rule,)

    def pick(self, change: Resolved | str, rank: Mapping[int, int]) -> Rules:
        if type(change) is str:
            return self.every  # each of them reports the reason (the Transitions section's sentences)
        assert isinstance(change, Resolved)
        return self.matching(change.old, change.new, change.old_from != UNKNOWN, rank)

    def matching(self, old: Any, new: Any, old_known: bool, rank: Mapping[int, int]) -> Rules:
        """The rules whose `to` takes `new` or whose `from` takes `old`; with no old value known, also
        every rule that checks it (`need_old`: the trigger says "no earlier version known")."""
        found = self.new.find(new, rank)
        if not old_known:
            return _union([found, self.need_old], rank) if self.need_old else found
        return _union([found, self.old.find(old, rank)], rank) if self.old.every else found


class Bucket(tuple[Rule, ...]):
    """The rules that can match an event as far as its source, entity type, action and via go, in run order.

    Iterating gives all of them; `select(view)` leaves out those whose first `changed:` field's `to` or
    `from` the event's transition misses (see the module docstring). `rules.engine.judge` selects.
    `rank` is the run order of every rule of the set (`id(rule)` -> position).
    """

    rank: Mapping[int, int]
    free: Rules
    fields: tuple[_Field, ...]

    def __new__(cls, rules: Iterable[Rule], rank: Mapping[int, int]) -> Bucket:
        bucket = super().__new__(cls, rules)
        free: list[Rule] = []
        fields: dict[str, _Field] = {}
        for rule in bucket:
            index = rule.trigger.index if rule.enabled else None  # a disabled rule always says "disabled"
            if index is None:
                free.append(rule)
            else:
                fields.setdefault(index.name, _Field(index.name, rank[id(rule)])).add(rule)
        # Reading a field early shows only in `changes` (`EventScope.context`): it holds the transitions
        # worked out so far. A field whose first rule comes after a rule whose `if` reads `changes` waits.
        readers = [rank[id(r)] for r in bucket if r.enabled and "changes" in condition_names(r.if_)]
        for field in fields.values():
            field.waits = bool(readers) and min(readers) < field.head
        bucket.rank, bucket.free, bucket.fields = rank, tuple(free), tuple(fields.values())  # by head
        return bucket

    def select(self, view: EventView) -> Iterable[Rule]:
        """The rules to judge for the event, in run order; lazily, when a field needs the current record."""
        if not self.fields:
            return self
        rank, changes = self.rank, view.changes
        parts, waiting = [self.free], []
        for field in self.fields:
            # The changeset is the truth for a field it lists (`EventView.resolve`, as `_compile` reads it).
            entry = changes.get(field.name) if changes else None
            if entry is not None:
                parts.append(field.matching(entry.old, entry.new, True, rank))
                continue
            change = view.known(field.name)
            if change is None:  # it takes the current record
                if field.waits:
                    waiting.append(field)
                    continue
                change = view.read(field.name)  # now, as judging `head` would have anyway
            elif type(change) is str:
                continue  # the event rules them all out: a deleted record, a poll that did not change it
            parts.append(field.pick(change, rank))
        ready = _union(parts, rank)
        return _in_turn(ready, waiting, view, rank) if waiting else ready


def _union(parts: list[Rules], rank: Mapping[int, int]) -> Rules:
    """The rules of all parts once each, in run order."""
    found = [p for p in parts if p]
    if len(found) <= 1:
        return found[0] if found else ()
    merged = {id(rule): rule for part in found for rule in part}
    return tuple(sorted(merged.values(), key=lambda rule: rank[id(rule)]))


def _in_turn(ready: Rules, waiting: list[_Field], view: EventView, rank: Mapping[int, int]) -> Iterator[Rule]:
    """`ready` in run order, each waiting field resolved when its first rule's turn comes, its picks merged in."""
    for field in waiting:
        before = 0
        while before < len(ready) and rank[id(ready[before])] < field.head:
            before += 1
        yield from ready[:before]
        picked = field.pick(view.resolve(field.name), rank)  # may read the record, as judging `head` would
        ready = _union([ready[before:], picked], rank)
    yield from ready
