"""Console access: the token (`FIELDRELAY_CONSOLE_TOKEN`) signs in once; a session id in Redis keeps you signed in.

- Signing in creates a random session id, kept in Redis for `SESSION_MAX_AGE` seconds and sent as a cookie
  with the same Max-Age: `HttpOnly`, `SameSite=Strict`, and `Secure` unless FIELDRELAY_DEV_MODE is set.
- Signing out (a POST with the CSRF value) deletes the session in Redis: the cookie is worth nothing after.
- Each session stores a fingerprint of the token it was opened with: rotating the token signs everyone out.
- Every POST form carries a CSRF value derived from its session. Scripts may send `Authorization: Bearer
  <token>` instead of a cookie; a browser never adds that header by itself, so those need no CSRF value.
- Failed sign-ins are throttled per client address (receiver/throttle.py).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl

import redis
from starlette.requests import Request

COOKIE = "fieldrelay_console"
MAX_FORM = 256 * 1024
SESSION_MAX_AGE = 12 * 3600
SESSION_PREFIX = "fieldrelay:console:session:"


def _mac(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _session_key(session_id: str) -> str:
    # The id itself is not stored: reading Redis does not hand out sessions.
    return SESSION_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleAuth:
    """`open_session()` after a sign-in; `allowed(request)` on every page; `csrf(request)` in every form."""

    def __init__(self, token: str, client: redis.Redis, *, secure: bool = True, max_age: int = SESSION_MAX_AGE):
        self.token = token
        self.client = client
        self.secure = secure
        self.max_age = max_age
        self.fingerprint = _mac(token, "console-session") if token else ""

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def token_matches(self, given: str) -> bool:
        return self.enabled and hmac.compare_digest(given.encode(), self.token.encode())

    def bearer(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        return header.lower().startswith("bearer ") and self.token_matches(header[7:].strip())

    def open_session(self) -> str:
        session_id = secrets.token_urlsafe(32)
        self.client.set(_session_key(session_id), self.fingerprint, ex=self.max_age)
        return session_id

    def session(self, request: Request) -> str | None:
        """The request's session id, if it names a live session opened with the current token (Redis I/O)."""
        session_id = request.cookies.get(COOKIE, "")
        if not self.enabled or not session_id or len(session_id) > 100:
            return None
        stored = self.client.get(_session_key(session_id))
        if stored is None:
            return None
        value = stored.decode() if isinstance(stored, bytes) else str(stored)
        return session_id if hmac.compare_digest(value.encode(), self.fingerprint.encode()) else None

    def close_session(self, session_id: str) -> None:
        self.client.delete(_session_key(session_id))

    def allowed(self, request: Request) -> bool:
        return self.enabled and (self.bearer(request) or self.session(request) is not None)

    def csrf(self, request: Request) -> str:
        session_id = request.cookies.get(COOKIE, "")
        return _mac(self.token, f"csrf:{session_id}") if self.enabled else ""

    def csrf_ok(self, request: Request, form: dict[str, str]) -> bool:
        if not self.enabled:
            return False
        if self.bearer(request):
            return True
        return hmac.compare_digest(form.get("csrf", "").encode(), self.csrf(request).encode())

    def cookie(self, session_id: str) -> dict[str, object]:
        """The session cookie's attributes, for `Response.set_cookie`."""
        return {
            "key": COOKIE,
            "value": session_id,
            "max_age": self.max_age,
            "httponly": True,
            "samesite": "strict",
            "secure": self.secure,
        }


class FormTooLarge(Exception):
    """A form body over `MAX_FORM` bytes: answered 413."""


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the console's forms send nothing else), last value of each name wins."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise FormTooLarge
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
