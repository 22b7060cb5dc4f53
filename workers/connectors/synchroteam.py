"""Synchroteam v3 client: upserts, lists, job lifecycle and rate-limit headers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast, overload

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
    """Domain or API key wrong (401/403)."""


FAMILY = ErrorFamily(
    API,
    SynchroteamUnavailable,
    SynchroteamRateLimited,
    SynchroteamRejected,
    SynchroteamNotFound,
    SynchroteamAuthFailed,
)


def parse_job_date(value: str | None) -> datetime | None:
    """Parse the job object's ``dd/MM/yyyy HH:mm:ss`` (zone undocumented, returned naive)."""
    if not value:
        return None
    return datetime.strptime(value, JOB_DATE_FORMAT)


def format_date(value: datetime | str, fmt: str) -> str:
    """A datetime in ``fmt``; preformatted strings pass through untouched."""
    return value if isinstance(value, str) else value.strftime(fmt)


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
    ) -> None:
        self.base_url, self.domain = base_url.rstrip("/"), domain
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
        **filters: Any,
    ) -> Iterator[records.SynchroteamRecord]:
        """Every record of ``kind/list``, page after page; ``changed_since`` is sent as UTC.

        Seed 000, "Pagination": ``page`` from 1, ``pageSize`` up to 100, rows in ``data``; "List customers"
        and the other lists: ``changedSince`` is "modified after the UTC date+time".
        """
        params = dict(filters, pageSize=max(1, min(page_size, MAX_PAGE_SIZE)))
        if changed_since is not None:
            # [INCONS] the customer curl sample says changedFrom; every parameter table says changedSince.
            params["changedSince"] = _utc(changed_since).strftime("%Y-%m-%d %H:%M:%S")
        page = 1
        while True:
            body = self._call("GET", f"/api/v3/{kind}/list", params=dict(params, page=page))
            rows = (body.get("data") or []) if isinstance(body, dict) else (body or [])
            yield from cast(list[records.SynchroteamRecord], rows)
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
        body: dict[str, Any] = {
            "scheduledStart": format_date(start, "%Y-%m-%d %H:%M:%S"),
            "scheduledEnd": format_date(end, "%Y-%m-%d %H:%M:%S"),
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
        body = {
            "actualStart": format_date(actual_start, "%Y-%m-%d %H:%M"),
            "actualEnd": format_date(actual_end, "%Y-%m-%d %H:%M"),
        }
        return self._lifecycle("complete", key, body)

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
            raise SynchroteamAuthFailed(API, 403, path, detail, rate)
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
