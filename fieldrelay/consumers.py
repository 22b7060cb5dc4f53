"""Which worker holds each message Redis delivered and has not seen acknowledged, whether that worker still
lives, and putting back on its queue what a dead one held.

kombu's Redis transport keeps every delivered, unacknowledged message in the `unacked` hash (delivery
tag -> [message, exchange, routing key]) and when it was delivered in the `unacked_index` sorted set. By
itself it hands a message back only after `visibility_timeout`, because it cannot tell a dead consumer's
messages from a live one's on another host. fieldrelay's transport (workers/broker.py) also writes which
consumer took each message (`fieldrelay:unacked:owner`, in the same transaction), and every consumer
holds a lease, `fieldrelay:consumer:<id>`, that it renews several times per lease while its process lives.

    held        its consumer's lease is alive: never taken, however long it is held
    orphaned    its consumer's lease is gone: any live worker puts it back within seconds, and the
                supervisor of a worker that died puts back what it held at once
    untracked   no owner recorded (a consumer without fieldrelay's transport): kombu's visibility timeout

A consumer records itself per channel, `<consumer>/<n>`: when its connection to Redis breaks, Celery opens a
new channel and cancels the tasks it was running, and what the old channel held (its acks can no longer
reach Redis) is put back by the consumer itself (`restore_stale`), while its lease keeps it from others.

A message put back gets a fresh delivery tag: a late acknowledgement of the old tag by a consumer that was
only cut off, not dead, cannot remove the new delivery.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

log = logging.getLogger("fieldrelay.consumers")

UNACKED = "unacked"  # kombu's Redis transport: delivery tag -> [message, exchange, routing key]
UNACKED_INDEX = "unacked_index"  # kombu's: delivery tag -> when it was delivered
OWNERS = "fieldrelay:unacked:owner"  # delivery tag -> the consumer that took it
LEASES = "fieldrelay:consumer"  # fieldrelay:consumer:<id>, alive while it exists
BINDINGS = "_kombu.binding."  # kombu: exchange -> "routing key\x06\x16pattern\x06\x16queue" members
SEP = "\x06\x16"
CONSUMER_ENV = "FIELDRELAY_CONSUMER_ID"  # set by the supervisor for each Celery process it starts
# A consumer renews its lease every LEASE / 5 s; one not renewed for LEASE seconds is dead.
LEASE = 10.0
# fieldrelay_messages_restored_total{by}, in fieldrelay.metrics' layout (which reads this module's counts).
RESTORED_KEY = "fieldrelay:metrics:fieldrelay_messages_restored_total"
RESTARTS_KEY = "fieldrelay:metrics:fieldrelay_worker_restarts_total"  # {reason}, kept by the supervisor


def new_consumer_id() -> str:
    """A name for one consumer process, unique across hosts and restarts: `host:pid:random`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def consumer_id() -> str:
    """This process's consumer: the one its supervisor named, or a new one."""
    return os.environ.get(CONSUMER_ENV) or new_consumer_id()


def lease_key(consumer: str) -> str:
    return f"{LEASES}:{consumer}"


def consumer_of(owner: str) -> str:
    """The consumer (process) of an owner entry, `<consumer>/<channel>`."""
    return owner.split("/", 1)[0]


class Leases:
    """The consumers' leases: renewed by each live consumer, read by whoever looks for orphans.

    >>> leases = Leases(redis.Redis.from_url(url))      # doctest: +SKIP
    >>> leases.renew("host:42:ab12cd34")                # doctest: +SKIP
    True
    """

    def __init__(self, client: redis.Redis, lease: float = LEASE) -> None:
        self.r, self.lease = client, lease

    def renew(self, consumer: str) -> bool:
        """Extend `consumer`'s lease; False when it had lapsed (or never existed) before this renewal."""
        value = orjson.dumps({"host": socket.gethostname(), "pid": os.getpid(), "renewed": time.time()})
        previous = self.r.set(lease_key(consumer), value, px=int(self.lease * 1000), get=True)
        return previous is not None

    def release(self, consumer: str) -> None:
        """`consumer` is gone (a clean stop, or its supervisor saw it die): what it still holds is orphaned."""
        self.r.delete(lease_key(consumer))

    def alive(self, consumers: Iterable[str]) -> dict[str, bool]:
        names = sorted(set(consumers))
        if not names:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for name in names:
            pipe.exists(lease_key(name))
        return {name: bool(found) for name, found in zip(names, pipe.execute(), strict=True)}


