"""The `when:` section of a rule as written: source, via, entity, action and `changed` transitions."""

from __future__ import annotations

from functools import cached_property, partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from rules.catalog import canonical_entity, check_entity


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _as_transition(value: Any) -> Any:
    if value is True or value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise ValueError(f"expected a mapping with any of from/to/not_from/not_to, or true for any change; got {value!r}")


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


# pydantic reads the Annotated type `_entities` builds; mypy cannot evaluate a call in an annotation.
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
