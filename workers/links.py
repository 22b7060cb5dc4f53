"""Links between records across systems: how they are keyed, and how rules read them.

An action that creates a record with no natural key (a Synergist activity, a ServiceTrade appointment)
remembers its id in the link store, keyed by the source entity, the rule and the step, so a later
event of the same entity updates that record instead of creating another. Rules read those links with
`linked_id(kind, rule, step=None)`:

    activityID: "{{ linked_id('synergist.activity', rule='completed-job-to-synergist-activity') }}"

`kind` is what a linking action's parameter model declares as its `link_kind`.
"""

from __future__ import annotations

from collections.abc import Callable

from rules import ActionCall, Rule, RuleSet, TemplateError
from rules.catalog import did_you_mean
from rules.context import LinkQuery
from workers.actions.registry import ACTIONS

# Kinds of record fieldrelay links, and the actions that create each.
LINK_KINDS: dict[str, tuple[str, ...]] = {}
for _name, _spec in ACTIONS.items():
    _kind = getattr(_spec.params, "link_kind", None)
    if _kind:
        LINK_KINDS[_kind] = (*LINK_KINDS.get(_kind, ()), _name)


def step_name(rule: Rule, index: int, call: ActionCall) -> str:
    """A step's name in link keys: its `id`, else its action and how many of that action precede it.

    Not its position, so adding an unrelated step to the rule keeps the existing links.
    """
    if call.id is not None:
        return call.id
    calls = [*rule.then, *rule.on_failure]
    nth = sum(1 for c in calls[:index] if c.name == call.name) if index < len(calls) else 0
    return f"{call.name}#{nth}"


def entity_key(source: str, entity_type: str, entity_id: int | str, rule: str, step: str) -> str:
    """The part of a link key that names the source entity, the rule and the step (the idempotency key)."""
    return f"{source}:{entity_type}:{entity_id}:{rule}:{step}"


def link_key(action: str, idempotency_key: str) -> str:
    return f"{action}:{idempotency_key}"


class LinkReader:
    """`linked_id(...)` for templates: reads the link store, never writes it.

    >>> reader = LinkReader(rulebook.current, state.link_store().get_many)   # doctest: +SKIP
    >>> reader(LinkQuery("synergist.activity", "completed-job-to-synergist-activity", None,
    ...                  "servicetrade", "job", 35769))                       # doctest: +SKIP
    6712
    """

    def __init__(self, rules: Callable[[], RuleSet], get_many: Callable[[list[str]], list[str | None]]) -> None:
        self.rules, self.get_many = rules, get_many

    def __call__(self, query: LinkQuery) -> int | str | None:
        actions = LINK_KINDS.get(query.kind)
        if actions is None:
            known, hint = ", ".join(sorted(LINK_KINDS)), did_you_mean(query.kind, LINK_KINDS)
            raise TemplateError(
                "", f"linked_id: {query.kind!r} is no kind of record fieldrelay links{hint} (known: {known})"
            )
        ruleset = self.rules()
        rule = ruleset.get(query.rule)
        if rule is None:
            names = [r.name for r in ruleset]
            raise TemplateError(
                "", f"linked_id: no rule named {query.rule!r} is loaded{did_you_mean(query.rule, names)}"
            )
        calls = [*rule.then, *rule.on_failure]
        steps = [step_name(rule, i, c) for i, c in enumerate(calls) if c.name in actions]
        names = [c.name for c in calls if c.name in actions]
        if not steps:
            raise TemplateError("", f"linked_id: rule {rule.name!r} has no step that creates a {query.kind}")
        if query.step is not None:
            if query.step not in steps:
                listed = ", ".join(steps)
                raise TemplateError(
                    "", f"linked_id: rule {rule.name!r} has no {query.kind} step {query.step!r} (its steps: {listed})"
                )
            names = [n for n, s in zip(names, steps, strict=True) if s == query.step]
            steps = [query.step]
        keys = [
            link_key(action, entity_key(query.source, query.entity_type, query.entity_id, rule.name, step))
            for action, step in zip(names, steps, strict=True)
        ]
        found = [(step, value) for step, value in zip(steps, self.get_many(keys), strict=True) if value is not None]
        if not found:
            return None
        if len(found) > 1:
            raise TemplateError(
                "",
                f"linked_id: rule {rule.name!r} linked {len(found)} {query.kind} records to this "
                f"{query.entity_type} (steps {', '.join(s for s, _ in found)}); name one with step=",
            )
        value = found[0][1]
        return int(value) if value.isdigit() else value
