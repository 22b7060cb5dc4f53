"""Generic outbound HTTP for the ``http.request`` action, with the same typed errors."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from workers.connectors.errors import (
    AuthFailed,
    ConnectorError,
    ErrorFamily,
    NotFound,
    RateInfo,
    RateLimited,
    Rejected,
    Unavailable,
)
from workers.connectors.transport import json_body, open_client, send

API = "http"
MAX_TEXT = 10_000


class OutboundError(ConnectorError):
    """Any failure calling an arbitrary HTTP endpoint."""


class OutboundUnavailable(OutboundError, Unavailable):
    """Network error, timeout or 5xx: safe to retry."""


class OutboundRateLimited(OutboundUnavailable, RateLimited):
    """429; ``reset_at`` from a numeric ``Retry-After`` when present."""


class OutboundRejected(OutboundError, Rejected):
    """Any other non-2xx answer (redirects are not followed)."""


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
    """

    last_rate: RateInfo | None = None  # this API documents no rate-limit headers

    def __init__(self, *, transport: httpx.BaseTransport | None = None, timeout: float = 10.0) -> None:
        self._http = open_client("", transport=transport, timeout=timeout)

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
        all_headers = dict(headers or {})
        if idempotency_key and not any(k.lower() == "idempotency-key" for k in all_headers):
            all_headers["Idempotency-Key"] = idempotency_key
        # Header values may carry tokens: they are scrubbed from any error text.
        secrets = tuple(v for v in all_headers.values() if len(v) >= 8)
        response = send(self._http, FAMILY, method.upper(), url, headers=all_headers, json=json, secrets=secrets)
        body = json_body(response)
        text = None if body is not None else response.text[:MAX_TEXT]
        if response.is_success:
            return {"status": response.status_code, "json": body, "text": text}
        path = response.request.url.path
        detail = (response.reason_phrase or "") if body is None else str(body)[:500]
        if response.status_code == 429:
            retry = response.headers.get("Retry-After", "")
            reset = time.time() + float(retry) if retry.isdigit() else None
            raise OutboundRateLimited(API, 429, path, detail, reset)
        raise FAMILY.for_status(response.status_code, path, detail)
