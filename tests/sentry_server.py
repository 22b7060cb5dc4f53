"""A local stand-in for Sentry's ingest: captures envelopes posted by sentry-sdk over real HTTP."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SentryCapture:
    """`dsn` points sentry-sdk here; `events()` are the error events received, decoded.

    >>> with SentryCapture() as sentry:      # doctest: +SKIP
    ...     sentry_sdk.init(dsn=sentry.dsn)
    """

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                capture.raw.append(body)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://public-key@127.0.0.1:{self.server.server_address[1]}/1"

    def items(self) -> list[dict[str, Any]]:
        out = []
        for body in self.raw:
            for line in body.splitlines()[1:]:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out

    def events(self) -> list[dict[str, Any]]:
        return [i for i in self.items() if "exception" in i or i.get("level") == "error"]

    def __enter__(self) -> SentryCapture:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
