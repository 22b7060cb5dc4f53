"""Generic outbound HTTP for the ``http.request`` action, with the same typed errors, under the egress policy.

A rule can aim this client at a URL a webhook carried, so (see `fieldrelay.egress` and docs/security.md):
- the URL and every address it resolves to must pass the egress policy, or nothing is sent and
  ``OutboundRefused`` (permanent: dead-lettered at once, no retry) says why;
- a connection that fails for any reason reads "could not connect", so the trace does not tell
  an open port from a closed or filtered one;
- the request body is capped (FIELDRELAY_HTTP_MAX_REQUEST_BODY), and at most ``MAX_STORED`` bytes
  of the answer are read and kept in the result, which says when it was cut;
- redirects are never followed.
"""

from __future__ import annotations

import json as jsonlib
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from fieldrelay.egress import EgressPolicy, EgressRefused
from workers.connectors.egress import EgressTransport
from workers.connectors.errors import (
    AuthFailed,
    ConnectorError,
    ErrorFamily,
    NotFound,
    RateInfo,
    RateLimited,
    Rejected,
    Unavailable,
    scrub,
)

API = "http"
# How much of an answer is read and kept in the step's result (and so in its trace and on the console).
MAX_STORED = 64 * 1024
DEFAULT_MAX_BODY = 1024 * 1024
COULD_NOT_CONNECT = "could not connect"
log = logging.getLogger("workers.connectors")


class OutboundError(ConnectorError):
    """Any failure calling an arbitrary HTTP endpoint."""


class OutboundUnavailable(OutboundError, Unavailable):
    """Network error, timeout or 5xx: safe to retry."""


class OutboundRateLimited(OutboundUnavailable, RateLimited):
    """429; ``reset_at`` from a numeric ``Retry-After`` when present."""


class OutboundRejected(OutboundError, Rejected):
    """Any other non-2xx answer (redirects are not followed)."""


class OutboundRefused(OutboundRejected):
    """The egress policy refused the call (or its body was too large): nothing was sent, retrying cannot help."""


class OutboundNotFound(OutboundRejected, NotFound):
    """404."""


class OutboundAuthFailed(OutboundRejected, AuthFailed):
    """401."""


FAMILY = ErrorFamily(
    API, OutboundUnavailable, OutboundRateLimited, OutboundRejected, OutboundNotFound, OutboundAuthFailed
)


class OutboundClient:
    """Calls a URL a rule names; the answer comes back as plain JSON.

    >>> OutboundClient().request("POST", "https://hooks.example/x", json={"a": 1})  # doctest: +SKIP
    {'status': 200, 'json': {...}, 'text': None}

    ``policy`` is checked on the URL before every call; without an injected ``transport``, the
    client also connects through ``EgressTransport``, which checks every resolved address.
    """

    last_rate: RateInfo | None = None  # this API documents no rate-limit headers

    def __init__(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        policy: EgressPolicy | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.policy = policy if policy is not None else EgressPolicy()
        self.max_body = max_body
        # trust_env=False: an environment proxy would hide the real destination from the policy.
        self._http = httpx.Client(
            transport=transport or EgressTransport(self.policy),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
        )

    def __repr__(self) -> str:
        return "OutboundClient()"

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Send one request; ``Idempotency-Key`` is added unless the caller set one."""
        path = _path(url)
        reason = self.policy.check_url(url)
        if reason is not None:
            raise OutboundRefused(API, None, path, str(EgressRefused(reason)))
        all_headers = dict(headers or {})
        if idempotency_key and not any(k.lower() == "idempotency-key" for k in all_headers):
            all_headers["Idempotency-Key"] = idempotency_key
        # Header values may carry tokens: they are scrubbed from any error text.
        secrets = tuple(v for v in all_headers.values() if len(v) >= 8)
        content = None
        if json is not None:
            # The same encoding httpx uses for json=, measured before anything is sent.
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            if len(content) > self.max_body:
                raise OutboundRefused(
                    API,
                    None,
                    path,
                    f"the request body is {len(content)} bytes; "
                    f"FIELDRELAY_HTTP_MAX_REQUEST_BODY allows {self.max_body}",
                )
            if not any(k.lower() == "content-type" for k in all_headers):
                all_headers["Content-Type"] = "application/json"
        status, raw, truncated, phrase, retry_after = self._send(method.upper(), url, all_headers, content, secrets)
        body = _json(raw) if not truncated else None
        text = None if body is not None else raw.decode("utf-8", errors="replace")
        if 200 <= status < 300:
            result: dict[str, Any] = {"status": status, "json": body, "text": text}
            if truncated:
                result["truncated"] = f"the answer was longer than {MAX_STORED} bytes; only its start is kept"
            return result
        if 300 <= status < 400:
            raise FAMILY.for_status(status, path, "redirect not followed (the egress policy follows none)")
        detail = phrase if body is None else str(body)[:500]
        if status == 429:
            reset = time.time() + float(retry_after) if retry_after.isdigit() else None
            raise OutboundRateLimited(API, 429, path, detail, reset)
        raise FAMILY.for_status(status, path, detail)

    def _send(
        self, method: str, url: str, headers: dict[str, str], content: bytes | None, secrets: tuple[str, ...]
    ) -> tuple[int, bytes, bool, str, str]:
        """(status, at most MAX_STORED bytes of the body, whether it was cut, reason phrase, Retry-After)."""
        path = _path(url)
        try:
            request = self._http.build_request(method, url, headers=headers, content=content)
        except (httpx.InvalidURL, ValueError) as exc:  # a bad URL or a non-ASCII header value
            raise OutboundRejected(API, None, path, scrub(f"invalid request: {exc}", secrets)) from None
        try:
            response = self._http.send(request, stream=True)
            try:
                chunks, size = [], 0
                for chunk in response.iter_bytes():  # decoded: a gzip bomb stops at the cap too
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > MAX_STORED:
                        break
            finally:
                response.close()
        except EgressRefused as exc:
            log.warning("%s %s %s: %s", API, method, path, exc)
            raise OutboundRefused(API, None, path, str(exc)) from None
        except httpx.HTTPError as exc:
            # One text for every way a connection can fail: a refused, reset or silent port look alike.
            log.warning("%s %s %s: %s (%s)", API, method, path, COULD_NOT_CONNECT, type(exc).__name__)
            raise OutboundUnavailable(API, None, path, COULD_NOT_CONNECT) from None
        raw = b"".join(chunks)
        log.debug("%s %s %s -> %s", API, method, path, response.status_code)
        return (
            response.status_code,
            raw[:MAX_STORED],
            size > MAX_STORED,
            response.reason_phrase or "",
            response.headers.get("Retry-After", ""),
        )


def _path(url: str) -> str:
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return "<invalid URL>"


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return jsonlib.loads(raw)
    except ValueError:
        return None
