"""Fault injection shared by the sandboxes: latency, error statuses and dropped connections on demand."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.recorder import CONTROL_PREFIX

# Each API words its errors differently, so each sandbox says how a status and message look.
ErrorBody = Callable[[int, str], Any]


class ConnectionDropped(Exception):
    """Raised after the response headers went out, so the server closes the socket mid-response."""


@dataclass
class Fault:
    """One rule: requests under `path_prefix` (and `method`, if set) get delayed, failed or cut.

    `count` is how many requests it still applies to; None means until cleared.
    """

    latency_ms: int = 0
    status: int | None = None
    count: int | None = None
    drop_connection: bool = False
    path_prefix: str = ""
    method: str | None = None
    body: Any = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        unknown = set(data) - set(known)
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**known)


class FaultInjector:
    """Ordered list of faults; the first one matching a request is used and its count decremented."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if not path.startswith(fault.path_prefix):
                    continue
                if fault.method and fault.method.upper() != method:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return fault
        return None


class FaultMiddleware:
    """ASGI middleware applying the first matching fault before the sandbox handles the request."""

    def __init__(self, app: ASGIApp, injector: FaultInjector, error_body: ErrorBody) -> None:
        self.app = app
        self.injector = injector
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        fault = self.injector.take(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.drop_connection:
            # A promised body that never arrives is what a client sees when a peer dies mid-reply.
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
            raise ConnectionDropped(scope["path"])
        if fault.status is None:
            await self.app(scope, receive, send)
            return
        body = (
            fault.body
            if fault.body is not None
            else self.error_body(fault.status, f"sandbox injected HTTP {fault.status}")
        )
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": fault.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
