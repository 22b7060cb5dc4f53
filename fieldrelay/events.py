"""The normalized change event: what every source (webhook or poller) turns a change into."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field

Source = Literal["servicetrade", "synchroteam", "synergist"]
Via = Literal["webhook", "poll"]
Action = Literal["created", "updated", "deleted"]


class EntityRef(BaseModel):
    """Which record changed: `type` is the source system's entity name (`job`, `customer`, ...)."""

    model_config = ConfigDict(frozen=True)

    type: str
    id: int | str
    uri: str | None = None


class FieldChange(BaseModel):
    """One field's transition; `old`/`new` mirror ServiceTrade's `oldValue`/`newValue`."""

    model_config = ConfigDict(frozen=True)

    old: Any = None
    new: Any = None


class ChangeEvent(BaseModel):
    """A single entity change, independent of how it was observed.

    >>> ev = ChangeEvent(source="servicetrade", via="webhook", action="updated",
    ...                  entity=EntityRef(type="job", id=1), occurred_at=1401833052)
    >>> ev.id == ev.model_copy().id
    True

    `changes` is None when the source said nothing about fields (no changeset), and
    `{}` when it said "nothing tracked changed"; rules treat the two differently.
    """

    model_config = ConfigDict(frozen=True)

    source: Source
    via: Via
    action: Action
    entity: EntityRef
    occurred_at: int = Field(description="Unix seconds of the change itself (the per-entity timestamp)")
    message_id: str | None = None
    changes: dict[str, FieldChange] | None = None
    # The per-entity timestamp as ServiceTrade sent it, when it was too far ahead of the receiver's clock
    # and `occurred_at` was clamped to the receive time (FIELDRELAY_CLOCK_SKEW).
    clamped_from: int | None = None

    @property
    def complete_changes(self) -> bool:
        """The changeset lists every changed field (a poller's diff of two snapshots); a webhook's
        lists only the fields ServiceTrade tracks, so a field missing from it may still have changed."""
        return self.via == "poll" and self.changes is not None

    @functools.cached_property
    def id(self) -> str:
        """Deterministic id: the same change seen twice (retry, duplicate, poll) has the same id (computed
        once per object: the model is frozen)."""
        return event_id(self)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("id", None)  # a changed copy is another change: its id is computed again
        return copy

    def dumps(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def loads(cls, raw: bytes | str) -> ChangeEvent:
        return cls.model_validate_json(raw)


def event_id(event: ChangeEvent) -> str:
    # message_id is left out on purpose: ServiceTrade may carry one change in several
    # messages, and a poller sees the same change with no message at all.
    # A clamped timestamp is keyed as sent: a redelivery, clamped to another receive time, is the same change.
    changes = None if event.changes is None else sorted((k, repr(v.old), repr(v.new)) for k, v in event.changes.items())
    at = event.occurred_at if event.clamped_from is None else event.clamped_from
    key = orjson.dumps([event.source, event.entity.type, str(event.entity.id), event.action, at, changes])
    return hashlib.blake2b(key, digest_size=12).hexdigest()
