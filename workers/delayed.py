"""Tasks due later, kept in a Redis sorted set and moved to their Celery queue when due.

Celery's own countdown/ETA tasks sit reserved inside a worker, unacknowledged, and Redis
redelivers them after `visibility_timeout` (celery #2481, #3270; kombu #337): a long
wait would run twice. Here a delayed task is a finished kombu message in a sorted set
scored by its due time; a Lua script moves due ones to their queue in one atomic step,
so a crash of the mover loses or duplicates nothing, and waits of any length survive
restarts of every process.
"""

from __future__ import annotations

import logging
import threading
import time

import orjson
import redis

from fieldrelay.celery_messages import task_message
from fieldrelay.logs import OutageLog

log = logging.getLogger("fieldrelay.delayed")
KEY = "fieldrelay:delayed"

# Members are `<queue>\n<message>`; moving one is ZREM + LPUSH in the same script.
_MOVE_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local cut = string.find(member, '\\n', 1, true)
  redis.call('ZREM', KEYS[1], member)
  redis.call('LPUSH', string.sub(member, 1, cut - 1), string.sub(member, cut + 1))
end
return #due
"""


class DelayedTasks:
    """`schedule()` a task for later; `move_due()` (run by every worker) releases due ones.

    >>> delayed = DelayedTasks(redis.Redis.from_url(url))                        # doctest: +SKIP
    >>> delayed.schedule("fieldrelay.run_action", ["ev", "digest", 0], "actions.synchroteam", 30.0)
    """

    def __init__(self, client: redis.Redis, key: str = KEY) -> None:
        self.r = client
        self.key = key
        self._move = client.register_script(_MOVE_DUE)

    def schedule(self, task: str, args: list[object], queue: str, delay: float) -> None:
        member = queue.encode() + b"\n" + task_message(task, args, queue)
        self.r.zadd(self.key, {member: time.time() + max(0.0, delay)})

    def move_due(self, batch: int = 500) -> int:
        return int(self._move(keys=[self.key], args=[time.time(), batch]))

    def pending(self) -> list[tuple[str, list[object], float]]:
        """(task, args, due) of every waiting task, soonest first; for operators and tests."""
        import base64

        out: list[tuple[str, list[object], float]] = []
        # redis-py types zrange as the union of its forms; withscores=True gives (member, score) pairs.
        entries: list[tuple[bytes, float]] = self.r.zrange(self.key, 0, -1, withscores=True)  # type: ignore[assignment]
        for member, due in entries:
            envelope = orjson.loads(member.split(b"\n", 1)[1])
            args = orjson.loads(base64.b64decode(envelope["body"]))[0]
            out.append((envelope["headers"]["task"], args, float(due)))
        return out


class DelayedMover(threading.Thread):
    """A daemon thread in each worker's main process; several movers are safe (the script is atomic).

    While Redis is unreachable it backs off (doubling up to `max_backoff`) and logs only the
    change of state: one warning when moving stops, one line when it works again.
    """

    def __init__(self, delayed: DelayedTasks, interval: float = 0.25, max_backoff: float = 10.0) -> None:
        super().__init__(name="fieldrelay-delayed-mover", daemon=True)
        self.delayed = delayed
        self.interval = interval
        self.max_backoff = max_backoff
        self.outage = OutageLog(
            log,
            "delayed tasks are not moving, Redis is unreachable (retrying with backoff)",
            "delayed tasks are moving again",
        )
        self.stopping = threading.Event()

    def run(self) -> None:
        wait = self.interval
        while not self.stopping.wait(wait):
            wait = self.step()

    def step(self) -> float:
        """Move every due task once; returns how long to wait before the next round."""
        try:
            while self.delayed.move_due() >= 500:
                pass
        except redis.RedisError as exc:
            backoff: float = self.interval * 2 ** self.outage.failed(exc)
            return min(self.max_backoff, backoff)
        self.outage.recovered()
        return self.interval

    def stop(self) -> None:
        self.stopping.set()
