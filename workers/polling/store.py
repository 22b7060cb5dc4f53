"""Poller state in Redis under `fieldrelay:poll:`: cursors, record snapshots, back-off marks and the lock.

Keys (`<poller>` is `system.entity`):
- `cursor:<poller>`: JSON `{position, since, fresh_until, runs, untrusted_filter}`, written last in a run;
- `snap:<poller>`: hash record id -> JSON `{h: digest, r: record, t: occurred_at, i: id, d: deleted, a: absent}`;
- `memo:<poller>`: hash record id -> `digest:seconds`, when a version without a modification time was
  first seen, so a re-emission after a crash carries the same `occurred_at` (and so the same event id);
- `backoff:<system>`: Unix seconds until which the system's pollers wait (a 429's reset time);
- `run:<poller>`: the last run's report; `last:<poller>`: when the last run started;
- `lock:<poller>`: the lease (see `lease.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis

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


@dataclass(frozen=True)
class Snapshot:
    """The last version of a record the poller reported (or found already reported)."""

    digest: str
    record: dict[str, Any]
    occurred_at: int
    entity_id: int | str
    deleted: bool = False
    absent: bool = False  # exists, but outside what a full scan lists (an activity moved out of the window)


def digest(record: dict[str, Any]) -> str:
    return hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=str), digest_size=12).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PollStore:
    """Every key the pollers keep.

    >>> store = PollStore(redis.Redis.from_url(url))       # doctest: +SKIP
    >>> store.cursor("servicetrade.job")                    # doctest: +SKIP
    Cursor(position=1763855000, since=1763850000, fresh_until=1763855040, runs=12, untrusted_filter=False)
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def key(self, *parts: str) -> str:
        return ":".join((PREFIX, *parts))

    def cursor(self, poller: str) -> Cursor | None:
        raw = self.r.get(self.key("cursor", poller))
        return None if raw is None else Cursor(**orjson.loads(raw))

    def save_cursor(self, poller: str, cursor: Cursor) -> None:
        self.r.set(self.key("cursor", poller), orjson.dumps(asdict(cursor)))

    def snapshots(self, poller: str, ids: list[str]) -> dict[str, Snapshot]:
        if not ids:
            return {}
        found = {}
        for rid, raw in zip(ids, self.r.hmget(self.key("snap", poller), ids), strict=True):
            if raw is not None:
                data = orjson.loads(raw)
                found[rid] = Snapshot(
                    data["h"], data["r"], data["t"], data.get("i", rid), data.get("d", False), data.get("a", False)
                )
        return found

    def all_snapshot_ids(self, poller: str) -> set[str]:
        return {_text(k) for k in self.r.hkeys(self.key("snap", poller))}

    def save_snapshots(self, poller: str, snapshots: dict[str, Snapshot]) -> None:
        if snapshots:
            self.r.hset(
                self.key("snap", poller),
                mapping={
                    rid: orjson.dumps(
                        {
                            "h": s.digest,
                            "r": s.record,
                            "t": s.occurred_at,
                            "i": s.entity_id,
                            "d": s.deleted,
                            "a": s.absent,
                        },
                        default=str,
                    )
                    for rid, s in snapshots.items()
                },
            )

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
