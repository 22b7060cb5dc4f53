"""Request log shared by the sandboxes: every call, with secrets redacted, for tests to assert on."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTROL_PREFIX = "/_sandbox"
REDACTED = "[redacted]"
SECRET_HEADERS = {"authorization", "cookie", "set-cookie"}
SECRET_FIELDS = {"password", "sha512password", "api_key", "apikey"}

# Each sandbox derives who the caller is (and whether its credentials were good) before redacting.
Identify = Callable[[Headers, QueryParams, Any], dict[str, Any] | None]


def redact_fields(values: Any) -> Any:
    """Return a copy of a JSON-like value with password-like keys masked."""
    if isinstance(values, Mapping):
        return {k: REDACTED if k.lower() in SECRET_FIELDS else redact_fields(v) for k, v in values.items()}
    if isinstance(values, list):
        return [redact_fields(v) for v in values]
    return values


class RequestRecorder:
    """In-memory list of recorded calls; `entries()` is what `GET /_sandbox/requests` returns."""

    def __init__(self, identify: Identify | None = None, *, keep: int = 10_000) -> None:
        self.identify = identify
        # A long-running `make run` must not grow without bound; tests never get near this.
        self._entries: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _parse_body(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class RecorderMiddleware:
    """ASGI middleware that appends one entry per non-control request to a RequestRecorder."""

    def __init__(self, app: ASGIApp, recorder: RequestRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        headers = Headers(scope=scope)
        query = QueryParams(scope.get("query_string", b""))
        body = _parse_body(raw)
        identity = self.recorder.identify(headers, query, body) if self.recorder.identify else None
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "query": redact_fields(dict(query)),
            "headers": {k: REDACTED if k in SECRET_HEADERS else v for k, v in headers.items()},
            "auth_identity": identity,
            "json": redact_fields(body),
            "status": None,
        }

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, replay, send_wrapper)
        finally:
            self.recorder.add(entry)
