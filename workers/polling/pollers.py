"""Every configured poller of a process, wired to Redis, the connectors and an enqueue function."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from fieldrelay.entitystate import EntityStore, migrate_legacy_state
from fieldrelay.queues import EVENTS_QUEUE
from fieldrelay.settings import Settings
from workers.polling.clients import PollClients
from workers.polling.config import PollerSpec, load_pollers
from workers.polling.runner import Enqueue, Poller
from workers.polling.sources import build_source
from workers.polling.store import PollStore

POLL_TASK = "fieldrelay.poll"


@dataclass
class PollContext:
    """What a poll run needs besides its spec; one per process (clients keep their sessions).

    >>> ctx = PollContext(settings, r, enqueue=events.append, reconcile=True)         # doctest: +SKIP
    >>> ctx.poller("synchroteam.job").run().events                                     # doctest: +SKIP
    """

    settings: Settings
    redis: redis.Redis
    enqueue: Enqueue
    reconcile: bool = False  # leave to webhooks what the webhook path already decided (the worker's task)
    clients: PollClients | None = None
    specs: dict[str, PollerSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clients = self.clients or PollClients(self.settings)
        self.specs = self.specs or {s.name: s for s in load_pollers(self.settings)}
        entities = EntityStore(
            self.redis, ttl=self.settings.entity_state_ttl, max_bytes=self.settings.entity_state_max_bytes
        )
        self.store = PollStore(self.redis, entities)
        migrate_legacy_state(self.redis, entities)  # once per Redis: the snapshots kept before this store

    def poller(self, name: str) -> Poller:
        spec = self.specs[name]
        clients = self.clients
        assert clients is not None
        return Poller(
            spec,
            build_source(spec, clients),
            self.store,
            enqueue=self.enqueue,
            requests=lambda: clients.requests(spec.system),
            reconcile=self.reconcile,
        )


def polling_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery beat entries: one `fieldrelay.poll` per poller; a run that waited a whole interval is dropped."""
    return {
        f"poll {spec.name}": {
            "task": POLL_TASK,
            "schedule": spec.interval,
            "args": (spec.name,),
            "options": {"queue": EVENTS_QUEUE, "expires": spec.interval},
        }
        for spec in load_pollers(settings)
    }
