"""Publishes a webhook's change events as one Celery protocol-2 task message with one async LPUSH.

Celery's own `apply_async` is synchronous and builds each message through kombu's
producer machinery (about 50 µs per message before any I/O); from an async request
handler it ran at ~0.2x of a bare Starlette+LPUSH endpoint. This module writes the
exact messages kombu's Redis transport would write (tests/receiver/test_publisher.py
compares one field by field with what `send_task` writes, and the end-to-end tests have
a real worker consume them). Each event of a webhook is its own `fieldrelay.process_event`
message, and all of them go in one LPUSH, so the request is answered only once every
event is in Redis, and no worker hop splits the webhook first (bench/pipeline_throughput.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from fieldrelay.celery_messages import task_message
from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK


def event_messages(events: Sequence[dict[str, Any]], queue: str = EVENTS_QUEUE) -> list[bytes]:
    """One `process_event` message per event; `events` are ChangeEvent JSON dicts (receiver.webhooks.normalize)."""
    return [
        task_message(
            PROCESS_EVENT_TASK,
            [event],
            queue,
            argsrepr=f"[{event['entity']['type']}:{event['entity']['id']}:{event['action']}]",
        )
        for event in events
    ]


class EventPublisher:
    """Enqueues events for `fieldrelay.process_event` with group commit.

    Requests that arrive while an LPUSH is in flight are written together by the next
    one: one round trip serves many requests under load, and none waits on a timer
    when idle. Each `publish` returns only once its own message is in Redis, and raises
    the Redis error (the caller answers 503) if its batch failed.
    """

    def __init__(self, client: aioredis.Redis, queue: str = EVENTS_QUEUE, max_batch: int = 256) -> None:
        self.client = client
        self.queue = queue
        self.max_batch = max_batch
        self._pending: list[tuple[list[bytes], asyncio.Future[None]]] = []
        self._flushing = False

    async def publish(self, events: Sequence[dict[str, Any]]) -> None:
        if not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event_messages(events, self.queue), done))
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
                    await self.client.lpush(self.queue, *[m for messages, _ in batch for m in messages])
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
