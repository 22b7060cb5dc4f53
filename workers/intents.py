"""Exactly-once effects for creates without a natural key: intent, call, record, and read back after a crash.

A create that the target cannot deduplicate (a ServiceTrade comment, a Synergist activity) is made
the way durable-execution systems make activities (Temporal) and Stripe makes charges:

    intent = intents.begin(key, payload)     1. durable intent, written before the call
    if intent.sent_before:                   2. a previous attempt may have made the call:
        wait until it can no longer be in flight, then look for its effect in the target
    intents.resend(key, payload)             (the first attempt's `begin` already recorded its send)
    created = create()                       3. the call
    links.set(key, id); intents.finish(key)  4. the record

A process killed anywhere between 1 and 4 leaves the intent behind, and its redelivery reads the
target before it calls again. `create_once` is that sequence; each action supplies the call and
how to recognise its effect (the connectors' `find_*` methods).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis

from workers.admission import Deferred

PREFIX = "fieldrelay:intent"
DAY = 86400
# How far another system's clock may be behind ours when it stamps what we created; a read-back
# that matches on the target's own creation time looks this much earlier than our first send.
CLOCK_SKEW = 300.0


@dataclass(frozen=True)
class Intent:
    """What is known of earlier attempts at one create.

    `sent` holds the payload of every attempt that may have reached the target (usually one);
    `first_sent_at` and `last_sent_at` are our clock's times of the first and the last of them.
    """

    key: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    first_sent_at: float | None = None
    last_sent_at: float | None = None

    @property
    def sent_before(self) -> bool:
        """An earlier attempt may have made the call: read the target before calling again."""
        return bool(self.sent)

    def since(self, skew: float = CLOCK_SKEW) -> float:
        """The earliest creation time (in the target's clock) an earlier attempt's record can carry."""
        return (self.first_sent_at or time.time()) - skew


class Intents(Protocol):
    """Where intents are kept: Redis in the workers (`RedisIntents`), a dict in tests (`MemoryIntents`)."""

    settle: float

    def begin(self, key: str, payload: dict[str, Any]) -> Intent:
        """The intent's state before this attempt; when no attempt was sent yet, this one is recorded as sent."""
        ...

    def resend(self, key: str, payload: dict[str, Any]) -> None:
        """Record one more attempt about to be sent (after a read-back found nothing)."""
        ...

    def finish(self, key: str) -> None:
        """The create is recorded (its link is written): forget the intent."""
        ...


class MemoryIntents:
    """`Intents` in a dict, for tests and one-off runs; `settle` 0 reads back at once."""

    def __init__(self, settle: float = 0.0) -> None:
        self.settle = settle
        self.intents: dict[str, Intent] = {}

    def begin(self, key: str, payload: dict[str, Any]) -> Intent:
        before = self.intents.get(key, Intent(key))
        if not before.sent:
            now = time.time()
            self.intents[key] = Intent(key, [payload], now, now)
        return before

    def resend(self, key: str, payload: dict[str, Any]) -> None:
        before = self.intents.get(key, Intent(key))
        now = time.time()
        self.intents[key] = Intent(key, [*before.sent, payload], before.first_sent_at or now, now)

    def finish(self, key: str) -> None:
        self.intents.pop(key, None)


# One hash per intent: `first` and `last` (send times), `n` (sends), `p:<n>` (each send's payload).
# The first attempt's begin and its send are one step, so the usual create costs no extra round trip.
_BEGIN = """
local state = redis.call('HGETALL', KEYS[1])
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then
  redis.call('HSET', KEYS[1], 'first', ARGV[1], 'last', ARGV[1], 'n', 1, 'p:1', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return state
"""
_RESEND = """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSETNX', KEYS[1], 'first', ARGV[1])
redis.call('HSET', KEYS[1], 'last', ARGV[1], 'p:' .. n, ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return n
"""


class RedisIntents:
    """`Intents` in Redis, shared by every worker process on every host.

    `settle` is how long after an attempt's send its call may still be in flight (the HTTP timeout):
    a read-back sooner could miss a record the target is still writing.

    >>> intents = RedisIntents(redis.Redis.from_url(url), settle=10.0)    # doctest: +SKIP
    >>> intents.begin("servicetrade.job.comment:ab12", {"content": "Done"}).sent_before  # doctest: +SKIP
    False
    """

    def __init__(self, client: redis.Redis, *, settle: float, ttl: int = 30 * DAY, prefix: str = PREFIX) -> None:
        self.r, self.settle, self.ttl, self.prefix = client, settle, ttl, prefix
        self._begin = client.register_script(_BEGIN)
        self._resend = client.register_script(_RESEND)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def begin(self, key: str, payload: dict[str, Any]) -> Intent:
        raw = self._begin(keys=[self._key(key)], args=[time.time(), orjson.dumps(payload), self.ttl])
        fields = {_text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}
        if not fields.get("n"):
            return Intent(key)
        sent = [orjson.loads(fields[f"p:{n}"]) for n in range(1, int(fields["n"]) + 1) if f"p:{n}" in fields]
        return Intent(key, sent, float(fields["first"]), float(fields["last"]))

    def resend(self, key: str, payload: dict[str, Any]) -> None:
        self._resend(keys=[self._key(key)], args=[time.time(), orjson.dumps(payload), self.ttl])

    def finish(self, key: str) -> None:
        self.r.delete(self._key(key))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Links(Protocol):
    """The link store's two methods (`workers.actions.context.LinkStore`)."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


def create_once(
    links: Links,
    intents: Intents,
    key: str,
    payload: dict[str, Any],
    *,
    create: Callable[[], dict[str, Any]],
    find: Callable[[dict[str, Any], float], dict[str, Any] | None],
    ident: Callable[[dict[str, Any]], Any],
    update: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Create once under link `key`: the record `create()` made, or the one an earlier attempt made.

    `payload` is what this attempt sends. After a crash, `find(sent, since)` looks in the target for
    the record an earlier attempt's payload `sent` made, created at or after `since` (the target's
    clock); `ident(record)` is the id the link keeps. A record found again comes back with
    `"recovered": True`, passed through `update` first when it was made from other values than these.
    """
    intent = intents.begin(key, payload)
    if intent.sent_before:
        wait = (intent.last_sent_at or 0.0) + intents.settle - time.time()
        if wait > 0:  # the earlier call may still be in flight: look once it can no longer land
            raise Deferred(wait, "intent")
        for sent in _distinct(intent.sent):
            found = find(sent, intent.since())
            if found is not None:
                _record(links, intents, key, found, ident)
                if update is not None and sent != payload:
                    found = update(found)
                return {**found, "recovered": True}
        intents.resend(key, payload)
    created = create()
    _record(links, intents, key, created, ident)
    return created


def _distinct(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for payload in reversed(payloads):  # the latest attempt first: the likeliest to have landed last
        if payload not in out:
            out.append(payload)
    return out


def _record(
    links: Links, intents: Intents, key: str, record: dict[str, Any], ident: Callable[[dict[str, Any]], Any]
) -> None:
    value = ident(record)
    if value is not None and value != "":
        links.set(key, str(value))
    intents.finish(key)
