"""Console access: a token (`FIELDRELAY_CONSOLE_TOKEN`) typed once into a login form, or sent as a Bearer header.

The session cookie is an HMAC of the token, so rotating the token signs everyone out; every POST form
carries a CSRF value derived from that session, and the cookie is `SameSite=Strict` and `HttpOnly`.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from starlette.requests import Request

COOKIE = "fieldrelay_console"
MAX_FORM = 256 * 1024


def _mac(secret: str, purpose: str) -> str:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


class ConsoleAuth:
    """`session_for(token)` after a login; `allowed(request)` on every page; `csrf(request)` in every form."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.session = _mac(token, "console-session") if token else ""

    @property
    def enabled(self) -> bool:
        return bool(self.token)

    def token_matches(self, given: str) -> bool:
        return self.enabled and hmac.compare_digest(given.encode(), self.token.encode())

    def allowed(self, request: Request) -> bool:
        if not self.enabled:
            return False
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and self.token_matches(header[7:].strip()):
            return True
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self.session.encode())

    def csrf(self) -> str:
        return _mac(self.session, "csrf")

    def csrf_ok(self, form: dict[str, str]) -> bool:
        return self.enabled and hmac.compare_digest(form.get("csrf", "").encode(), self.csrf().encode())


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the console's forms send nothing else), last value of each name wins."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
