"""ServiceTrade webhook messages: token verification, validation, and normalization into change events."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange


class WebhookError(Exception):
    """A webhook body that is not ServiceTrade's documented message; `str()` is safe to return."""


def _int_from_digits(value: Any) -> Any:
    # The message `timestamp` is documented as a string ("1401833057") and the item
    # timestamps as integers; accept both spellings of an integer, nothing fuzzier.
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


UnixTime = Annotated[StrictInt, BeforeValidator(_int_from_digits)]


class ChangesetItem(BaseModel):
    field: str = Field(min_length=1)
    oldValue: Any = None
    newValue: Any = None


class WebhookEntity(BaseModel):
    type: str = Field(min_length=1)
    id: StrictInt
    uri: str = Field(min_length=1)


class WebhookItem(BaseModel):
    action: Literal["created", "updated", "deleted"]
    timestamp: UnixTime
    entity: WebhookEntity
    changeset: list[ChangesetItem] | None = None


class WebhookMessage(BaseModel):
    """The documented message: `{"messageId", "timestamp", "data": [...]}`; unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    messageId: str = Field(min_length=1, max_length=200)
    timestamp: UnixTime
    data: list[WebhookItem]


_MESSAGE = TypeAdapter(WebhookMessage)


def parse_message(body: bytes) -> WebhookMessage:
    """Validate a raw body; `WebhookError` lists each problem as `path: message`."""
    try:
        return _MESSAGE.validate_json(body)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            if err["type"] == "json_invalid":
                raise WebhookError(f"body is not valid JSON: {err['msg']}") from None
            loc = ".".join(str(p) for p in err["loc"]) or "body"
            problems.append(f"{loc}: {err['msg']}")
        raise WebhookError("; ".join(problems)) from None


def normalize(message: WebhookMessage) -> list[ChangeEvent]:
    """One event per entity item. A changeset only counts when present (created/deleted never carry one)."""
    events = []
    for item in message.data:
        changes = None
        if item.changeset is not None:
            changes = {c.field: FieldChange(old=c.oldValue, new=c.newValue) for c in item.changeset}
        events.append(
            ChangeEvent(
                source="servicetrade",
                via="webhook",
                action=item.action,
                entity=EntityRef(type=item.entity.type, id=item.entity.id, uri=item.entity.uri),
                occurred_at=item.timestamp,
                message_id=message.messageId,
                changes=changes,
            )
        )
    return events


def token_matches(candidate: str, valid: Sequence[str]) -> bool:
    """Constant-time against every configured token: no early exit, so timing reveals neither which nor how many."""
    given = candidate.encode()
    found = False
    for token in valid:
        found |= hmac.compare_digest(given, token.encode())
    return found
