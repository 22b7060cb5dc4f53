"""ServiceTrade client: session or OAuth2 login, entity reads by uri, lists, job actions, attachments and webhooks.

Authentication, two ways:
- ``session`` (seed 002, "Authentication"): ``POST /auth`` with username and password gives ``authToken``,
  sent back as ``Cookie: PHPSESSID=<authToken>``; ``DELETE /auth`` closes it ("session closed"). The doc
  allows 100 open sessions per user (soft) and 200 (hard), so ``close()`` ends the session it opened.
- ``oauth2``: not in the seed. The official SDK (servicetrade/servicetrade-nodejs, ``index.js``) sends
  ``Authorization: Bearer <token>`` (``setBearerToken``) and logs in again when an answer is 401
  (``axios-auth-refresh``). The SDK takes the token from its caller; where it comes from is the
  RFC 6749 token endpoint ``POST /oauth2/token`` with a ``password`` or ``client_credentials`` grant.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, cast, overload
from urllib.parse import quote, urlsplit

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
# Seed 002, each list's Query Params: `limit` "default 2000, maximum 2000" (job, appointment, invoice),
# "default 10, maximum 5000" (location). Where a list documents no limit, none is assumed.
DEFAULT_LIMITS = {"job": 2000, "appointment": 2000, "invoice": 2000, "location": 10}
MAX_LIMITS = {"job": 2000, "appointment": 2000, "invoice": 2000, "location": 5000}
# Seed 002, "Attachment Purpose" and "Entity Types" constants used by uploads.
ENTITY_TYPES = {"job": 3, "appointment": 16, "location": 11, "quote": 9, "deficiency": 10, "servicerequest": 18}
log = logging.getLogger("workers.connectors.servicetrade")

PageMark = dict[str, Any]  # {"windows": [[after, before], ...], "page": n}: where a windowed listing stands
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


class ServiceTradeCapped(ServiceTradeError):
    """A one-second window still answered ``limit`` rows with no further page: rows may be missing."""


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
        auth: Literal["session", "oauth2"] = "session",
        grant: Literal["password", "client_credentials"] = "password",
        client_id: str = "",
        client_secret: SecretStr | None = None,
    ) -> None:
        if auth not in ("session", "oauth2"):
            raise ValueError(f"ServiceTrade auth must be 'session' or 'oauth2', not {auth!r}")
        if auth == "oauth2" and grant == "client_credentials" and not (client_id and client_secret):
            raise ValueError("the client_credentials grant needs a client id and a client secret")
        self.base_url, self.username = base_url.rstrip("/"), username
        self.auth, self.grant, self.client_id = auth, grant, client_id
        self._password, self._client_secret = password, client_secret or SecretStr("")
        self._http = open_client(
            self.base_url, transport=transport, timeout=timeout, headers={"Accept": "application/json"}
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None
        self._token_as_json = False  # the token request's body: a form (RFC 6749) until a server wants JSON (the SDK's)

    def __repr__(self) -> str:
        return f"ServiceTradeClient({self.base_url!r}, username={self.username!r}, auth={self.auth!r})"

    def close(self) -> None:
        """Close the session this client opened, then the connection pool.

        Seed 002, "Authentication": ``DELETE /auth`` answers 204 "session closed"; sessions above 100 per
        user are a soft limit, above 200 the oldest are cleaned. A bearer token has nothing to close.
        """
        with self._lock:
            token, self._token = self._token, None
        if token is not None and self.auth == "session":
            try:
                self._send("DELETE", "/auth", token)
            except ServiceTradeError as exc:  # closing is a courtesy: the server expires sessions anyway
                log.info("servicetrade session not closed: %s", exc)
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
        """One record by type and id (`GET /job/35769`), the record of seed 002's "Returned Elements" for that
        resource; see `entity_path`. `UnreadableEntity` for a type without a documented read by id,
        `ServiceTradeNotFound` for a record that is gone."""
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

    def find_by_external_id(self, entity_type: str, system: str, value: str) -> records.ServiceTradeEntity:
        """The record a system's external id names, or `ServiceTradeNotFound`.

        "ExternalId": `GET /externalid/location/system_name/S1-NewId123` returns the location; the
        `?value=` form (`/externalid/[entityType]/[externalSystem]/?value=[value]`) is used, so a value
        with a slash stays one path segment.
        """
        return self.get(f"/externalid/{entity_type}/{quote(system, safe='')}/", value=value)

    def iter_list(self, entity_type: str, **filters: Any) -> Iterator[records.ServiceTradeEntity]:
        """Every record of a list, page after page, every pass (see ``passes``).

        Seed 002, "Conventions and Units" > "Pagination": "The response "data" element for a list resource
        will contain a "totalPages" count and a "page" number. Page numbers start at 1."
        """
        for extra in self.passes(entity_type, filters):
            yield from self._pages(entity_type, {**filters, **extra})

    @staticmethod
    def passes(entity_type: str, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The queries that together list every record the caller's filters allow.

        Jobs without ``status`` (and without ``number``) are read as ``status=all`` and then
        ``status=canceled``: the API would otherwise default to ``scheduled``, and ``all`` leaves
        canceled jobs out. Appointments default to every status (the API drops ``unscheduled``);
        locations ask for the maximum ``limit`` instead of the default 10.
        Seed 002: "Job" and "Appointment" Query Params (``status``), "Location" (``limit``).
        """
        if entity_type == "job" and "status" not in filters and "number" not in filters:
            return [{"status": "all"}, {"status": "canceled"}]
        if entity_type == "appointment" and "status" not in filters:
            return [{"status": APPOINTMENT_STATUSES}]
        if entity_type == "location" and "limit" not in filters:
            return [{"limit": MAX_LIMITS["location"]}]
        return [{}]

    def iter_window(
        self,
        entity_type: str,
        after: int,
        before: int,
        *,
        mark: PageMark | None = None,
        on_page: Callable[[PageMark], None] | None = None,
        **filters: Any,
    ) -> Iterator[records.ServiceTradeEntity]:
        """Records updated in ``[after, before]`` (both inclusive), every page, splitting capped windows.

        Seed 002, "Pagination": list ``data`` holds ``totalPages`` and ``page`` (from 1); "different resources
        may have different numbers of results per page". Each list's ``limit``: "limit the jobs returned
        (default 2000, maximum 2000)". Two readings: ``limit`` is the page size (then ``totalPages`` says
        there is more), or it caps the answer (then the rows past it are simply not returned). A single
        page (or one without paging fields) holding exactly ``limit`` rows is therefore treated as capped
        under the second reading, dropped, and its window read again as two halves; a one-second window that is still
        capped raises ``ServiceTradeCapped``. ``updatedAfter``/``updatedBefore`` are "on or after"/"on or before".

        ``mark`` resumes a listing where ``on_page`` last reported it: the windows still to read and the
        page to start at (the last complete page is read again, for rows that moved up meanwhile).
        """
        windows = [list(w) for w in (mark or {}).get("windows") or [[after, before]]]
        page = int((mark or {}).get("page") or 1)
        limit = int(filters.get("limit") or DEFAULT_LIMITS.get(entity_type, 0))
        while windows:
            low, high = windows[0]
            query = {**filters, "updatedAfter": low, "updatedBefore": high}
            rows, total = self._page(entity_type, query, page)
            last = total is None or page >= total
            # More than one page means `limit` is the page size here; one full page (or no paging fields at
            # all) may be an answer cut at `limit`.
            if page == 1 and (total or 1) == 1 and limit and len(rows) >= limit:
                if high <= low:
                    raise ServiceTradeCapped(API, 200, f"/{entity_type}", f"{len(rows)} rows in one second at {low}")
                middle = (low + high) // 2
                log.info(
                    "servicetrade %s: %d rows in [%d, %d] may be capped; splitting", entity_type, len(rows), low, high
                )
                windows[0:1] = [[low, middle], [middle + 1, high]]
                page = 1
                continue
            yield from rows
            if last:
                windows.pop(0)
                page = 1
            else:
                page += 1
            if on_page is not None:
                on_page({"windows": [list(w) for w in windows], "page": max(1, page - 1) if page > 1 else 1})

    def _page(
        self, entity_type: str, filters: Mapping[str, Any], page: int, key: str | None = None
    ) -> tuple[list[records.ServiceTradeEntity], int | None]:
        """One page: its rows and ``totalPages`` (None when the answer carries no paging fields).

        `key` names the array when the path is not a plain list (``job/41/comment`` answers ``comments``).
        Seed 002, "Pagination": a client "can send a "page=n" parameter with a GET request", and "different
        resources may have different numbers of results per page", so the page size is never assumed.
        """
        data = _dict(self._call("GET", f"/{entity_type}", params={**filters, "page": page}))
        key = key or LIST_KEYS.get(entity_type)
        rows = data.get(key) if key else None
        if rows is None:
            rows = next((v for v in data.values() if isinstance(v, list)), [])
        total = data.get("totalPages")
        return cast(list[records.ServiceTradeEntity], rows), (int(total) if total is not None else None)

    def _pages(
        self, entity_type: str, filters: Mapping[str, Any], key: str | None = None
    ) -> Iterator[records.ServiceTradeEntity]:
        """Seed 002, "Pagination": ``data`` holds ``totalPages``, ``page`` (from 1) and a named array."""
        page = 1
        while True:
            rows, total = self._page(entity_type, filters, page, key)
            yield from rows
            if not rows or page >= (total or 1):
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
        """Seed 002, "Appointment": ``PUT /appointment/{id}`` with POST/PUT Parameters (``status``, ``techIds``,
        ``windowStart``, ``windowEnd``, ``released``...); ``status`` cannot be set to ``unscheduled``."""
        return _dict(self._call("PUT", f"/appointment/{appointment_id}", json=dict(fields)))

    def complete_appointment_service(
        self, appointment_id: int | str, service_request_id: int | str, completion: str = "done"
    ) -> dict[str, Any]:
        """Seed 002, "Appointment": ``PUT /appointment/123/servicerequest/456`` with ``completion``
        (``pending``, ``not_done``, ``done`` or ``invalid``)."""
        path = f"/appointment/{appointment_id}/servicerequest/{service_request_id}"
        return _dict(self._call("PUT", path, json={"completion": completion}))

    def create_job(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Seed 002, "Job": ``POST /job`` with ``locationId`` (POST only), ``vendorId``, ``customerId``, ``type``,
        ``status``, ``description``, ``serviceRequestIds[]``...; ``number`` is generated, not settable."""
        return _dict(self._call("POST", "/job", json=dict(fields)))

    def update_service_request(self, service_request_id: int | str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Seed 002, "Service Request": ``PUT /servicerequest/{id}``; ``status`` one of open, in_progress, closed,
        pending, canceled, void (the close-out is ``status: closed``)."""
        return _dict(self._call("PUT", f"/servicerequest/{service_request_id}", json=dict(fields)))

    def upload_attachment(
        self,
        entity_type: str,
        entity_id: int | str,
        purpose_id: int,
        file_name: str,
        content: bytes,
        content_type: str = "application/octet-stream",
        description: str | None = None,
    ) -> records.Attachment:
        """Attach a file to a job, an appointment or another entity.

        Seed 002, "Attachment": uploads are ``multipart/form-data`` with the file in ``uploadedFile``, and
        ``purposeId``, ``entityId``, ``entityType`` (required) and ``description`` as form fields ("Upload a
        file"); ``entityType`` is the "Entity Types" constant (3 Job, 16 Appointment), ``purposeId`` the
        "Attachment Purpose" one (1 Job Paperwork, 3 Job Quality Control Picture, 7 Generic Attachment).
        """
        type_id = ENTITY_TYPES.get(entity_type)
        if type_id is None:
            raise ValueError(f"attachments go to one of {', '.join(ENTITY_TYPES)}, not {entity_type!r}")
        form = {"purposeId": str(purpose_id), "entityType": str(type_id), "entityId": str(entity_id)}
        if description:
            form["description"] = description
        files = {"uploadedFile": (file_name, content, content_type)}
        return cast(records.Attachment, _dict(self._call("POST", "/attachment", data=form, files=files)))

    def list_attachments(self, entity_type: str, entity_id: int | str, **filters: Any) -> list[records.Attachment]:
        """Seed 002, "Attachment": ``GET /attachment`` with ``entityId`` and ``entityType`` (both required,
        else 405), every page; the read-back a retried upload can look in."""
        query = {**filters, "entityId": entity_id, "entityType": ENTITY_TYPES.get(entity_type, entity_type)}
        return cast(list[records.Attachment], list(self._pages("attachment", query)))

    def clock_events(self, **filters: Any) -> list[dict[str, Any]]:
        """Seed 002, "Clockin/Clockout": ``GET /clock`` needs a filter ("403 must provide at least one filter");
        events carry ``eventTime`` only (no ``updated``). ``paired=false`` asks for the flat ``events`` array."""
        if not filters:
            raise ValueError("GET /clock needs at least one filter (userId, startTime, jobId...)")
        query = {"paired": "false", **filters}
        data = _dict(self._call("GET", "/clock", params=query))
        events = data.get("events")
        if events is None:  # paired answers: matched pairs, then the unpaired clock-ins
            events = [
                e for pair in data.get("pairedEvents") or [] for e in (pair if isinstance(pair, list) else [pair])
            ]
            events += list(data.get("unpairedEvents") or [])
        return [dict(e) for e in events if isinstance(e, dict)]

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

    def find_job(self, fields: Mapping[str, Any], *, created_after: float) -> records.Job | None:
        """A job at the location a create sent, created at or after `created_after`, that shows the ``type``
        and ``description`` it sent; None when there is none.

        Seed 002, "Job" Query Params: ``locationId`` ("comma-separated list of ids of the location of the
        job"), ``createdAfter`` ("matches records created on or after") and ``status`` ("defaults to
        'scheduled' if not supplied"): a new job is ``new`` unless the create said otherwise, so the status
        sent (or ``new``) is asked for, never the default.
        """
        if fields.get("locationId") is None:
            return None  # an attempt whose payload names no location made no job
        params = {
            "locationId": fields["locationId"],
            "createdAfter": int(created_after),
            "status": str(fields.get("status") or "new"),
        }
        for job in cast(Iterator[records.Job], self._pages("job", params)):
            shown: dict[str, Any] = dict(job)
            same = all(shown.get(k) == fields[k] for k in ("type", "description") if fields.get(k) is not None)
            if int(job.get("created") or 0) >= created_after and same:
                return job
        return None

    def find_attachment(
        self, entity_type: str, entity_id: int | str, file_name: str, *, created_after: float
    ) -> records.Attachment | None:
        """The attachment named `file_name` on the record, created at or after `created_after`, or None.

        Seed 002, "Attachment": ``GET /attachment`` with ``entityId`` and ``entityType``; Returned Elements:
        ``fileName`` and ``created``.
        """
        for attachment in self.list_attachments(entity_type, entity_id):
            if attachment.get("fileName") == file_name and int(attachment.get("created") or 0) >= created_after:
                return attachment
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
        """The current token; logs in when there is none, it expired, or ``stale`` was just refused."""
        with self._lock:
            expired = self._expires_at is not None and time.time() >= self._expires_at
            if self._token is None or self._token == stale or expired:
                self._token = None
                self._token = self._login() if self.auth == "session" else self._oauth_token()
            return self._token

    def _login(self) -> str:
        """Seed 002, "Authentication": ``POST /auth`` ``{username, password}`` -> ``data.authToken``."""
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

    def _oauth_token(self) -> str:
        """A bearer token from ``POST /oauth2/token`` (RFC 6749 4.3 password / 4.4 client_credentials grant).

        Not in the seeds: seed 002 ("Getting Started" > "Requests", "Authentication") documents only the
        ``PHPSESSID`` session cookie, which stays the default. Two readings of the token request exist:
        RFC 6749 3.2 sends a form body, and ServiceTrade's own TypeScript SDK sends the same fields as
        JSON. The form goes first; an answer that is not an RFC 6749 5.2 error (a 415, or a 400 without
        ``error``) means the server did not read it, and the JSON body is sent once. Whichever worked is
        sent first from then on.
        """
        if self.grant == "client_credentials":
            form = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret.get_secret_value(),
            }
        else:
            form = {"grant_type": "password", "username": self.username, "password": self._password.get_secret_value()}
            if self.client_id:
                form["client_id"] = self.client_id
        first, second = ("json", "data") if self._token_as_json else ("data", "json")
        response = self._send("POST", "/oauth2/token", None, **{first: form})
        if response.status_code in (400, 415) and not _oauth_error(response):
            retried = self._send("POST", "/oauth2/token", None, **{second: form})
            if retried.is_success:
                self._token_as_json = second == "json"
            response = retried
        path = response.request.url.path
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise ServiceTradeAuthFailed(API, response.status_code, path, _oauth_detail(response))
        body = json_body(response)
        if not response.is_success or not isinstance(body, dict):
            self._decode(response)  # 5xx / 429 / not JSON: the usual errors
            raise ServiceTradeUnavailable(API, response.status_code, path, "token answer is not JSON")
        inner = body.get("data")
        data: dict[str, Any] = inner if isinstance(inner, dict) else body
        token = data.get("access_token")
        if not token:
            raise ServiceTradeAuthFailed(API, response.status_code, path, "no access_token in the response")
        expires = data.get("expires_in")
        # Renew a little before the stated expiry, so a call in flight does not carry a dead token.
        self._expires_at = time.time() + max(0.0, float(expires) - 30) if isinstance(expires, int | float) else None
        return str(token)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        token = self._session()
        response = self._send(method, path, token, **kwargs)
        if response.status_code == 401:
            # As the SDK does (axios-auth-refresh): one new login, then the same request once more.
            response = self._send(method, path, self._session(stale=token), **kwargs)
        return self._decode(response)

    def _send(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers: dict[str, str] | None = None
        if token and self.auth == "oauth2":
            headers = {"Authorization": f"Bearer {token}"}
        elif token:
            headers = {"Cookie": f"PHPSESSID={token}"}
        secrets = (
            self._password.get_secret_value(),
            self._client_secret.get_secret_value(),
            *([token] if token else []),
        )
        return send(self._http, FAMILY, method, path, secrets=tuple(s for s in secrets if s), headers=headers, **kwargs)

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


def _oauth_error(response: httpx.Response) -> dict[str, Any] | None:
    """The RFC 6749 5.2 error answer (``error``, ``error_description``), if that is what the body is."""
    body = json_body(response)
    if isinstance(body, dict) and body.get("error") and not isinstance(body.get("error"), dict | list):
        return body
    return None


def _oauth_detail(response: httpx.Response) -> str:
    """RFC 6749 5.2 error answers (``error``, ``error_description``), else the envelope's messages."""
    body = _oauth_error(response)
    if body is not None:
        return ": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))
    return _detail(response)


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
