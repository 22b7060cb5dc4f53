"""The rule file schema (pydantic) and the compiled `Rule` the engine runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pydantic import Field

from rules.calls import ActionCall
from rules.conditions import Condition, predicate
from rules.trigger import EventView, Trigger
from rules.when import Spec, When, WhenBase


class RuleSpec(Spec):
    """One rule as written; `if`, `then` and `on_failure` are compiled after this shape check."""

    name: str = Field(min_length=1)
    description: str = ""
    enabled: bool = True
    priority: int = 0
    mode: Literal["queued", "latest", "parallel"] = "queued"
    debounce: float = Field(0, ge=0)
    when: When
    if_: Any = Field(None, alias="if")
    then: list[Any] = Field(min_length=1)
    on_failure: list[Any] = Field(default_factory=list)


class RuleFileSpec(Spec):
    vars: dict[str, Any] = Field(default_factory=dict)
    rules: list[RuleSpec]


def _disabled(view: EventView) -> str:
    return "disabled"


class Verdict(NamedTuple):
    """`Verdict(rule, matched=False, reason="when.changed.status.to: wanted 'completed', ...")`."""

    rule: Rule
    matched: bool
    reason: str


@dataclass(eq=False, slots=True)
class Rule:
    """A compiled rule. Ship it across processes as `rule.to_json()` and `rule_from_json(data)`."""

    name: str
    file: str
    line: int
    description: str
    enabled: bool
    priority: int
    mode: str
    debounce: float
    when: WhenBase
    if_: Condition | None
    then: list[ActionCall]
    on_failure: list[ActionCall]
    vars: dict[str, Any]
    needs_entity: bool
    digest: str
    spec: dict[str, Any] = field(repr=False)
    trigger: Trigger = field(init=False, repr=False)
    if_holds: Callable[[Mapping[str, Any]], bool] | None = field(init=False, repr=False)

    # What the engine runs, worked out once: the trigger check (which says "disabled" for a disabled
    # rule), the `if` as a predicate, and the verdict of a match, which is immutable and so shared.
    match: Callable[[EventView], str | None] = field(init=False, repr=False)
    matched: Verdict = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.trigger = Trigger(self.when)
        self.match = self.trigger.compiled if self.enabled else _disabled
        self.if_holds = None if self.if_ is None else predicate(self.if_)
        self.matched = Verdict(self, True, "matched")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the rule as written plus where it came from; enough to recompile it."""
        lines = {"then": [c.line for c in self.then], "on_failure": [c.line for c in self.on_failure]}
        return {
            "digest": self.digest,
            "file": self.file,
            "line": self.line,
            "spec": self.spec,
            "vars": self.vars,
            "lines": lines,
        }
