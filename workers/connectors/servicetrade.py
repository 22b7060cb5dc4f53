"""ServiceTrade client: session login, entity reads by uri, lists, job actions and webhook CRUD."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, cast, overload
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from workers.connectors import servicetrade_records as records
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

    def get(self, uri_or_path: str, **params: Any) -> records.ServiceTradeEntity:
        """The ``data`` of ``GET`` on an entity uri (absolute or not) or an API path.

        Seed 002, "Getting Started": the record is in ``data``, and records link each other by absolute
        ``uri``. Typed as the entity record the worker reads through it; a list path answers ``data``
        with its named array instead ("Pagination").
        """
        return cast(records.ServiceTradeEntity, _dict(self._call("GET", api_path(uri_or_path), params=params or None)))

    def heartbeat(self) -> records.Heartbeat:
        """``GET /``: the API version and the server's clock (seed 002, "Heartbeat")."""
        return cast(records.Heartbeat, _dict(self._call("GET", "/")))

    @overload
    def get_entity(self, entity_type: Literal["job"], entity_id: int | str) -> records.Job: ...
    @overload
    def get_entity(self, entity_type: Literal["appointment"], entity_id: int | str) -> records.Appointment: ...
    @overload
    def get_entity(self, entity_type: Literal["location"], entity_id: int | str) -> records.Location: ...
    @overload
    def get_entity(self, entity_type: Literal["company"], entity_id: int | str) -> records.Company: ...
    @overload
    def get_entity(self, entity_type: Literal["contact"], entity_id: int | str) -> records.Contact: ...
    @overload
    def get_entity(self, entity_type: Literal["invoice"], entity_id: int | str) -> records.Invoice: ...
    @overload
    def get_entity(self, entity_type: Literal["quote"], entity_id: int | str) -> records.Quote: ...
    @overload
    def get_entity(self, entity_type: Literal["deficiency"], entity_id: int | str) -> records.Deficiency: ...
    @overload
    def get_entity(self, entity_type: Literal["asset"], entity_id: int | str) -> records.Asset: ...
    @overload
    def get_entity(self, entity_type: Literal["user"], entity_id: int | str) -> records.User: ...
    @overload
    def get_entity(self, entity_type: Literal["attachment"], entity_id: int | str) -> records.Attachment: ...
    @overload
    def get_entity(self, entity_type: Literal["servicerequest"], entity_id: int | str) -> records.ServiceRequest: ...
    @overload
    def get_entity(self, entity_type: str, entity_id: int | str) -> records.ServiceTradeEntity: ...
    def get_entity(self, entity_type: str, entity_id: int | str) -> records.ServiceTradeEntity:
        """``GET /{entity_type}/{id}``: the record of seed 002's "Returned Elements" for that resource."""
        return self.get(f"/{entity_type}/{entity_id}")

    def iter_list(self, entity_type: str, **filters: Any) -> Iterator[records.ServiceTradeEntity]:
        """Every record of a list, page after page.

        Jobs without ``status`` (and without ``number``) yield ``status=all`` and then
        ``status=canceled``: the API would otherwise default to ``scheduled``, and ``all``
        leaves canceled jobs out. Appointments default to every status (the API drops
        ``unscheduled``); locations ask for the maximum ``limit`` instead of the default 10.
        Seed 002: "Job" and "Appointment" Query Params (``status``), "Location" (``limit``).
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

    def _pages(
        self, entity_type: str, filters: Mapping[str, Any], key: str | None = None
    ) -> Iterator[records.ServiceTradeEntity]:
        """Seed 002, "Pagination": ``data`` holds ``totalPages``, ``page`` (from 1) and a named array."""
        page = 1
        while True:
            data = _dict(self._call("GET", f"/{entity_type}", params={**filters, "page": page}))
            key = key or LIST_KEYS.get(entity_type)
            rows = data.get(key) if key else None
            if rows is None:
                rows = next((v for v in data.values() if isinstance(v, list)), [])
            yield from cast(list[records.ServiceTradeEntity], rows)
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

    # Read-backs: after a crash, find what an earlier attempt of a create already made (workers/intents.py).

    def find_job_comment(
        self, job_id: int | str, *, marker: str | None = None, content: str | None = None, created_after: float = 0
    ) -> records.Comment | None:
        """A comment on job `job_id` whose content holds `marker`, or (without one) equals `content` and was
        created at or after `created_after`; None when there is none.

        Seed 002, "Job" Response Codes: ``GET /job/123/comment`` "retrieve list of comments". "Comment": the
        list answers ``totalPages``, ``page`` and ``comments``, each with ``content``, ``created`` (Unix
        seconds) and ``entity``; "Cascaded Comments": a job's list also holds its location's and customer's
        tech and schedule comments, with their own ``entity``, so only the job's own are read.
        """
        for comment in cast(Iterator[records.Comment], self._pages(f"job/{job_id}/comment", {}, key="comments")):
            entity = comment.get("entity") or {}
            if entity and (entity.get("type") != 3 or str(entity.get("id")) != str(job_id)):
                continue
            text = str(comment.get("content") or "")
            if marker is not None and marker in text:
                return comment
            recent = int(comment.get("created") or 0) >= created_after
            if marker is None and content is not None and text.strip() == content.strip() and recent:
                return comment
        return None

    def find_appointment(
        self, job_id: int | str, fields: Mapping[str, Any], *, created_after: float
    ) -> records.Appointment | None:
        """An appointment on job `job_id`, created at or after `created_after`, that agrees with every field
        of `fields` a create sent (``status``, ``windowStart``, ``windowEnd``, ``techIds``, ``released``).

        Seed 002, "Appointment" Query Params: ``jobId``, ``status`` ("defaults to all statuses except
        unscheduled", so every status is asked for) and ``createdAfter`` ("matches records created on or
        after"); Returned Elements: ``windowStart``, ``windowEnd``, ``techs``, ``released``, ``status``.
        """
        params = {"jobId": job_id, "status": APPOINTMENT_STATUSES, "createdAfter": int(created_after)}
        for appointment in cast(Iterator[records.Appointment], self._pages("appointment", params)):
            if int(appointment.get("created") or 0) >= created_after and _same_appointment(appointment, fields):
                return appointment
        return None

    def create_webhook(self, hook_url: str, enabled: bool = True, include_changesets: bool = True) -> records.Webhook:
        """``POST /webhook`` with ``hookUrl`` (required), ``enabled``, ``includeChangesets``: the new webhook
        (seed 002, "Webhook"; it starts ``"confirmed": false``)."""
        body = {"hookUrl": hook_url, "enabled": enabled, "includeChangesets": include_changesets}
        return cast(records.Webhook, _dict(self._call("POST", "/webhook", json=body)))

    def list_webhooks(self) -> list[records.Webhook]:
        """``GET /webhook``: ``data.webhooks`` on every page (seed 002, "Webhook")."""
        return cast(list[records.Webhook], list(self._pages("webhook", {})))

    def update_webhook(
        self, webhook_id: int | str, *, enabled: bool | None = None, include_changesets: bool | None = None
    ) -> records.Webhook:
        """``PUT /webhook/{id}`` with ``enabled`` and/or ``includeChangesets`` (seed 002, "Webhook")."""
        body: dict[str, Any] = {}
        if enabled is not None:
            body["enabled"] = enabled
        if include_changesets is not None:
            body["includeChangesets"] = include_changesets
        return cast(records.Webhook, _dict(self._call("PUT", f"/webhook/{webhook_id}", json=body)))

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


def _same_appointment(appointment: records.Appointment, fields: Mapping[str, Any]) -> bool:
    """Whether `appointment` shows every value a create sent (techs as a set of ids)."""
    shown: dict[str, Any] = dict(appointment)
    for name, sent in fields.items():
        if name == "techIds":
            if {int(t) for t in sent or []} != {int(t["id"]) for t in appointment.get("techs") or [] if "id" in t}:
                return False
        elif (
            name in ("status", "windowStart", "windowEnd", "released") and sent is not None and shown.get(name) != sent
        ):
            return False
    return True


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
