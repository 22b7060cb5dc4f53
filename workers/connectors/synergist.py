"""Synergist v3.2 JSON API client: activities, jobs, phases, calendar bookings, pending timesheets, lookups.

Errors (seed 001, "JSON Response" and "Error codes"): a failed call answers ``Success false`` with
``Errormessage``/``Errorcode``; "in case of any error, the Synergist server will return an HTTP 404 error
together with an XML structure" (``<Error ErrorID="404500"><ErrorText>``); 404001-404004 are documented
and "you may also receive an error code within the range of 404000 and 404999". So three forms are read
(404 + XML, 404 + JSON, 200 + ``success: false``) and classified by code and status only. No error text is
documented beyond 404001-404004, so none is matched: "not found" and "stale version" are told apart by
reading the record again, never by the wording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, cast
from urllib.parse import quote, quote_plus

import httpx
from pydantic import SecretStr

from workers.connectors import synergist_records as records
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
from workers.connectors.transport import json_body, open_client, send

API = "synergist"
AUTH_CODES = {404001, 404002, 404003}  # no credentials, invalid credentials, account disabled
NOT_RECOGNISED = 404004  # "request not recognized"
_XML_ERROR = re.compile(r'ErrorID="(\d+)".*?<ErrorText>(.*?)</ErrorText>', re.S | re.I)
OnConflict = Literal["overwrite", "keep_theirs", "fail"]


class SynergistError(ConnectorError):
    """Any failure talking to Synergist; ``detail`` starts with the Synergist error code."""


class SynergistUnavailable(SynergistError, Unavailable):
    """Network error, timeout or 5xx: safe to retry."""


class SynergistRateLimited(SynergistUnavailable, RateLimited):
    """429 (undocumented for Synergist, handled anyway)."""


class SynergistRejected(SynergistError, Rejected):
    """The request was refused (``success: false`` or a 4040xx code)."""


class SynergistNotFound(SynergistRejected, NotFound):
    """No such record, or a wrong server path."""


class SynergistAuthFailed(SynergistRejected, AuthFailed):
    """404001 no credentials, 404002 invalid credentials, 404003 account disabled."""


class SynergistConflict(SynergistRejected):
    """A stale write: the record's version moved since the one we sent (told by reading it again), and the
    ``on_conflict`` policy said fail, or it kept moving on every attempt."""


FAMILY = ErrorFamily(
    API, SynergistUnavailable, SynergistRateLimited, SynergistRejected, SynergistNotFound, SynergistAuthFailed
)


class SynergistClient:
    """Synergist over ``GET /jsonapi/<area>.json`` with credentials in the query string.

    >>> sg = SynergistClient("http://synergist.local", "api", SecretStr("pw"), "1")
    >>> sg.create_activity({"activityActivitytypeCode": "Notes", "activityClientCode": "1/F667"})
    ... # doctest: +SKIP
    {'activityID': 6743, 'activityRecordVersionNumber': 1, ...}
    """

    last_rate: RateInfo | None = None  # this API documents no rate-limit headers

    def __init__(
        self,
        base_url: str,
        user: str,
        password: SecretStr,
        company: str,
        *,
        sha512password: SecretStr | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
        version: str = "3.2",
    ) -> None:
        self.base_url, self.user, self.company, self.version = base_url.rstrip("/"), user, company, version
        self._password, self._sha512 = password, sha512password
        self._http = open_client(
            self.base_url, transport=transport, timeout=timeout, headers={"Accept": "application/json"}
        )

    def __repr__(self) -> str:
        return f"SynergistClient({self.base_url!r}, user={self.user!r}, company={self.company!r})"

    def close(self) -> None:
        self._http.close()

    def create_activity(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Needs ``activityActivitytypeCode`` and ``activityClientCode``; returns id and version."""
        return self.write("activities", "create", fields)

    def update_activity(
        self,
        activity_id: int,
        fields: Mapping[str, Any],
        *,
        version: int | None = None,
        base: Mapping[str, Any] | None = None,
        on_conflict: OnConflict = "keep_theirs",
        attempts: int = 3,
    ) -> dict[str, Any]:
        """Update the given fields only, with optimistic concurrency.

        Seed 001, "Update an activity": ``activityRecordVersionNumber`` "must be passed back when doing an
        update. If the record has been updated by another user in the meantime, the update will fail."
        The failure's text and code are not documented, so a refused write is re-read: a moved version is
        a stale write, anything else is raised as it came.

        On a stale write only ``fields`` are written again, on the fresh version. A field a person changed
        since our last write (``base``: the values we last wrote, from the link store; a field without a
        remembered value cannot be shown to be theirs) follows ``on_conflict``: ``overwrite`` writes ours,
        ``keep_theirs`` leaves theirs and writes the rest, ``fail`` raises ``SynergistConflict``. The answer
        carries ``conflict`` when that happened, so the trace shows it.
        """
        if on_conflict not in ("overwrite", "keep_theirs", "fail"):
            raise ValueError(f"on_conflict must be overwrite, keep_theirs or fail, not {on_conflict!r}")
        pending = dict(fields)
        report: dict[str, Any] | None = None
        if version is None:
            version = int(self.activity(activity_id)["activityRecordVersionNumber"])
        for _ in range(attempts):
            record = {**pending, "activityID": activity_id, "activityRecordVersionNumber": version}
            try:
                result = self.write("activities", "update", record) if pending else {}
            except SynergistRejected as exc:
                if isinstance(exc, AuthFailed):
                    raise
                current = self.activity(activity_id)
                moved = int(current.get("activityRecordVersionNumber") or 0)
                if moved == version:
                    raise  # not a stale version: some other refusal
                # A field is theirs when it differs from what we last wrote to it; without that memory
                # nothing proves a person touched it, and ours is written.
                known = base or {}
                theirs = [k for k in pending if k in known and current.get(k) != known[k]]
                report = {"policy": on_conflict, "their_version": moved, "sent_version": version, "fields": theirs}
                if base is None:
                    report["base"] = "unknown"
                if theirs and on_conflict == "fail":
                    detail = f"activity {activity_id}: fields changed by someone else: {', '.join(theirs)}"
                    raise SynergistConflict(API, exc.status, exc.path, detail) from None
                if on_conflict == "keep_theirs":
                    pending = {k: v for k, v in pending.items() if k not in theirs}
                    report["kept_theirs"] = theirs
                else:
                    report["overwritten"] = theirs
                version = moved
                continue
            out = {"activityID": activity_id, **result}
            out.setdefault("activityRecordVersionNumber", version)
            out["written"] = pending
            if report is not None:
                out["conflict"] = report
            return out
        detail = f"activity {activity_id} changed by another user on each of {attempts} attempts"
        raise SynergistConflict(API, None, "/jsonapi/activities.json", detail)

    def delete_activity(self, activity_id: int) -> dict[str, Any]:
        """Seed 001, "Delete an activity"; a refusal is read again: a record that is gone is ``SynergistNotFound``."""
        try:
            return self.write("activities", "delete", {"activityID": activity_id})
        except SynergistRejected as exc:
            if isinstance(exc, AuthFailed):
                raise
            self.activity(activity_id)  # raises SynergistNotFound when the record is gone
            raise

    def activity(self, activity_id: int) -> records.Activity:
        """Seed 001, "Activity details": ``modelstructure=activitydetails&activityid=``, one row of ``data``.

        A refusal of the read itself is undocumented text: the "Key field filters" list (``Activityid=``) is
        asked too, and an empty, successful answer there is what makes it ``SynergistNotFound``.
        """
        try:
            return cast(records.Activity, self._one("activities", "activitydetails", activityid=activity_id))
        except SynergistNotFound:
            raise
        except SynergistRejected as exc:
            if isinstance(exc, AuthFailed) or exc.detail.startswith(f"{NOT_RECOGNISED}:"):
                raise  # the request itself was not understood: a listing would fail the same way
            rows = self.call("activities", style="modeldata", modelstructure="activitylist", Activityid=activity_id)
            if not (rows.get("data") or []):
                raise SynergistNotFound(API, exc.status, exc.path, f"no activity {activity_id}; {exc.detail}") from None
            raise

    def iter_activities(self, timestamp_from: int | str | None = None, **filters: Any) -> Iterator[records.Activity]:
        """Seed 001, "Activity list": "If no 'view' parameter is passed all records for the synergist company
        are returned", so none is sent unless the caller names one (a view is a saved query whose selection
        the doc does not give: ``-1703`` is "My open activities")."""
        return cast(Iterator[records.Activity], self.iter_list("activities", "activitylist", timestamp_from, **filters))

    def create_job(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """From a template: needs ``varJobTemplate`` and ``jobClientCode``."""
        return self.write("jobs", "create", fields)

    def update_job(self, job_number: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self.write("jobs", "update", {**fields, "jobNumber": job_number})

    def job(self, job_number: str) -> records.Job:
        """Seed 001, "Job details": ``modelstructure=jobdetails&job=1/00000510``, one row of ``data``."""
        return cast(records.Job, self._one("jobs", "jobdetails", job=job_number))

    def iter_jobs(self, timestamp_from: int | str | None = None, **filters: Any) -> Iterator[records.Job]:
        """Seed 001, "List jobs": the ``jobslist`` model, page after page; no ``view`` unless the caller names one."""
        return cast(Iterator[records.Job], self.iter_list("jobs", "jobslist", timestamp_from, **filters))

    def iter_phases(self, job: str | None = None, **filters: Any) -> Iterator[records.Phase]:
        """Seed 001, "Phases": ``phases.json?style=modeldata&modelstructure=phaseslist`` (the example adds the
        saved query ``view=-1307``; none is sent unless named), filtered by the ``Job=`` key field."""
        if job is not None:
            filters["Job"] = job
        return cast(Iterator[records.Phase], self.iter_list("phases", "phaseslist", None, **filters))

    def unallocated(self, **filters: Any) -> list[records.Estimate]:
        """Estimates that can be booked: ``calendar.json?action=unallocated`` (seed 001, "Unallocated list").

        [INCONS] a booking's create needs ``calTimeSummaryInternal``, while the sample estimate names that
        number ``calTimeSummarySelect``: both are read, and each row gets ``calTimeSummaryInternal``.
        """
        filters.setdefault("persistBackendSearch", "N")
        rows = self.call("calendar", "unallocated", **filters).get("data") or []
        out = []
        for row in rows:
            if isinstance(row, dict):
                row = dict(row)
                row.setdefault("calTimeSummaryInternal", row.get("calTimeSummarySelect"))
                out.append(cast(records.Estimate, row))
        return out

    def create_booking(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self.write("calendar", "create", fields)

    def update_booking(self, diary_internal: int | str, fields: Mapping[str, Any]) -> dict[str, Any]:
        # [INCONS] the tables say action=create for update and delete; the examples say update/delete.
        return self.write("calendar", "update", {**fields, "calDiaryInternal": diary_internal})

    def delete_booking(self, diary_internal: int | str) -> dict[str, Any]:
        return self.write("calendar", "delete", {"diary_diaryinternal": diary_internal})

    def create_pending_timesheet(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Needs ``tspJobAndPhase``, ``tspTimeDate`` (YYYY-MM-DD) and ``tspResourceCode``."""
        return self.write("tspending", "create", fields)

    def update_pending_timesheet(self, entry_no: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        return self.write("tspending", "update", {**fields, "tspEntryNo": entry_no})

    # Read-backs: after a crash, find what an earlier attempt of a create already made (workers/intents.py).
    # Synergist has no upsert and no key of ours on its records, so a create is recognised by what it sent.

    def find_activity(self, fields: Mapping[str, Any], *, since: float) -> records.Activity | None:
        """The client's activity, modified at or after `since`, that shows every value a create sent.

        Seed 001, "Key field filters": ``client=`` and ``Timestampfrom=`` filter any list (the format of the
        latter is not documented, so Unix seconds are sent and ``activityTimeStampModified`` is checked
        here too); "Activity list": without a ``view`` "all records for the synergist company are returned".
        """
        if not fields.get("activityClientCode") or not fields.get("activityActivitytypeCode"):
            return None  # not what a create sends: nothing to recognise it by
        rows = self.iter_list("activities", "activitylist", int(since), client=fields["activityClientCode"])
        return cast(records.Activity | None, _first_match(rows, fields, "activityTimeStampModified", since))

    def find_job(self, fields: Mapping[str, Any], *, since: float) -> records.Job | None:
        """The job a create made: by ``jobNumber`` when it was given (manual numbering), else the client's job,
        modified at or after `since`, that shows every value the create sent.

        Seed 001, "Job details" (``modelstructure=jobdetails&job=``), "List jobs" (``jobslist``; no ``view``:
        every record) and "Key field filters" (``client=``, ``Timestampfrom=``).
        """
        if fields.get("jobNumber"):
            try:
                return self.job(str(fields["jobNumber"]))
            except SynergistNotFound:
                return None
        if not fields.get("jobClientCode"):
            return None
        rows = self.iter_list("jobs", "jobslist", int(since), client=fields["jobClientCode"])
        return cast(records.Job | None, _first_match(rows, fields, "jobTimeStampModified", since))

    def find_booking(self, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """The booking of ``calResourceId`` that starts at ``calIsoDateTimeStart`` for ``calTimeSummaryInternal``.

        Seed 001, "Calendar display": ``action=calendardisplay`` with ``datefrom``/``dateto`` (YYYY-MM-DD) returns
        every booking in the range, with ``calResourceId`` and ``calIsoDateTimeStart``; the end is not compared,
        since on create "the duration may be adjusted by business logic".
        """
        start = _iso_minute(fields.get("calIsoDateTimeStart"))
        if len(start) < 16 or fields.get("calResourceId") is None:
            return None
        day = start[:10]
        rows = self.call("calendar", "calendardisplay", datefrom=day, dateto=day).get("data") or []
        for row in rows:
            if (
                _iso_minute(row.get("calIsoDateTimeStart")) == start
                and str(row.get("calResourceId")) == str(fields.get("calResourceId"))
                and str(row.get("calTimeSummaryInternal", fields.get("calTimeSummaryInternal")))
                == str(fields.get("calTimeSummaryInternal"))
            ):
                return dict(row)
        return None

    def find_pending_timesheet(self, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """The pending entry of ``tspResourceCode`` on ``tspTimeDate`` that shows every value a create sent.

        Seed 001, "Pending timesheets list": ``modelstructure=tspendingslist`` with ``resource``, ``datefrom`` and
        ``dateto``. [INCONS] Its status table says W (pending) entries are "not included in this API return
        data", yet the ``timesheetpendinglist`` example returns one; the sandbox returns them.
        """
        if not all(fields.get(k) for k in ("tspResourceCode", "tspTimeDate", "tspJobAndPhase")):
            return None
        day = str(fields["tspTimeDate"])
        rows = self.iter_list(
            "tspending", "tspendingslist", resource=fields.get("tspResourceCode"), datefrom=day, dateto=day
        )
        return _first_match(rows, fields, None, 0)

    def password_hash(self) -> SecretStr:
        """The server's SHA512 of the password, to pass later as ``sha512password``."""
        rows = self.call("users", "GETSHA512").get("data") or []
        value = rows[0].get("userPasswordSha512") if rows else None
        if not value:
            raise SynergistRejected(API, 200, "/jsonapi/users.json", "no userPasswordSha512 in the response")
        return SecretStr(str(value))

    def clients(self, **filters: Any) -> list[dict[str, Any]]:
        return self.call("jobs", "clients", **filters).get("data") or []

    def activity_types(self) -> list[dict[str, Any]]:
        return self.call("activities", "activitytypes").get("data") or []

    def users(self) -> list[dict[str, Any]]:
        return self.call("calendar", "users").get("data") or []

    def write(self, area: str, action: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """One-record ``create``/``update``/``delete``; the first row of ``data`` back."""
        rows = self.call(area, action, input={"data": [dict(record)]}).get("data") or []
        return dict(rows[0]) if rows else {}

    def iter_list(
        self,
        area: str,
        modelstructure: str,
        timestamp_from: int | str | None = None,
        rows: int = 100,
        *,
        start_page: int = 0,
        on_page: Callable[[int], None] | None = None,
        **filters: Any,
    ) -> Iterator[dict[str, Any]]:
        """Every record of a list model, page after page (``Timestampfrom=`` when given).

        [INCONS] seed 001 (Synergist API v3.2), "General parameters for all requests": "page (optional)
        Data page to return, page numbering starts at 0", and its parameter table says "page=1 Page
        numbering starts at 0", while every example URL sends ``page=1``. Both readings: start at 0 and
        skip rows already seen, so either numbering yields each record once. ``on_page(page)``
        follows each page, so a listing can resume at ``start_page``.
        """
        if timestamp_from is not None:
            filters["Timestampfrom"] = timestamp_from
        seen: set[str] = set()
        page, total, repeats = start_page, None, 0
        while True:
            body = self.call(area, style="modeldata", modelstructure=modelstructure, page=page, rows=rows, **filters)
            batch = body.get("data") or []
            fresh = [r for r in batch if _row_key(r) not in seen]
            total = body.get("totalrows", total)
            for row in fresh:
                seen.add(_row_key(row))
                yield row
            if on_page is not None:
                on_page(page)
            # A 1-based server answers page 0 and page 1 alike: allow one repeated page, not two.
            repeats = repeats + 1 if batch and not fresh else 0
            # A resumed listing has not seen the earlier pages: a short page, not the total, ends it.
            short = start_page > 0 and rows and len(batch) < rows
            if not batch or repeats > 1 or short or (total is not None and start_page == 0 and len(seen) >= int(total)):
                return
            page += 1

    def call(self, area: str, action: str | None = None, *, input: Any = None, **params: Any) -> dict[str, Any]:
        """One API call; the decoded envelope with lower-cased keys, or a typed error."""
        query: dict[str, Any] = {"version": self.version, "company": self.company, "user": self.user}
        if self._sha512 is not None:
            query["sha512password"] = self._sha512.get_secret_value()
        else:
            query["password"] = self._password.get_secret_value()
        if action is not None:
            query["action"] = action
        if input is not None:
            query["input"] = json.dumps(input, separators=(",", ":"))
        query.update({k: v for k, v in params.items() if v is not None})
        response = send(self._http, FAMILY, "GET", f"/jsonapi/{area}.json", params=query, secrets=self._secrets())
        return self._decode(response)

    def _one(self, area: str, modelstructure: str, **key: Any) -> dict[str, Any]:
        rows = self.call(area, style="modeldata", modelstructure=modelstructure, **key).get("data") or []
        if not rows:
            raise SynergistNotFound(API, 200, f"/jsonapi/{area}.json", f"no {area} record for {key}")
        return dict(rows[0])

    def _secrets(self) -> tuple[str, ...]:
        # Servers echo the URL in error pages, so the URL-encoded forms are masked too.
        raw = [self._password.get_secret_value(), self._sha512.get_secret_value() if self._sha512 else ""]
        return tuple(v for s in raw if s for v in (s, quote(s, safe=""), quote_plus(s)))

    def _decode(self, response: httpx.Response) -> dict[str, Any]:
        path, status = response.request.url.path, response.status_code
        body = json_body(response)
        envelope = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
        if status >= 500 or status == 429:
            raise FAMILY.for_status(status, path, scrub(response.text, self._secrets())[:200])
        if response.is_success and envelope.get("success") is not False and "data" in envelope:
            return envelope
        code, message = _error(envelope, response)
        # Error pages may echo the request URL, whose query string holds the password.
        message = scrub(message, self._secrets())[:300]
        detail = f"{code}: {message}" if code else message
        if code in AUTH_CODES or status == 401:
            raise SynergistAuthFailed(API, status, path, detail)
        if code is None and status == 404:
            # No Synergist error in the body: not this API at all (a wrong base URL), never "record gone".
            raise SynergistRejected(API, status, path, f"HTTP 404 without a Synergist error body: {message}")
        if response.is_success and not envelope:
            raise SynergistUnavailable(API, status, path, "response is not a JSON envelope")
        # 404004 "request not recognized" and every other code in 404000-404999: refused, reason undocumented.
        raise SynergistRejected(API, status, path, detail)


def _error(envelope: Mapping[str, Any], response: httpx.Response) -> tuple[int | None, str]:
    """Error code and text from a JSON envelope or the XML ``<Error ErrorID=..>`` body."""
    if envelope:
        code = str(envelope.get("errorcode") or "")
        return (int(code) if code.isdigit() and int(code) else None), str(envelope.get("errormessage") or "")
    match = _XML_ERROR.search(response.text)
    if match:
        return int(match.group(1)), match.group(2).strip()
    return None, response.reason_phrase or ""


# What a create sends under another name than the list shows it by.
_SHOWN_AS = {"Job": "activityJobNumber", "Jobphase": "activityJobAndPhase", "jobHandleruserid": "jobHandlerUserID"}


def _first_match(
    rows: Iterator[dict[str, Any]], fields: Mapping[str, Any], stamp: str | None, since: float
) -> dict[str, Any] | None:
    """The first row modified at or after `since` that shows every sent value it has a column for."""
    for row in rows:
        if stamp is not None and int(row.get(stamp) or 0) < since:
            continue
        if all(_same(row[_SHOWN_AS.get(k, k)], v) for k, v in fields.items() if _SHOWN_AS.get(k, k) in row):
            return dict(row)
    return None


def _same(shown: Any, sent: Any) -> bool:
    """Equal as Synergist shows it: flags as flags, numbers as numbers, dates with either separator."""
    if isinstance(sent, bool) or isinstance(shown, bool):
        return _flag(shown) == _flag(sent)
    try:
        return float(shown) == float(sent)
    except (TypeError, ValueError):
        return str(shown).replace("/", "-").strip() == str(sent).replace("/", "-").strip()


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes", "y"}


def _iso_minute(value: Any) -> str:
    """``2017-07-10T14:30:00`` (or with a space) to the minute, for comparing booking times."""
    return str(value or "").replace(" ", "T")[:16]


def _row_key(row: Any) -> str:
    return json.dumps(row, sort_keys=True, default=str)
