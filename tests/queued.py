"""The events waiting in the events queue, as the workers will take them."""

from __future__ import annotations

import base64
import json
from typing import Any

import redis

from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK, PROCESS_EVENTS_TASK


def message_events(raw: bytes | str) -> list[dict[str, Any]]:
    """The events of one `process_event` or `process_events` message."""
    message = json.loads(raw)
    args = json.loads(base64.b64decode(message["body"]))[0]
    task = message["headers"]["task"]
    assert task in (PROCESS_EVENT_TASK, PROCESS_EVENTS_TASK), task
    return [args[0]] if task == PROCESS_EVENT_TASK else list(args[0])


def queued_events(r: redis.Redis, queue: str = EVENTS_QUEUE) -> list[dict[str, Any]]:
    """Every queued event, in the order the workers take them (LPUSH, then RPOP)."""
    return [event for raw in reversed(r.lrange(queue, 0, -1)) for event in message_events(raw)]
