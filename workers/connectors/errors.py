"""Typed connector errors, shared by every API client.

The tree (each API adds its own family, e.g. ``SynchroteamRejected(SynchroteamError, Rejected)``,
so callers catch either ``Rejected`` or ``SynchroteamError``)::

    Exception
     └── ConnectorError(api, status, path, detail)
          ├── Unavailable            network error, timeout, 5xx: retryable
          │    └── RateLimited       429 (or equivalent), ``reset_at`` Unix seconds or None
          │         └── QuotaExceeded  a request quota used up: wait for the quota's reset
          └── Rejected               4xx: permanent, retrying will not help
               ├── NotFound          404 / record missing
               └── AuthFailed        bad or missing credentials

``status`` is the HTTP status, or None when no response arrived. ``path`` is the request path
only: query strings are dropped because Synergist puts passwords there. Every constructor
argument goes to ``Exception.__init__`` so the errors survive pickling (Celery carries them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ConnectorError(Exception):
    """Any failure talking to an external API; never carries credentials."""

    def __init__(self, api: str, status: int | None, path: str, detail: str = "", rate: Any = None) -> None:
        super().__init__(api, status, path, detail, rate)
        self.api, self.status, self.path, self.detail, self.rate = api, status, path, detail, rate

    def __str__(self) -> str:
        status = "no response" if self.status is None else f"HTTP {self.status}"
        return f"{self.api} {self.path}: {status}" + (f": {self.detail}" if self.detail else "")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.api!r}, {self.status!r}, {self.path!r}, {self.detail!r})"


class Unavailable(ConnectorError):
    """Network error, timeout or 5xx: safe to retry later."""


class RateLimited(Unavailable):
    """Too many requests; retry after ``reset_at`` (Unix seconds) when known."""

    def __init__(
        self,
        api: str,
        status: int | None,
        path: str,
        detail: str = "",
        reset_at: float | None = None,
        rate: Any = None,
    ) -> None:
        Exception.__init__(self, api, status, path, detail, reset_at, rate)
        self.api, self.status, self.path, self.detail, self.rate = api, status, path, detail, rate
        self.reset_at = reset_at


class QuotaExceeded(RateLimited):
    """A request quota is used up; the target's documented reset (`fieldrelay.targets`) says when it returns."""


class Rejected(ConnectorError):
    """The API refused the request (4xx): retrying the same call will not help."""


class NotFound(Rejected):
    """The record does not exist."""


class AuthFailed(Rejected):
    """Credentials were missing, wrong or disabled."""


@dataclass(frozen=True)
class ErrorFamily:
    """One API's concrete error classes, so shared code can raise the right subclass."""

    api: str
    unavailable: type[Unavailable]
    rate_limited: type[RateLimited]
    rejected: type[Rejected]
    not_found: type[NotFound]
    auth_failed: type[AuthFailed]

    def for_status(self, status: int, path: str, detail: str, rate: Any = None) -> ConnectorError:
        """The error for a non-2xx status (429 without a known reset time included)."""
        if status == 429:
            return self.rate_limited(self.api, status, path, detail, None, rate)
        if status >= 500:
            return self.unavailable(self.api, status, path, detail, rate)
        if status == 404:
            return self.not_found(self.api, status, path, detail, rate)
        if status == 401:
            return self.auth_failed(self.api, status, path, detail, rate)
        return self.rejected(self.api, status, path, detail, rate)


@dataclass(frozen=True)
class RateInfo:
    """The rate-limit and quota headers of one response (None where absent).

    000 (Synchroteam API v3), "Rate Limits and Quotas": X-RateLimit-Limit, X-RateLimit-Remaining,
    X-RateLimit-Reset ("A UTC Unix timestamp"), X-Quota-Limit and X-Quota-Remaining on every answer.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    quota_limit: int | None = None
    quota_remaining: int | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateInfo:
        def number(name: str) -> int | None:
            try:
                return int(headers[name])
            except (KeyError, ValueError):
                return None

        reset = number("X-RateLimit-Reset")
        return cls(
            limit=number("X-RateLimit-Limit"),
            remaining=number("X-RateLimit-Remaining"),
            reset_at=None if reset is None else float(reset),
            quota_limit=number("X-Quota-Limit"),
            quota_remaining=number("X-Quota-Remaining"),
        )


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every non-empty secret replaced, for details built from library messages."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
