"""Webhooks the receiver answered 400, kept so nothing is lost: ServiceTrade treats any 200-499 answer as final.

A body that a valid token sent and that failed validation (a schema change, a field type nobody
expected) is kept with its reason and the time, compressed, for `KEEP_SECONDS`, at most `KEEP` of them.
Unknown tokens and bodies over the size limit are not kept: anyone can send those. Once the schema or
the rules are fixed, `replay` validates the body again and enqueues its events like a fresh delivery.

    fieldrelay webhooks rejected [--json]          list them, newest first, with their messageId
    fieldrelay webhooks rejected replay ID         push one through again (the console has a button)

Keys: `fieldrelay:rejected` (a sorted set of ids by time) and `fieldrelay:rejected:<id>` (the entry).
"""

from __future__ import annotations

import base64
import hashlib
import time
import zlib
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from fieldrelay.metrics import counter_field, metric_key
from fieldrelay.queues import EVENTS_QUEUE
from receiver.publisher import event_messages
from receiver.webhooks import WebhookError, normalize, parse_message

INDEX = "fieldrelay:rejected"
KEEP = 500
KEEP_SECONDS = 14 * 86400
MAX_REASON = 4000
METRIC = "fieldrelay_webhooks_rejected_total"

# Add the entry, count it, and drop (index and entry) whatever is past the newest KEEP.
_KEEP = """
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
local old = redis.call('ZRANGE', KEYS[1], 0, -tonumber(ARGV[6]) - 1)
for _, id in ipairs(old) do
  redis.call('DEL', KEYS[1] .. ':' .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #old
"""


class RejectedError(Exception):
    """No such rejected webhook, or it is still invalid; the message says which."""


def entry_key(rejected_id: str) -> str:
    return f"{INDEX}:{rejected_id}"


def _message_id(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    value = data.get("messageId") if isinstance(data, dict) else None
    return value[:200] if isinstance(value, str) else None


async def keep(client: aioredis.Redis, body: bytes, reason: str, kind: str) -> str:
    """Store a rejected body (`kind`: `not_json` or `invalid`); raises the Redis error if it could not."""
    rejected_id = hashlib.blake2b(body, digest_size=8).hexdigest()  # the same body again is kept once
    now = time.time()
    entry = {
        "id": rejected_id,
        "at": now,
        "reason": reason[:MAX_REASON],
        "kind": kind,
        "message_id": _message_id(body),
        "bytes": len(body),
        "body": base64.b64encode(zlib.compress(body, 6)).decode(),
    }
    script = client.register_script(_KEEP)
    await script(
        keys=[INDEX, entry_key(rejected_id), metric_key(METRIC)],
        args=[rejected_id, orjson.dumps(entry), KEEP_SECONDS, now, counter_field(METRIC, {"reason": kind}), KEEP],
    )
    return rejected_id


def _load(client: redis.Redis, rejected_id: str) -> dict[str, Any] | None:
    raw = client.get(entry_key(rejected_id))
    return None if raw is None else orjson.loads(raw)


def _unknown(rejected_id: str) -> str:
    return f"no rejected webhook {rejected_id!r} (unknown, or older than {KEEP_SECONDS // 86400} days)"


def body_of(entry: dict[str, Any]) -> bytes:
    return zlib.decompress(base64.b64decode(entry["body"]))


def list_rejected(client: redis.Redis, limit: int = 500) -> list[dict[str, Any]]:
    """Kept rejections, newest first, without their bodies (`bytes` says how large each was)."""
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in client.zrevrange(INDEX, 0, limit - 1)]
    out = []
    for rejected_id in ids:
        entry = _load(client, rejected_id)
        if entry is None:  # expired: its index entry goes too
            client.zrem(INDEX, rejected_id)
            continue
        out.append({k: v for k, v in entry.items() if k != "body"})
    return out


def show_rejected(client: redis.Redis, rejected_id: str) -> dict[str, Any]:
    """One kept rejection with its body as text (undecodable bytes replaced)."""
    entry = _load(client, rejected_id)
    if entry is None:
        raise RejectedError(_unknown(rejected_id))
    return {**{k: v for k, v in entry.items() if k != "body"}, "body": body_of(entry).decode("utf-8", "replace")}


def replay_rejected(client: redis.Redis, rejected_id: str, queue: str = EVENTS_QUEUE, *, max_skew: int = 300) -> int:
    """Validate the kept body again and enqueue its events; the entry goes once they are in Redis.

    Raises RejectedError when it is unknown, or still invalid (the entry stays). Returns the number
    of events enqueued. `max_skew` is FIELDRELAY_CLOCK_SKEW, as the receiver applies it.
    """
    entry = _load(client, rejected_id)
    if entry is None:
        raise RejectedError(_unknown(rejected_id))
    try:
        events = normalize(parse_message(body_of(entry)), max_skew=max_skew)
    except WebhookError as exc:
        raise RejectedError(f"rejected webhook {rejected_id} is still invalid: {exc}") from None
    if events:
        client.lpush(queue, *event_messages(events, queue))
    pipe = client.pipeline(transaction=True)
    pipe.delete(entry_key(rejected_id))
    pipe.zrem(INDEX, rejected_id)
    pipe.execute()
    return len(events)