@dataclass(frozen=True)
class Held:
    """One delivered, unacknowledged message, as the console and the metrics show it."""

    tag: str
    state: str  # held | orphaned | untracked
    consumer: str | None
    owner: str | None  # `<consumer>/<channel>`
    delivered_at: float | None
    queue: str | None
    task: str
    args: list[Any]
    raw: bytes  # the `unacked` entry as stored, compared before it is put back

    def age(self, now: float | None = None) -> float | None:
        return None if self.delivered_at is None else (now or time.time()) - self.delivered_at


def held_messages(client: redis.Redis, leases: Leases | None = None) -> list[Held]:
    """Every delivered, unacknowledged message with its state, oldest delivery first (for people: it reads
    every message; the sweeps read the owners first and only the messages they move)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(UNACKED)
    pipe.hgetall(OWNERS)
    pipe.zrange(UNACKED_INDEX, 0, -1, withscores=True)
    entries, owners, index = pipe.execute()
    owner_of = {_text(k): _text(v) for k, v in owners.items()}
    delivered = {_text(tag): float(at) for tag, at in index}
    alive = (leases or Leases(client)).alive(consumer_of(owner_of[_text(t)]) for t in entries if _text(t) in owner_of)
    out = [
        _held(client, _text(t), raw, owner_of.get(_text(t)), delivered.get(_text(t)), alive)
        for t, raw in entries.items()
    ]
    return sorted(out, key=lambda h: h.delivered_at or 0.0)


def _held(
    client: redis.Redis, tag: str, raw: bytes, owner: str | None, delivered_at: float | None, alive: dict[str, bool]
) -> Held:
    consumer = consumer_of(owner) if owner is not None else None
    state = "untracked" if consumer is None else ("held" if alive.get(consumer) else "orphaned")
    task, args, queue = _describe(client, raw)
    return Held(tag, state, consumer, owner, delivered_at, queue, task, args, raw)


def _owned(client: redis.Redis, tags: list[str], owner_of: dict[str, str], alive: dict[str, bool]) -> list[Held]:
    """The messages of `tags` that are still unacknowledged, read with their delivery time."""
    if not tags:
        return []
    pipe = client.pipeline(transaction=False)
    pipe.hmget(UNACKED, tags)
    for tag in tags:
        pipe.zscore(UNACKED_INDEX, tag)
    raws, *times = pipe.execute()
    return [
        _held(client, tag, raw, owner_of[tag], at, alive)
        for tag, raw, at in zip(tags, raws, times, strict=True)
        if raw is not None
    ]


def _owners(client: redis.Redis) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in client.hgetall(OWNERS).items()}


def count_by_state(client: redis.Redis) -> dict[str, int]:
    counts = {"held": 0, "orphaned": 0, "untracked": 0}
    for held in held_messages(client):
        counts[held.state] += 1
    return counts


# Put one orphaned message back: only if its consumer is still dead (unless its own process puts back what
# an old channel held: ARGV[5]), it is still that owner's, and the entry is still the one read. Queue ends:
# kombu pops with BRPOP, so RPUSH makes it the next one taken.
_RESTORE = """
if ARGV[5] ~= 'own' and redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[5], ARGV[4])
return 1
"""
# Owner entries whose message is gone (acknowledged, or put back by kombu) are dropped.
_FORGET = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return redis.call('HDEL', KEYS[2], ARGV[1]) end
return 0
"""


def restore_orphans(
    client: redis.Redis, *, consumer: str | None = None, by: str = "worker", leases: Leases | None = None
) -> list[Held]:
    """Put back on their queues the messages whose consumer's lease is gone (only `consumer`'s, if given).

    Safe to run from every live worker at once: each message is moved by one atomic script, which
    checks again that its consumer is still dead. Returns what was put back. Cheap when nothing is
    orphaned: one read of the owners and one of the leases.
    """
    owner_of = _owners(client)
    alive = (leases or Leases(client)).alive(consumer_of(o) for o in owner_of.values())
    dead = [
        tag
        for tag, owner in owner_of.items()
        if not alive[consumer_of(owner)] and (consumer is None or consumer_of(owner) == consumer)
    ]
    orphans = _owned(client, dead, owner_of, alive)
    gone = set(dead) - {h.tag for h in orphans}
    if gone:  # a dead consumer's messages acknowledged (or put back) meanwhile: forget their owners
        forget = client.register_script(_FORGET)
        for tag in gone:
            forget(keys=[UNACKED, OWNERS], args=[tag])
    return _restore(client, orphans, by=by, own=False)


