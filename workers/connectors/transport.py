"""The one place where httpx exceptions become connector errors."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import httpx

from workers.connectors.errors import ErrorFamily, scrub

log = logging.getLogger("workers.connectors")


class QueryOmitted(logging.Filter):
    """httpx logs each request's whole URL at INFO ("HTTP Request: GET https://…?password=…"): Synergist
    (001, "Authentication") takes its password in every query string. The URL is logged without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) and a.query for a in record.args):
            record.args = tuple(
                f"{a.copy_with(query=None)}?[query omitted]" if isinstance(a, httpx.URL) and a.query else a
                for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(QueryOmitted())


def open_client(
    base_url: str,
    *,
    transport: httpx.BaseTransport | None,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An httpx client; redirects are not followed so a 3xx cannot send credentials elsewhere."""
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        transport=transport,
        timeout=timeout,
        headers=headers,
        follow_redirects=False,
    )


def send(
    client: httpx.Client,
    family: ErrorFamily,
    method: str,
    url: str,
    *,
    secrets: tuple[str, ...] = (),
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; a network failure or timeout raises the family's ``Unavailable``.

    The logged and raised path never includes the query string (it may hold a password).
    """
    try:
        request = client.build_request(method, url, **kwargs)
    except (httpx.InvalidURL, ValueError) as exc:  # a bad URL or a non-ASCII header value
        path = urlsplit(url).path
        raise family.rejected(family.api, None, path, scrub(f"invalid request: {exc}", secrets)) from None
    path = request.url.path
    try:
        response = client.send(request)
    except httpx.TimeoutException as exc:
        log.warning("%s %s %s: timeout", family.api, method, path)
        raise family.unavailable(family.api, None, path, f"timeout ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
        log.warning("%s %s %s: %s", family.api, method, path, detail)
        raise family.unavailable(family.api, None, path, detail) from None
    log.debug("%s %s %s -> %s", family.api, method, path, response.status_code)
    return response


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when it is empty or not JSON."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None
