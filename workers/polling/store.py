"""Poller state in Redis: cursors, back-off marks and the lock under `fieldrelay:poll:`; record snapshots
in the entity state store the webhook path shares (`fieldrelay.entitystate`).

Keys (`<poller>` is `system.entity`):
- `cursor:<poller>`: JSON `{position, since, fresh_until, runs, untrusted_filter}`, written last in a run;
- `fieldrelay:entity:<system>:<entity>:<id>`: the record's last seen version, whoever saw it (one store
  for webhooks and polls, with its TTL); `ids:<poller>`: the ids a poller stored, for full scans to
  notice records gone missing;
- `memo:<poller>`: hash record id -> `digest:seconds`, when a version without a modification time was
  first seen, so a re-emission after a crash carries the same `occurred_at` (and so the same event id);
- `backoff:<system>`: Unix seconds until which the system's pollers wait (a 429's reset time);
- `run:<poller>`: the last run's report; `last:<poller>`: when the last run started;
- `lock:<poller>`: the lease (see `lease.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis

from fieldrelay.entitystate import EntityStore, EntityVersion
from fieldrelay.entitystate import digest as digest

PREFIX = "fieldrelay:poll"


@dataclass
class Cursor:
    """Where the next run starts reading: `position - overlap`, in the source's modification times."""

    position: int
    since: int  # where the first run started: records created before it are not "created"
    fresh_until: int  # every change up to here has been enqueued
    runs: int = 0
    untrusted_filter: bool = False
    # A listing a rate limit cut short: {"since", "full", "mark", "newest"}; the next run goes on from `mark`.
    resume: dict[str, Any] | None = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PollStore:
    """Every key the pollers keep.

    >>> store = PollStore(redis.Redis.from_url(url))       # doctest: +SKIP
    >>> store.cursor("servicetrade.job")                    # doctest: +SKIP
    Cursor(position=1763855000, since=1763850000, fresh_until=1763855040, runs=12, untrusted_filter=False)
    """

    def __init__(self, client: redis.Redis, entities: EntityStore | None = None) -> None:
        self.r = client
        self.entities = entities or EntityStore(client, ttl=30 * 86400, max_bytes=16384)

    def key(self, *parts: str) -> str:
        return ":".join((PREFIX, *parts))

    def cursor(self, poller: str) -> Cursor | None:
        raw = self.r.get(self.key("cursor", poller))
        return None if raw is None else Cursor(**orjson.loads(raw))

    def save_cursor(self, poller: str, cursor: Cursor) -> None:
        self.r.set(self.key("cursor", poller), orjson.dumps(asdict(cursor)))

    @staticmethod
    def _kind(poller: str) -> tuple[str, str]:
        system, _, entity = poller.partition(".")
        return system, entity

    def snapshots(self, poller: str, ids: list[str]) -> dict[str, EntityVersion]:
        """The stored versions of these records (one MGET), each with its compare-and-set token."""
        return self.entities.read_many(*self._kind(poller), ids)

    def all_snapshot_ids(self, poller: str) -> set[str]:
        return {_text(k) for k in self.r.smembers(self.key("ids", poller))}

    def forget_ids(self, poller: str, ids: set[str]) -> None:
        """Drop ids whose version expired (or never was) from the poller's list."""
        if ids:
            self.r.srem(self.key("ids", poller), *ids)

    def save_snapshots(
        self, poller: str, snapshots: dict[str, tuple[EntityVersion, str]], *, track_ids: bool = True
    ) -> set[str]:
        """Write each record's new version if the stored one is still the one read (its token): a webhook
        event that moved it meanwhile wins. Returns the ids written.

        `track_ids` adds them to the poller's id list, which only full scans read (and prune): a poller
        that never scans in full keeps none, so the list does not grow without bound.
        """
        if not snapshots:
            return set()
        written = self.entities.write_many(*self._kind(poller), snapshots)
        if written and track_ids:
            self.r.sadd(self.key("ids", poller), *written)
        return written

    def touch(self, poller: str, ids: list[str]) -> None:
        """Records listed again unchanged: their stored versions live on (a full scan lists them each run)."""
        if ids:
            self.entities.touch_many(*self._kind(poller), ids)

    def observed_at(self, poller: str, rid: str, version: str, now: int) -> int:
        """When this version of a record without a modification time was first seen (now, if never)."""
        key = self.key("memo", poller)
        raw = self.r.hget(key, rid)
        if raw is not None:
            seen_version, _, at = _text(raw).rpartition(":")
            if seen_version == version:
                return int(at)
        self.r.hset(key, rid, f"{version}:{now}")
        return now

    def backoff_until(self, system: str) -> float:
        raw = self.r.get(self.key("backoff", system))
        return float(raw) if raw is not None else 0.0

    def back_off(self, system: str, until: float, now: float) -> None:
        ttl = max(1, int(until - now) + 1)
        self.r.set(self.key("backoff", system), until, ex=ttl)

    def last_started(self, poller: str) -> float:
        raw = self.r.get(self.key("last", poller))
        return float(raw) if raw is not None else 0.0

    def mark_started(self, poller: str, at: float) -> None:
        self.r.set(self.key("last", poller), at)

    def save_report(self, poller: str, report: dict[str, Any]) -> None:
        self.r.set(self.key("run", poller), orjson.dumps(report), ex=7 * 86400)

    def report(self, poller: str) -> dict[str, Any] | None:
        raw = self.r.get(self.key("run", poller))
        return None if raw is None else orjson.loads(raw)
