"""Synchroteam v3 client: upserts, lists, job lifecycle, reports, photos, parts, lookups and rate-limit headers.

Time zones (seed 000, "List customers": ``changedSince`` is "modified after the UTC date+time"; "The activity
object": ``dateStart``/``dateEnd`` are "Local time"): the doc names UTC for ``changedSince`` only. Every other
date (schedule, ``actualStart``, ``dateModified``, activity dates) is read and written in the account's zone,
``FIELDRELAY_SYNCHROTEAM_TIMEZONE`` (IANA, default UTC).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, overload
from zoneinfo import ZoneInfo

import httpx
from pydantic import SecretStr

from workers.connectors import synchroteam_records as records
from workers.connectors.errors import (
    AuthFailed,
    ConnectorError,
    ErrorFamily,
    NotFound,
    QuotaExceeded,
    RateInfo,
    RateLimited,
    Rejected,
    Unavailable,
)
from workers.connectors.transport import json_body, open_client, send

API = "synchroteam"
JOB_DATE_FORMAT = "%d/%m/%Y %H:%M:%S"
MAX_PAGE_SIZE = 100


class SynchroteamError(ConnectorError):
    """Any failure talking to Synchroteam."""


class SynchroteamUnavailable(SynchroteamError, Unavailable):
    """Network error, timeout or 5xx: safe to retry."""


class SynchroteamRateLimited(SynchroteamUnavailable, RateLimited):
    """Over the 120 requests/minute limit; ``reset_at`` comes from ``X-RateLimit-Reset``."""


class SynchroteamQuotaExceeded(SynchroteamRateLimited, QuotaExceeded):
    """Daily quota used up; it "resets at UTC midnight" (fieldrelay.targets holds when)."""


class SynchroteamRejected(SynchroteamError, Rejected):
    """4xx: the request itself is wrong."""


class SynchroteamNotFound(SynchroteamRejected, NotFound):
    """No such record."""


class SynchroteamAuthFailed(SynchroteamRejected, AuthFailed):
    """Domain or API key wrong: 401 "Unauthorized -- Your API key is wrong" (seed 000, "Errors")."""


class SynchroteamForbidden(SynchroteamRejected):
    """403 "Forbidden -- The resource you are trying to access is Forbidden" (seed 000, "Errors").

    The key is fine; this one resource is not open to it. Not an auth failure: other calls still work.
    """


FAMILY = ErrorFamily(
    API,
    SynchroteamUnavailable,
    SynchroteamRateLimited,
    SynchroteamRejected,
    SynchroteamNotFound,
    SynchroteamAuthFailed,
)


# Lists whose `changedSince` is documented as "modified after" (exclusive); job/list says "on or after".
EXCLUSIVE_SINCE = {"customer", "site", "equipment"}
LOOKUPS = {"jobtype", "activityType", "jobReportTemplate", "jobschedulingwindow", "block", "customfield"}
CUSTOM_FIELD_TYPES = ("job", "customer", "site", "equipment", "user")


def zone(name: str | ZoneInfo | None) -> ZoneInfo:
    """The account's zone: an IANA name (``Europe/Paris``), a ZoneInfo, or None for UTC."""
    return name if isinstance(name, ZoneInfo) else ZoneInfo(name or "UTC")


def parse_job_date(value: str | None, tz: str | ZoneInfo | None = None) -> datetime | None:
    """Parse the job object's ``dd/MM/yyyy HH:mm:ss`` as a wall time in the account's zone (aware).

    Seed 000, "The job object": ``dateCreated``/``dateModified`` and the schedule dates carry no zone; only
    ``changedSince`` is marked UTC, so these are local to the account (``FIELDRELAY_SYNCHROTEAM_TIMEZONE``).
    """
    if not value:
        return None
    return datetime.strptime(value, JOB_DATE_FORMAT).replace(tzinfo=zone(tz))


