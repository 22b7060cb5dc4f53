"""Celery protocol-2 task messages exactly as kombu's Redis transport stores them.

Written directly (one LPUSH, or a Lua script) where going through `apply_async` would cost
too much (the receiver's hot path) or could not be atomic (moving a delayed task from a
Redis sorted set to its queue). tests/receiver/test_publisher.py checks the format against
Celery's own `send_task`.
"""

from __future__ import annotations

import base64
import os
import socket

import orjson

_ORIGIN = f"gen{os.getpid()}@{socket.gethostname()}"
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _uuid4() -> str:
    """`str(uuid.uuid4())` at a fraction of its cost (os.urandom, no UUID object): the receiver makes two per event."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def task_message(task_name: str, args: list[object], queue: str, *, argsrepr: str = "") -> bytes:
    """One kombu/Redis envelope for a Celery protocol-2 message, serialized as JSON."""
    task_id = _uuid4()
    body = orjson.dumps([args, {}, _EMBED])
    headers: dict[str, object] = {
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
            "delivery_tag": _uuid4(),
        },
    }
    return orjson.dumps(envelope)
