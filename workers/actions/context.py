"""What an action runs with: the API clients, the call's context and the spec that names it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel

from workers.connectors.errors import NotFound
from workers.intents import Intents, MemoryIntents

if TYPE_CHECKING:
    from workers.connectors.errors import RateInfo
    from workers.connectors.outbound import OutboundClient
    from workers.connectors.servicetrade import ServiceTradeClient
    from workers.connectors.synchroteam import SynchroteamClient
    from workers.connectors.synergist import SynergistClient

Target = Literal["synchroteam", "synergist", "servicetrade", "http"]


class LinkStore(Protocol):
    """Maps an idempotency key to the id a create returned, so a retry updates instead."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


class MemoryLinkStore:
    """A dict-backed ``LinkStore`` for tests and one-off runs (not shared between processes)."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.links.get(key)

    def set(self, key: str, value: str) -> None:
        self.links[key] = value


class Clients(Protocol):
    """The API clients an action may use; implementations build them on first use."""

    @property
    def servicetrade(self) -> ServiceTradeClient: ...

    @property
    def synchroteam(self) -> SynchroteamClient: ...

    @property
    def synergist(self) -> SynergistClient: ...

    @property
    def http(self) -> OutboundClient: ...

    def last_rate(self, target: str) -> RateInfo | None:
        """The rate-limit headers of the target's last answer, if its API sends them."""
        ...


@dataclass(frozen=True)
class ActionContext:
    """Where an action call comes from.

    ``idempotency_key`` is stable across retries; the pipeline also keeps it stable across
    later events for the same source entity, so a create run again becomes an update.
    ``call_key()`` differs per event, for effects that must happen once per event (a comment,
    an outbound request).
    """

    event_id: str
    rule: str
    index: int
    idempotency_key: str
    link_store: LinkStore = field(default_factory=MemoryLinkStore, compare=False)
    on_missing: str = "fail"  # the step's policy when its linked record was deleted in the target
    # Creates without a natural key record their intent here before calling (workers/intents.py).
    intents: Intents = field(default_factory=MemoryIntents, compare=False)

    def link_key(self, action: str) -> str:
        """The link-store key for ``action``'s record: one per source entity and rule step."""
        return f"{action}:{self.idempotency_key}"

    def call_key(self) -> str:
        """A short key unique to this event, rule and step (and stable across retries)."""
        raw = f"{self.event_id}:{self.rule}:{self.index}:{self.idempotency_key}"
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


class LinkedRecordMissing(Exception):
    """The record a step created earlier was deleted in the target, and the step says `on_missing: fail`.

    Permanent: the step is dead-lettered with this text, and no record is created behind anyone's back.
    """

    def __init__(self, kind: str, record_id: str, key: str) -> None:
        super().__init__(kind, record_id, key)
        self.kind, self.record_id, self.key = kind, record_id, key

    def __str__(self) -> str:
        return (
            f"the {self.kind} {self.record_id} that this step created earlier (link {self.key}) no longer "
            f"exists in {self.kind.split('.')[0]}; nothing was written. With `on_missing: recreate` on the "
            "step, the next run creates a new one and links it instead"
        )


def with_link(
    ctx: ActionContext,
    action: str,
    kind: str,
    *,
    update: Callable[[str], dict[str, Any]],
    create: Callable[[], dict[str, Any]],
    id_of: Callable[[dict[str, Any]], Any],
) -> dict[str, Any]:
    """Update the record this step created before (its id is in the link store), or create and link it.

    A linked record the target no longer has (`NotFound` on the update) is created again under
    `on_missing: recreate`, and is `LinkedRecordMissing` under `fail` (the default).
    """
    link = ctx.link_key(action)
    known = ctx.link_store.get(link)
    if known:
        try:
            return update(known)
        except NotFound:
            if ctx.on_missing != "recreate":
                raise LinkedRecordMissing(kind, known, link) from None
    record = create()
    record_id = id_of(record)
    if record_id is not None:
        ctx.link_store.set(link, str(record_id))
    return record


@dataclass(frozen=True)
class ActionSpec:
    """A named action: its parameter model, what it runs and which system it talks to."""

    name: str
    params: type[BaseModel]
    run: Callable[[Clients, Any, ActionContext], dict[str, Any]]
    target: Target
    description: str = ""

    @property
    def writes(self) -> bool:
        """False for reads whose result feeds later steps (the parameter model's `writes`)."""
        return bool(getattr(self.params, "writes", True))
