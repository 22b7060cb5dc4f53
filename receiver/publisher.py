"""Publishes a webhook's change events as one Celery protocol-2 task message with one async LPUSH.

Celery's own `apply_async` is synchronous and builds each message through kombu's
producer machinery (about 50 µs per message before any I/O); from an async request
handler it ran at ~0.2x of a bare Starlette+LPUSH endpoint. This module writes the
exact messages kombu's Redis transport would write (tests/receiver/test_publisher.py
compares one field by field with what `send_task` writes, and the end-to-end tests have
a real worker consume them). The events of the webhooks committed together go in one LPUSH,
so a request is answered only once its events are in Redis, and no worker hop splits a
webhook first. Up to `per_message` of them share one `fieldrelay.process_events` message:
a burst then costs one broker message (its take, its ack, a Celery task) per group instead
of per event, which was most of a worker's CPU beyond the event's own work
(bench/pipeline_throughput.py). An event alone is a `fieldrelay.process_event` message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from fieldrelay.celery_messages import task_message
from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK, PROCESS_EVENTS_TASK


def event_messages(events: Sequence[dict[str, Any]], queue: str = EVENTS_QUEUE, per_message: int = 1) -> list[bytes]:
    """The messages for `events` (ChangeEvent JSON dicts, receiver.webhooks.normalize), in order: up to
    `per_message` in each; one alone is a `process_event` message, several a `process_events` one."""
    messages = []
    for start in range(0, len(events), max(1, per_message)):
        group = events[start : start + max(1, per_message)]
        described = ", ".join(f"{e['entity']['type']}:{e['entity']['id']}:{e['action']}" for e in group)
        if len(group) == 1:
            messages.append(task_message(PROCESS_EVENT_TASK, [group[0]], queue, argsrepr=f"[{described}]"))
        else:
            messages.append(task_message(PROCESS_EVENTS_TASK, [list(group)], queue, argsrepr=f"[[{described}]]"))
    return messages


class EventPublisher:
    """Enqueues events for `fieldrelay.process_event` with group commit.

    Requests that arrive while an LPUSH is in flight are written together by the next
    one: one round trip serves many requests under load, and none waits on a timer
    when idle. Each `publish` returns only once its own message is in Redis, and raises
    the Redis error (the caller answers 503) if its batch failed.
    """

    def __init__(
        self, client: aioredis.Redis, queue: str = EVENTS_QUEUE, max_batch: int = 256, per_message: int = 1
    ) -> None:
        self.client = client
        self.queue = queue
        self.max_batch = max_batch
        self.per_message = per_message
        self._pending: list[tuple[Sequence[dict[str, Any]], asyncio.Future[None]]] = []
        self._flushing = False

    async def publish(self, events: Sequence[dict[str, Any]]) -> None:
        if not events:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((events, done))
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
                    events = [event for group, _ in batch for event in group]
                    await self.client.lpush(self.queue, *event_messages(events, self.queue, self.per_message))
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
