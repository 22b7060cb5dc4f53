"""The rule file schema (pydantic) and the compiled `Rule` and `ActionCall` the engine runs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from rules.catalog import canonical_entity, check_entity
from rules.conditions import Condition, predicate
from rules.trigger import EventView, Trigger


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _as_transition(value: Any) -> Any:
    if value is True or value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise ValueError(
        "expected a mapping with any of from/to/not_from/not_to, or true for any change; "
        f"got {value!r}"
    )


class Transition(Spec):
    """`changed: {status: {from: scheduled, to: completed}}`; empty means any change."""

    from_: Any = Field(None, alias="from")
    to: Any = None
    not_from: Any = None
    not_to: Any = None

    @cached_property
    def checks(self) -> list[tuple[str, Any]]:
        """The constraints actually written, in a fixed order, as (kind, wanted)."""
        order = (("from_", "from"), ("to", "to"), ("not_from", "not_from"), ("not_to", "not_to"))
        return [(kind, getattr(self, attr)) for attr, kind in order if attr in self.model_fields_set]


ActionName = Literal["created", "updated", "deleted"]


class WhenBase(Spec):
    source: str
    via: Literal["webhook", "poll", "any"] = "any"
    entity: list[str] | None = None
    action: Annotated[list[ActionName] | None, BeforeValidator(_as_list)] = None
    changed: dict[str, Annotated[Transition, BeforeValidator(_as_transition)]] = Field(default_factory=dict)

    @cached_property
    def entity_keys(self) -> frozenset[str] | None:
        """`entity` in the one spelling events are matched on (see catalog.canonical_entity)."""
        return None if self.entity is None else frozenset(canonical_entity(e) for e in self.entity)


def _entities(source: str) -> Any:
    item = Annotated[str, AfterValidator(partial(check_entity, source))]
    return Annotated[list[item] | None, BeforeValidator(_as_list)]


class WhenServiceTrade(WhenBase):
    source: Literal["servicetrade"]
    entity: _entities("servicetrade") = None  # type: ignore[valid-type]


class WhenSynchroteam(WhenBase):
    source: Literal["synchroteam"]
    entity: _entities("synchroteam") = None  # type: ignore[valid-type]


class WhenSynergist(WhenBase):
    source: Literal["synergist"]
    entity: _entities("synergist") = None  # type: ignore[valid-type]


When = Annotated[WhenServiceTrade | WhenSynchroteam | WhenSynergist, Field(discriminator="source")]


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


@dataclass(frozen=True)
class ActionCall:
    """One step of `then`/`on_failure`: `{synchroteam.job.upsert: {...}, id: job}`; params are raw."""

    name: str
    id: str | None
    params: Any
    line: int


def _disabled(view: EventView) -> str:
    return "disabled"


class Verdict(NamedTuple):
    """`Verdict(rule, matched=False, reason="when.changed.status.to: wanted 'completed', ...")`."""

    rule: Rule
    matched: bool
    reason: str


@dataclass(eq=False, slots=True)
class Rule:
    """A compiled rule. Ship it across processes as `rule.to_json()` and `Rule.from_json(data)`."""

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

    _cache: ClassVar[dict[str, Rule]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the rule as written plus where it came from; enough to recompile it."""
        lines = {"then": [c.line for c in self.then], "on_failure": [c.line for c in self.on_failure]}
        return {"digest": self.digest, "file": self.file, "line": self.line, "spec": self.spec,
                "vars": self.vars, "lines": lines}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        """Recompile a rule; cached by digest, so repeated calls cost a dict lookup."""
        cached = cls._cache.get(data["digest"])
        if cached is not None:
            return cached
        from rules.loader import rule_from_json

        rule = rule_from_json(data)
        with cls._lock:
            if len(cls._cache) > 4096:
                cls._cache.clear()
            cls._cache[rule.digest] = rule
        return rule
