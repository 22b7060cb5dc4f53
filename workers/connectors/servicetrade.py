"""ServiceTrade client: session login, entity reads by uri, lists, job actions and webhook CRUD."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

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

API = "servicetrade"
# The named array of each list response; anything else falls back to the first list in `data`.
LIST_KEYS = {
    "job": "jobs",
    "appointment": "appointments",
    "location": "locations",
    "company": "companies",
    "contact": "contacts",
    "invoice": "invoices",
    "quote": "quotes",
    "deficiency": "deficiencies",
    "asset": "assets",
    "user": "users",
    "attachment": "attachments",
    "servicerequest": "servicerequests",
    "webhook": "webhooks",
    "history": "histories",
    "comment": "comments",
    "clock": "events",
}
APPOINTMENT_STATUSES = "scheduled,unscheduled,canceled_by_vendor,canceled_by_customer,completed,no_show"
# Where one record of each type is read: `GET /<path>/<id>`, from each section's "Resource URL" (e.g.
# Appointment "/appointment/[appointmentId]", Quote Item "/quoteitem/[itemId]"). Keys are the webhook and
# poller type names as `rules.catalog.canonical_entity` spells them. [INCONS] Job Item's Resource URL is
# "/jobItem/[jobItemId]" but its response-code table uses "/jobitem/123"; the table's spelling is used.
# Clock events have no read by id alone ("/job/[jobId]/clockin/[eventId]" needs the job), so none here.
ENTITY_PATHS = {
    "job": "job",
    "appointment": "appointment",
    "location": "location",
    "company": "company",
    "contact": "contact",
    "invoice": "invoice",
    "quote": "quote",
    "quoteitem": "quoteitem",
    "deficiency": "deficiency",
    "asset": "asset",
    "user": "user",
    "attachment": "attachment",
    "servicerequest": "servicerequest",
    "jobitem": "jobitem",
    "comment": "comment",
}
# "ExternalId": "Supported entity types: asset, company, contact, contract, deficiency, location, job,
# jobitem, libitem, quote, user".
EXTERNAL_ID_TYPES = (
    "asset",
    "company",
    "contact",
    "contract",
    "deficiency",
    "location",
    "job",
    "jobitem",
    "libitem",
    "quote",
    "user",
)


class ServiceTradeError(ConnectorError):
    """Any failure talking to ServiceTrade."""


class ServiceTradeUnavailable(ServiceTradeError, Unavailable):
    """Network error, timeout or 5xx: safe to retry."""


class ServiceTradeRateLimited(ServiceTradeUnavailable, RateLimited):
    """429 (undocumented for ServiceTrade, handled anyway)."""


class ServiceTradeRejected(ServiceTradeError, Rejected):
    """4xx: invalid parameters, not allowed, conflict."""


class ServiceTradeNotFound(ServiceTradeRejected, NotFound):
    """No such record (or not visible to this user)."""


class ServiceTradeAuthFailed(ServiceTradeRejected, AuthFailed):
    """Login refused, or a fresh session was still unauthorized."""


FAMILY = ErrorFamily(
    API,
    ServiceTradeUnavailable,
    ServiceTradeRateLimited,
    ServiceTradeRejected,
    ServiceTradeNotFound,
    ServiceTradeAuthFailed,
)


class UnreadableEntity(ValueError):
    """A type with no documented read by id, or an id that cannot be one (ServiceTrade ids are integers)."""


def entity_path(entity_type: str, entity_id: int | str) -> str:
    """`/<path>/<id>` for one record, from our own table of documented paths; never from a message's uri.

    Webhook items carry `type`, `id` and `uri`, and the doc's own sample gives job 35769 the uri of
    invoice 35789 ("Webhook > Entity Changesets"): type and id say which record changed.
    """
    path = ENTITY_PATHS.get(entity_type.replace("_", "").lower())
    if path is None:
        raise UnreadableEntity(f"ServiceTrade documents no read by id for entity type {entity_type!r}")
    if isinstance(entity_id, bool) or not (
        isinstance(entity_id, int) or (isinstance(entity_id, str) and entity_id.isdigit())
    ):
        raise UnreadableEntity(f"ServiceTrade ids are integers; {entity_id!r} is not one")
    return f"/{path}/{int(entity_id)}"


def api_path(uri_or_path: str) -> str:
    """The path below the API root for an entity ``uri`` or a path; never another host.

    [INCONS] uris are ``https://api.servicetrade.com/api/job/1`` but one sample lacks ``/api``,
    and some examples write paths as ``/api/quote?...``: all resolve against the configured base.
    """
    parts = urlsplit(uri_or_path)
    path = parts.path
    if "/api/" in path:
        path = path.split("/api/", 1)[1]
    elif path == "/api":
        path = ""
    path = "/" + path.lstrip("/")
    if ".." in path.split("/"):
        raise ValueError(f"dot segments are not allowed in a ServiceTrade path: {path!r}")
    return f"{path}?{parts.query}" if parts.query else path


class ServiceTradeClient:
    """ServiceTrade with a shared session: log in on first use, again once on a 401.

    >>> st = ServiceTradeClient("https://api.servicetrade.com/api", "bot", SecretStr("pw"))
    >>> job = st.get("https://api.servicetrade.com/api/job/34872")  # doctest: +SKIP
    >>> st.comment_job(34872, "Scheduled in Synchroteam")  # doctest: +SKIP
    """

    last_rate: RateInfo | None = None  # this API documents no rate-limit headers

    def __init__(
        self,
        base_url: str,
        username: str,
        password: SecretStr,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url, self.username = base_url.rstrip("/"), username
        self._password = password
        self._http = open_client(
            self.base_url, transport=transport, timeout=timeout, headers={"Accept": "application/json"}
        )
        self._lock = threading.Lock()
        self._token: str | None = None

    def __repr__(self) -> str:
        return f"ServiceTradeClient({self.base_url!r}, username={self.username!r})"

    def close(self) -> None:
        self._http.close()

    def get(self, uri_or_path: str, **params: Any) -> dict[str, Any]:
        """The ``data`` of ``GET`` on an entity uri (absolute or not) or an API path."""
        return _dict(self._call("GET", api_path(uri_or_path), params=params or None))

    def get_entity(self, entity_type: str, entity_id: int | str) -> dict[str, Any]:
        """One record by type and id (`GET /job/35769`); see `entity_path`. `UnreadableEntity` for a
        type without a documented read by id, `ServiceTradeNotFound` for a record that is gone."""
        return self.get(entity_path(entity_type, entity_id))

    def external_ids(self, entity_type: str, entity_id: int) -> dict[str, str]:
        """Every external id of a record: `{system name: value}`.

        "ExternalId": `GET /externalid/location/123` -> `{"data": {"values": {"system_name": "S1-123", ...}}}`.
        [INCONS] Its params table types `entityType` as the "entity type constant" (3 for a job), but every
        example path names the type (`/externalid/location/123`); names are sent, as in the examples.
        """
        data = self.get(f"/externalid/{entity_type}/{int(entity_id)}")
        values = data.get("values")
        return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}

    def set_external_id(self, entity_type: str, entity_id: int, system: str, value: str) -> dict[str, Any]:
        """Set (or, with `""`, remove) one system's external id for a record; returns `{"value": ...}`.

        "ExternalId": `POST /externalid/company/123/system_name {"value":"AB-CD534"}` sets it (200); "If an
        empty string is given for a PUT, the existing value will be removed", so removal is a PUT. A system
        name ServiceTrade does not know is a 404 ("no external system with that name was found").
        """
        method = "PUT" if value == "" else "POST"
        path = f"/externalid/{entity_type}/{int(entity_id)}/{quote(system, safe='')}"
        return _dict(self._call(method, path, json={"value": value}))

    def find_by_external_id(self, entity_type: str, system: str, value: str) -> dict[str, Any]:
        """The record a system's external id names, or `ServiceTradeNotFound`.

        "ExternalId": `GET /externalid/location/system_name/S1-NewId123` returns the location; the
        `?value=` form (`/externalid/[entityType]/[externalSystem]/?value=[value]`) is used, so a value
        with a slash stays one path segment.
        """
        return self.get(f"/externalid/{entity_type}/{quote(system, safe='')}/", value=value)

    def iter_list(self, entity_type: str, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every record of a list, page after page.

        Jobs without ``status`` (and without ``number``) yield ``status=all`` and then
        ``status=canceled``: the API would otherwise default to ``scheduled``, and ``all``
        leaves canceled jobs out. Appointments default to every status (the API drops
        ``unscheduled``); locations ask for the maximum ``limit`` instead of the default 10.
        """
        if entity_type == "job" and "status" not in filters and "number" not in filters:
            yield from self._pages("job", {**filters, "status": "all"})
            yield from self._pages("job", {**filters, "status": "canceled"})
            return
        if entity_type == "appointment":
            filters.setdefault("status", APPOINTMENT_STATUSES)
        if entity_type == "location":
            filters.setdefault("limit", 5000)
        yield from self._pages(entity_type, filters)

    def _pages(self, entity_type: str, filters: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            data = _dict(self._call("GET", f"/{entity_type}", params={**filters, "page": page}))
            key = LIST_KEYS.get(entity_type)
            rows = data.get(key) if key else None
            if rows is None:
                rows = next((v for v in data.values() if isinstance(v, list)), [])
            yield from rows
            if not rows or page >= int(data.get("totalPages") or 1):
                return
            page += 1

    def comment_job(self, job_id: int | str, text: str, visibility: Sequence[str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"content": text}
        if visibility is not None:
            body["visibility"] = list(visibility)
        return _dict(self._call("POST", f"/job/{job_id}/comment", json=body))

    def update_job(self, job_id: int | str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(self._call("PUT", f"/job/{job_id}", json=dict(fields)))

    def create_appointment(self, job_id: int | str, **fields: Any) -> dict[str, Any]:
        """``POST /appointment``; ``fields`` are the API's own (``windowStart``, ``techIds``...)."""
        return _dict(self._call("POST", "/appointment", json={"jobId": job_id, **fields}))

    def update_appointment(self, appointment_id: int | str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return _dict(self._call("PUT", f"/appointment/{appointment_id}", json=dict(fields)))

    def create_webhook(self, hook_url: str, enabled: bool = True, include_changesets: bool = True) -> dict[str, Any]:
        body = {"hookUrl": hook_url, "enabled": enabled, "includeChangesets": include_changesets}
        return _dict(self._call("POST", "/webhook", json=body))

    def list_webhooks(self) -> list[dict[str, Any]]:
        return list(self._pages("webhook", {}))

    def update_webhook(
        self, webhook_id: int | str, *, enabled: bool | None = None, include_changesets: bool | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if enabled is not None:
            body["enabled"] = enabled
        if include_changesets is not None:
            body["includeChangesets"] = include_changesets
        return _dict(self._call("PUT", f"/webhook/{webhook_id}", json=body))

    def delete_webhook(self, webhook_id: int | str) -> None:
        self._call("DELETE", f"/webhook/{webhook_id}")

    def _session(self, stale: str | None = None) -> str:
        """The current token; logs in when there is none or ``stale`` was just refused."""
        with self._lock:
            if self._token is None or self._token == stale:
                self._token = None
                self._token = self._login()
            return self._token

    def _login(self) -> str:
        body = {"username": self.username, "password": self._password.get_secret_value()}
        response = self._send("POST", "/auth", None, json=body)
        if 400 <= response.status_code < 500 and response.status_code != 429:
            # Any refused login is an auth failure, never NotFound: a 404 here means a wrong base URL,
            # and callers read NotFound as "the record is gone".
            raise ServiceTradeAuthFailed(API, response.status_code, response.request.url.path, _detail(response))
        data = _dict(self._decode(response))
        token = data.get("authToken")
        if not token:
            path = response.request.url.path
            raise ServiceTradeAuthFailed(API, response.status_code, path, "no authToken in the response")
        return str(token)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        token = self._session()
        response = self._send(method, path, token, **kwargs)
        if response.status_code == 401:
            response = self._send(method, path, self._session(stale=token), **kwargs)
        return self._decode(response)

    def _send(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Cookie": f"PHPSESSID={token}"} if token else None
        secrets = (self._password.get_secret_value(), *([token] if token else []))
        return send(self._http, FAMILY, method, path, secrets=secrets, headers=headers, **kwargs)

    def _decode(self, response: httpx.Response) -> Any:
        path = response.request.url.path
        body = json_body(response)
        if response.is_success:
            if body is None and response.content:
                raise ServiceTradeUnavailable(API, response.status_code, path, "response is not JSON")
            return body.get("data") if isinstance(body, dict) else body
        if response.status_code == 429:
            retry = response.headers.get("Retry-After", "")
            reset = time.time() + float(retry) if retry.isdigit() else None
            raise ServiceTradeRateLimited(API, 429, path, _detail(response), reset)
        raise FAMILY.for_status(response.status_code, path, _detail(response))


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def _detail(response: httpx.Response) -> str:
    """``messages.error`` and ``messages.validation`` of the envelope, else the reason phrase."""
    body = json_body(response)
    messages = body.get("messages") if isinstance(body, dict) else None
    if isinstance(messages, dict):
        parts = [str(e) for e in messages.get("error") or []]
        validation = messages.get("validation") or {}
        if isinstance(validation, dict):
            parts += [f"{field}: {'; '.join(map(str, errs))}" for field, errs in validation.items()]
        if parts:
            return "; ".join(parts)
    return response.reason_phrase or ""
