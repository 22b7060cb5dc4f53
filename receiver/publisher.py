"""Publishes change events as Celery protocol-2 task messages with one async Redis LPUSH.

Celery's own `apply_async` is synchronous and builds each message through kombu's
producer machinery (about 50 µs per message before any I/O); from an async request
handler it ran at ~0.2x of a bare Starlette+LPUSH endpoint. This module writes the
exact message kombu's Redis transport would write (tests/receiver/test_publisher.py
compares it field by field with `app.amqp.as_task_v2` + kombu's envelope, and the
end-to-end tests have a real worker consume it), for every event of a webhook in a
single LPUSH, so the request is answered only once all of them are in Redis.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from collections.abc import Sequence

import orjson
import redis.asyncio as aioredis

from fieldrelay.events import ChangeEvent
from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def task_message(task_name: str, args: list[object], queue: str, *, argsrepr: str = "") -> bytes:
    """One kombu/Redis envelope for a Celery protocol-2 message, serialized as JSON."""
    task_id = str(uuid.uuid4())
    body = orjson.dumps([args, {}, _EMBED])
    headers = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": argsrepr,
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": None,  # as send_task: the task definition decides
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(envelope)


def event_message(event: ChangeEvent) -> bytes:
    ref = event.entity
    return task_message(
        PROCESS_EVENT_TASK,
        [event.model_dump(mode="json")],
        EVENTS_QUEUE,
        argsrepr=f"{event.source}:{ref.type}:{ref.id}:{event.action}",
    )


class EventPublisher:
    """Enqueues events for `fieldrelay.process_event`; raises redis errors for the caller to map to 503."""

    def __init__(self, client: aioredis.Redis, queue: str = EVENTS_QUEUE) -> None:
        self.client = client
        self.queue = queue

    async def publish(self, events: Sequence[ChangeEvent]) -> None:
        if not events:
            return
        # kombu's Redis consumer BRPOPs, so LPUSH keeps FIFO order; one command is atomic.
        await self.client.lpush(self.queue, *[event_message(e) for e in events])
