"""A loaded set of rules, ordered by priority, with an index from (source, entity, action, via) to candidates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from fieldrelay.events import ChangeEvent
from rules.candidates import Bucket
from rules.catalog import canonical_entity
from rules.errors import RuleWarning
from rules.models import Rule

_ANY = "*"


class RuleSet:
    """Rules in run order (priority high first, then file order), and a cheap candidate lookup.

        ruleset = load_rules(Path("rules"), action_params)
        judge(ruleset.candidate_tuple(event), scope)   # a Bucket: judge selects from it by the event's values
        ruleset.candidates(event)                      # what the dry run calls candidates

    `candidates` are the rules for the event's source, entity and action; `candidate_tuple` leaves out
    those of another `via` (disabled rules stay), and `judge` selects from it by value (`rules.candidates`).
    `digest` changes whenever any file's content does; `warnings` are legal but suspicious rules.
    """

    def __init__(self, rules: list[Rule], warnings: list[RuleWarning], digest: str) -> None:
        order = {id(rule): i for i, rule in enumerate(rules)}
        self.rules: list[Rule] = sorted(rules, key=lambda r: (-r.priority, order[id(r)]))
        self.warnings = warnings
        self.digest = digest
        self._rank = {id(rule): i for i, rule in enumerate(self.rules)}
        self._by_name = {rule.name: rule for rule in self.rules}
        self._index: dict[tuple[str, str, str], list[Rule]] = defaultdict(list)
        self._candidates: dict[tuple[str, str, str, str], Bucket] = {}
        for rule in self.rules:
            entities = [canonical_entity(e) for e in rule.when.entity] if rule.when.entity else [_ANY]
            actions = list(rule.when.action) if rule.when.action else [_ANY]
            for entity in dict.fromkeys(entities):
                for action in dict.fromkeys(actions):
                    self._index[(rule.when.source, entity, action)].append(rule)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, name: str) -> Rule | None:
        return self._by_name.get(name)

    def candidates(self, event: ChangeEvent) -> list[Rule]:
        """Rules whose source, entity and action can match the event, in run order (the dry run's tags)."""
        return self._lookup(event)

    def candidate_tuple(self, event: ChangeEvent) -> Bucket:
        """The rules to judge for `event`: `candidates` less those of another `via`, remembered per kind of event.

        A shared tuple: read it, never change it. `rules.engine.judge` narrows it by the values of the
        event's transitions (`Bucket.select`); iterating it gives every rule in it.
        """
        key = (event.source, event.entity.type, event.action, event.via)
        found = self._candidates.get(key)
        if found is None:
            via = event.via
            found = self._candidates[key] = Bucket(
                (r for r in self._lookup(event) if not r.enabled or r.trigger.via in (None, via)), self._rank
            )
            if len(self._candidates) > 4096:  # entity types come from outside; keep the memo bounded
                self._candidates.clear()
        return found

    def _lookup(self, event: ChangeEvent) -> list[Rule]:
        entity = canonical_entity(event.entity.type)
        buckets = [self._index.get((event.source, e, a)) for e in (entity, _ANY) for a in (event.action, _ANY)]
        found = [b for b in buckets if b]
        if len(found) == 1:
            return list(found[0])
        merged = {id(r): r for b in found for r in b}
        return sorted(merged.values(), key=lambda r: self._rank[id(r)])