def format_date(value: datetime | str, fmt: str, tz: str | ZoneInfo | None = None) -> str:
    """A datetime in ``fmt`` as the account's wall time; naive datetimes and strings are taken as already local."""
    if isinstance(value, str):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(zone(tz))
    return value.strftime(fmt)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SynchroteamClient:
    """Synchroteam v3 over HTTPS with Basic ``domain:api-key``.

    >>> st = SynchroteamClient("https://ws.synchroteam.com", "acme", SecretStr("key"))
    >>> job = st.upsert_job({"myId": "st-34872", "customer": {"myId": "st-39"}})  # doctest: +SKIP
    >>> st.last_rate.remaining  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        domain: str,
        api_key: SecretStr,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        timezone: str | ZoneInfo = "UTC",
    ) -> None:
        self.base_url, self.domain = base_url.rstrip("/"), domain
        self.zone = zone(timezone)
        self._secrets = (api_key.get_secret_value(),)
        self._http = open_client(
            self.base_url, transport=transport, timeout=timeout, headers={"Accept": "application/json"}
        )
        self._http.auth = httpx.BasicAuth(domain, api_key.get_secret_value())
        self.last_rate: RateInfo | None = None

    def __repr__(self) -> str:
        return f"SynchroteamClient({self.base_url!r}, domain={self.domain!r})"

    def close(self) -> None:
        self._http.close()

    def send(self, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update (matched on ``id``/``myId``, ``num`` for jobs); the full record back."""
        return self._dict(self._call("POST", f"/api/v3/{kind}/send", json=dict(payload)))

    def upsert_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        return self.send("job", job)

    def upsert_customer(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        return self.send("customer", customer)

    def upsert_site(self, site: Mapping[str, Any]) -> dict[str, Any]:
        return self.send("site", site)

    def upsert_equipment(self, equipment: Mapping[str, Any]) -> dict[str, Any]:
        return self.send("equipment", equipment)

    def upsert_activity(self, activity: Mapping[str, Any]) -> dict[str, Any]:
        return self.send("activity", activity)

    @overload
    def details(self, kind: Literal["job"], **key: str | int) -> records.Job: ...
    @overload
    def details(self, kind: Literal["customer"], **key: str | int) -> records.Customer: ...
    @overload
    def details(self, kind: Literal["site"], **key: str | int) -> records.Site: ...
    @overload
    def details(self, kind: Literal["equipment"], **key: str | int) -> records.Equipment: ...
    @overload
    def details(self, kind: Literal["activity"], **key: str | int) -> records.Activity: ...
    @overload
    def details(self, kind: str, **key: str | int) -> records.SynchroteamRecord: ...
    def details(self, kind: str, **key: str | int) -> records.SynchroteamRecord:
        """One record by ``id``, ``myId`` or ``num`` (``name``/``email`` where documented).

        Seed 000, "Retrieve a job" (and a customer, site, equipment, activity): ``GET /api/v3/<kind>/details``
        answers the object itself, or 404 for a missing record.
        """
        return cast(
            records.SynchroteamRecord, self._dict(self._call("GET", f"/api/v3/{kind}/details", params=_key(key)))
        )

    def delete(self, kind: str, **key: str | int) -> Any:
        return self._call("DELETE", f"/api/v3/{kind}/delete", params=_key(key))

    def iter_list(
        self,
        kind: str,
        changed_since: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
        *,
        start_page: int = 1,
        on_page: Callable[[int], None] | None = None,
        **filters: Any,
    ) -> Iterator[records.SynchroteamRecord]:
        """Every record of ``kind/list``, page after page (from ``start_page``); ``changed_since`` is sent as UTC.

        Seed 000, "Pagination": ``page`` from 1, ``pageSize`` up to 100, rows in ``data``. "List customers"
        and "List sites": ``changedSince`` returns records "modified after the UTC date+time" (exclusive);
        "List jobs": "modification checked on or after" (inclusive). For the exclusive lists the bound is sent
        one second early, so a record changed at exactly ``changed_since`` is not lost under either reading.
        ``on_page(page)`` is called after each complete page (a resumable poll keeps it).
        """
        params = dict(filters, pageSize=max(1, min(page_size, MAX_PAGE_SIZE)))
        if changed_since is not None:
            bound = _utc(changed_since)
            if kind in EXCLUSIVE_SINCE:
                bound -= timedelta(seconds=1)
            # [INCONS] the customer curl sample says changedFrom; every parameter table says changedSince.
            params["changedSince"] = bound.strftime("%Y-%m-%d %H:%M:%S")
        page = start_page
        while True:
            body = self._call("GET", f"/api/v3/{kind}/list", params=dict(params, page=page))
            rows = (body.get("data") or []) if isinstance(body, dict) else (body or [])
            yield from cast(list[records.SynchroteamRecord], rows)
            if on_page is not None:
                on_page(page)
            total = body.get("recordsTotal") if isinstance(body, dict) else None
            seen = (page - 1) * params["pageSize"] + len(rows)
            if not rows or len(rows) < params["pageSize"] or (total is not None and seen >= total):
                return
            page += 1

    def find_activity(self, fields: Mapping[str, Any]) -> records.Activity | None:
        """The activity that shows every value an ``activity/send`` create sent (type, dates, note, user,
        team), or None. Activities have no ``myId`` and no creation time: a crashed create is recognised
        by what it sent, so an identical activity someone else entered is taken for it.

        Seed 000, "List activities" (``GET /api/v3/activity/list``): ``startDate`` and ``endDate``
        (yyyy-mm-dd hh:mm, each requires the other), ``activityType_name``, ``user_id``, ``user_login`` and
        ``team_id``, "Multiple filters are cumulative"; "The activity object": ``activityType``, ``note``,
        ``dateStart``, ``dateEnd``, ``user``, ``team``.
        """
        if not fields.get("dateStart") or not fields.get("dateEnd") or not fields.get("activityType"):
            return None  # not what a create sends: nothing to recognise it by
        filters: dict[str, Any] = {"startDate": fields["dateStart"], "endDate": fields["dateEnd"]}
        kind, user, team = fields.get("activityType") or {}, fields.get("user") or {}, fields.get("team") or {}
        if kind.get("name"):
            filters["activityType_name"] = kind["name"]
        if user.get("id") is not None:
            filters["user_id"] = user["id"]
        elif user.get("login"):
            filters["user_login"] = user["login"]
        if team.get("id") is not None:
            filters["team_id"] = team["id"]
        for row in self.iter_list("activity", **{k: v for k, v in filters.items() if v is not None}):
            if _same_activity(cast(records.Activity, row), fields):
                return cast(records.Activity, row)
        return None

    def schedule_job(
        self,
        key: Mapping[str, str | int],
        start: datetime | str,
        end: datetime | str,
        technician: Mapping[str, Any] | None = None,
        other_technicians: list[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Seed 000, "Schedule a job": ``scheduledStart``/``scheduledEnd`` as ``yyyy-mm-dd HH:mm:ss``, no zone
        given, so aware datetimes are sent as the account's wall time."""
        body: dict[str, Any] = {
            "scheduledStart": format_date(start, "%Y-%m-%d %H:%M:%S", self.zone),
            "scheduledEnd": format_date(end, "%Y-%m-%d %H:%M:%S", self.zone),
        }
        if technician is not None:
            body["technician"] = dict(technician)
        if other_technicians is not None:
            body["otherTechnicians"] = [dict(t) for t in other_technicians]
        return self._lifecycle("schedule", key, body)

    def unschedule_job(self, key: Mapping[str, str | int]) -> dict[str, Any]:
        return self._lifecycle("unschedule", key, {})

    def cancel_job(self, key: Mapping[str, str | int]) -> dict[str, Any]:
        return self._lifecycle("cancel", key, {})

    def validate_job(self, key: Mapping[str, str | int]) -> dict[str, Any]:
        return self._lifecycle("validate", key, {})

    def confirm_job(self, key: Mapping[str, str | int]) -> dict[str, Any]:
        return self._lifecycle("confirm", key, {})

    def complete_job(
        self, key: Mapping[str, str | int], actual_start: datetime | str, actual_end: datetime | str
    ) -> dict[str, Any]:
        """Seed 000, "Complete a job": ``actualStart``/``actualEnd`` as ``yyyy-mm-dd hh:mm`` (account wall time)."""
        body = {
            "actualStart": format_date(actual_start, "%Y-%m-%d %H:%M", self.zone),
            "actualEnd": format_date(actual_end, "%Y-%m-%d %H:%M", self.zone),
        }
        return self._lifecycle("complete", key, body)

    def job_report(self, **key: str | int) -> list[records.ReportBlock]:
        """The technician's report: a list of blocks, each with its items.

        Seed 000, "Retrieve a job report": ``GET /api/v3/jobReport/details?{id|num|myId}=`` answers the
        list of blocks ("The job report object"); "If the block is not found a 404 Error is returned".
        [INCONS] the field table describes an object (``id``, ``name``, ``blocks``) while both samples are a
        bare list of blocks, and the second block names itself ``blockName``: both shapes are read.
        """
        body = self._call("GET", "/api/v3/jobReport/details", params=_key(key))
        if isinstance(body, dict):
            body = body.get("blocks") or []
        return cast(list[records.ReportBlock], [b for b in body or [] if isinstance(b, dict)])

    def job_photos(self, *, image_data: bool = False, **key: str | int) -> records.JobPhotos:
        """The job's photos: ``url``, ``fileName``, ``iteration``, ``comment`` and optionally ``imageData``.

        Seed 000, "Retrieve job photos": ``GET /v3/job/photos?{num|id|myId}=&getImageData=true|false``
        ("if set to true, image data will be provided in base64 format"; default false). [INCONS] the
        heading says ``/v3/``, the resource sections ``/api/v3/``: ``/api/v3/`` like every other call.
        """
        params = {**_key(key), "getImageData": "true" if image_data else "false"}
        return cast(records.JobPhotos, self._dict(self._call("GET", "/api/v3/job/photos", params=params)))

    def send_parts(self, key: Mapping[str, str | int], parts: list[Mapping[str, Any]]) -> dict[str, Any]:
        """Add parts to a job.

        Seed 000, "Send job parts": ``POST /api/v3/job/parts/send`` with the job's ``id``/``num``/``myId`` and
        ``parts[{id|reference, quantity, serialNumbers}]`` ("For serialized parts, provide a list of serial
        numbers and omit the quantity"). [INCONS] the answer's ``id`` is a GUID, not the job's id.
        """
        return self._dict(self._call("POST", "/api/v3/job/parts/send", json={**_key(key), "parts": list(parts)}))

    def lookup(self, kind: str, **filters: Any) -> list[dict[str, Any]]:
        """A read-only configuration list, every page: ``jobtype``, ``activityType``, ``customfield``...

        Seed 000, "List Job Types" (``GET /api/v3/jobtype/list``), "List activity types"
        (``GET /api/v3/activityType/list``), "List Custom Fields by object type" (``GET /api/v3/customfield/list``,
        ``type`` "job, customer, site, equipment or user (mandatory)"); the "Pagination" envelope.
        """
        if kind not in LOOKUPS:
            raise ValueError(f"unknown Synchroteam lookup {kind!r}; known: {', '.join(sorted(LOOKUPS))}")
        if kind == "customfield" and filters.get("type") not in CUSTOM_FIELD_TYPES:
            raise ValueError(f"customfield/list needs type= one of {', '.join(CUSTOM_FIELD_TYPES)}")
        return [dict(r) for r in self.iter_list(kind, **filters)]

    def job_types(self) -> list[dict[str, Any]]:
        return self.lookup("jobtype")

    def activity_types(self) -> list[dict[str, Any]]:
        return self.lookup("activityType")

    def custom_fields(self, object_type: str) -> list[dict[str, Any]]:
        return self.lookup("customfield", type=object_type)

    def _lifecycle(self, op: str, key: Mapping[str, str | int], body: dict[str, Any]) -> dict[str, Any]:
        # [INCONS] the headings say /v3/job/<op>, every curl sample says /api/v3/job/<op>.
        result = self._call("POST", f"/api/v3/job/{op}", json={**_key(key), **body})
        if isinstance(result, list):
            return dict(result[0]) if result else {}
        return self._dict(result)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = send(self._http, FAMILY, method, path, secrets=self._secrets, **kwargs)
        rate = self.last_rate = RateInfo.from_headers(response.headers)
        body = json_body(response)
        if response.is_success:
            if body is None and response.content:
                raise SynchroteamUnavailable(API, response.status_code, path, "response is not JSON", rate)
            return body
        detail = _detail(body, response)
        if response.status_code == 429:
            if rate.quota_remaining == 0 or "quota" in detail.lower():
                raise SynchroteamQuotaExceeded(API, 429, path, detail, None, rate)
            raise SynchroteamRateLimited(API, 429, path, detail, rate.reset_at, rate)
        if response.status_code == 403:
            # Seed 000, "Errors": 403 "The resource you are trying to access is Forbidden"; 401 is the bad key.
            raise SynchroteamForbidden(API, 403, path, detail, rate)
        raise FAMILY.for_status(response.status_code, path, detail, rate)

    @staticmethod
    def _dict(value: Any) -> dict[str, Any]:
        if isinstance(value, list):  # some writes answer with a one-element list
            value = value[0] if value else {}
        return dict(value) if isinstance(value, dict) else {}


def _same_activity(row: records.Activity, fields: Mapping[str, Any]) -> bool:
    """Whether a listed activity shows what a create sent: dates and note as sent, refs by id, name or login."""
    for name in ("dateStart", "dateEnd", "note"):
        if name in fields and fields[name] is not None and str(row.get(name) or "") != str(fields[name]):
            return False
    shown: dict[str, Any] = dict(row)
    for name in ("activityType", "user", "team"):
        sent = fields.get(name)
        if not sent:
            continue
        ref = shown.get(name) or {}
        if any(
            ref.get(k) is not None and str(ref.get(k)) != str(v)
            for k, v in sent.items()
            if k in ("id", "name", "login")
        ):
            return False
        if not any(str(ref.get(k)) == str(v) for k, v in sent.items() if k in ("id", "name", "login")):
            return False
    return True


def _key(key: Mapping[str, str | int]) -> dict[str, str | int]:
    if not key or any(v is None or v == "" for v in key.values()):
        raise ValueError(f"a record key (id, myId or num) is required, got {dict(key)!r}")
    return dict(key)


def _detail(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "message") if body.get(k)]
        if parts:
            return ": ".join(parts)
    return response.reason_phrase or ""
