"""Shared helpers for the security tests: a real HTTP listener on 127.0.0.1 that records what reaches it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


# (handler) -> (status, headers, body) for each request
Reply = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


@dataclass
class Listener:
    """An HTTP server on 127.0.0.1 in a thread; `hits` is every request it received."""

    reply: Reply = field(default=lambda h: (200, {"Content-Type": "application/json"}, b'{"ok": true}'))
    hits: list[Hit] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Listener:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                listener.hits.append(Hit(self.command, self.path, dict(self.headers), body))
                status, headers, payload = listener.reply(self)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def listener_factory() -> Iterator[Callable[..., Listener]]:
    started: list[Listener] = []

    def make(reply: Reply | None = None) -> Listener:
        listener = Listener(reply) if reply is not None else Listener()
        started.append(listener.start())
        return listener

    yield make
    for listener in started:
        listener.stop()
