"""Publishes a webhook's change events as one Celery protocol-2 task message with one async LPUSH.

Celery's own `apply_async` is synchronous and builds each message through kombu's
producer machinery (about 50 µs per message before any I/O); from an async request
handler it ran at ~0.2x of a bare Starlette+LPUSH endpoint. This module writes the
exact message kombu's Redis transport would write (tests/receiver/test_publisher.py
compares it field by field with what `send_task` writes, and the end-to-end tests have
a real worker consume it). All events of one webhook travel in one `fieldrelay.ingest`
message, which a worker splits into one `process_event` task per event: one small
write per request keeps the receiver near the bare reference (bench/receiver_throughput.py),
and the request is answered only once every event is in Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from fieldrelay.celery_messages import task_message
from fieldrelay.queues import EVENTS_QUEUE, INGEST_TASK


def ingest_message(events: Sequence[dict[str, Any]], queue: str = EVENTS_QUEUE) -> bytes:
    """`events` are ChangeEvent JSON dicts (see receiver.webhooks.normalize)."""
    refs = ",".join(f"{e['entity']['type']}:{e['entity']['id']}:{e['action']}" for e in events[:5])
    return task_message(
        INGEST_TASK,
        [list(events)],
        queue,
        argsrepr=f"[{refs}{',...' if len(events) > 5 else ''}]",
    )


class EventPublisher:
    """Enqueues events for `fieldrelay.ingest` with group commit.

    Requests that arrive while an LPUSH is in flight are written together by the next
    one: one round trip serves many requests under load, and none waits on a timer
    when idle. Each `publish` returns only once its own message is in Redis, and raises
    the Redis error (the caller answers 503) if its batch failed.
    """

    def __init__(self, client: aioredis.Redis, queue: str = EVENTS_QUEUE, max_batch: int = 256) -> None:
        self.client = client
        self.queue = queue
        self.max_batch = max_batch
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flushing = False

    async def publish(self, events: Sequence[dict[str, Any]]) -> None:
        if not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ingest_message(events, self.queue), done))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                try:
                    # kombu's Redis consumer BRPOPs, so LPUSH keeps FIFO order; one command is atomic.
                    await self.client.lpush(self.queue, *[message for message, _ in batch])
                except BaseException as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flushing = False