def restore_stale(
    client: redis.Redis, consumer: str, live: set[str], *, seen: dict[str, float], grace: float
) -> list[Held]:
    """Put back what `consumer`'s own closed channels held (not one of `live`), once seen so for `grace` seconds.

    Run by the consumer's own process: its lease keeps these messages from every other worker. `seen`
    remembers since when each was seen stale, across calls; the grace lets Celery end the tasks it
    cancelled when the old connection broke before their messages go back.
    """
    now = time.monotonic()
    owner_of = _owners(client)
    stale = {t for t, o in owner_of.items() if consumer_of(o) == consumer and o not in live}
    for gone in set(seen) - stale:
        del seen[gone]
    due = [t for t in stale if now - seen.setdefault(t, now) >= grace]
    return _restore(client, _owned(client, due, owner_of, {consumer: True}), by="reconnect", own=True)


def _restore(client: redis.Redis, chosen: list[Held], *, by: str, own: bool) -> list[Held]:
    restore = client.register_script(_RESTORE)
    restored = []
    for held in chosen:
        if held.queue is None or held.consumer is None or held.owner is None:
            log.warning("message %s has no queue it can go back to; left to the visibility timeout", held.tag)
            continue
        payload = _redelivered(held.raw)
        keys = [UNACKED, UNACKED_INDEX, OWNERS, lease_key(held.consumer), held.queue]
        if restore(keys=keys, args=[held.tag, held.owner, held.raw, payload, "own" if own else ""]):
            restored.append(held)
    if restored:
        client.hincrby(RESTORED_KEY, orjson.dumps([by]).decode(), len(restored))
        oldest = max(h.age() or 0.0 for h in restored)
        consumers = sorted({h.owner or "" for h in restored})
        log.warning(
            "put back %d message(s) held by %s (the oldest was held %.1f s)",
            len(restored),
            ", ".join(consumers) if not own else "this worker's broken connection",
            oldest,
            extra={"restored": len(restored), "consumers": consumers, "oldest_seconds": round(oldest, 3), "by": by},
        )
    return restored


def record_restart(client: redis.Redis, reason: str) -> None:
    """Count one restart of a worker process by its supervisor (`fieldrelay_worker_restarts_total`)."""
    client.hincrby(RESTARTS_KEY, orjson.dumps([reason]).decode(), 1)


def _redelivered(raw: bytes) -> bytes:
    """The message as it goes back on its queue: marked redelivered, under a fresh delivery tag."""
    message, _exchange, _routing_key = orjson.loads(raw)
    properties = message.setdefault("properties", {})
    properties["delivery_tag"] = str(uuid.uuid4())
    properties.setdefault("delivery_info", {})["redelivered"] = True
    message.setdefault("headers", {})["redelivered"] = True
    return orjson.dumps(message)


def _describe(client: redis.Redis, raw: bytes) -> tuple[str, list[Any], str | None]:
    """(task name, its arguments, its queue) of an `unacked` entry."""
    try:
        message, exchange, routing_key = orjson.loads(raw)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return "?", [], None
    task = str((message.get("headers") or {}).get("task") or "?")
    args: list[Any] = []
    try:
        body = message.get("body") or ""
        decoded = base64.b64decode(body) if message["properties"].get("body_encoding") == "base64" else body
        args = list(orjson.loads(decoded)[0])
    except (KeyError, ValueError, TypeError, IndexError, orjson.JSONDecodeError):
        pass
    return task, args, _queue(client, str(exchange or ""), str(routing_key or ""))


def _queue(client: redis.Redis, exchange: str, routing_key: str) -> str | None:
    """Where kombu would deliver it: the routing key on the default exchange, else the exchange's bindings."""
    if not exchange:
        return routing_key or None
    for member in client.smembers(BINDINGS + exchange):
        key, _pattern, queue = _text(member).split(SEP)
        if key == routing_key:
            return queue
    return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
