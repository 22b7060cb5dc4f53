"""What an action runs with: the API clients, the call's context and the spec that names it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel

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
    # Creates without a natural key record their intent here before calling (workers/intents.py).
    intents: Intents = field(default_factory=MemoryIntents, compare=False)

    def link_key(self, action: str) -> str:
        """The link-store key for ``action``'s record: one per source entity and rule step."""
        return f"{action}:{self.idempotency_key}"

    def call_key(self) -> str:
        """A short key unique to this event, rule and step (and stable across retries)."""
        raw = f"{self.event_id}:{self.rule}:{self.index}:{self.idempotency_key}"
        return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class ActionSpec:
    """A named action: its parameter model, what it runs and which system it talks to."""

    name: str
    params: type[BaseModel]
    run: Callable[[Clients, Any, ActionContext], dict[str, Any]]
    target: Target
    description: str = ""
