"""Synchroteam `list` endpoints: cumulative filters, sorting, `show` and page/pageSize envelopes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.datastructures import QueryParams

from sandbox.synchroteam_payloads import render
from sandbox.synchroteam_store import FILTER_DATE, JOB_DATE, SHORT_DATE, Invalid, SynchroteamState, parse_date

DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 25, 100
# Query parameter -> (record path, exact or substring); linked records are matched on their id or myId.
MATCHES: dict[str, dict[str, tuple[str, str]]] = {
    "customer": {
        "name": ("name", "like"),
        "email": ("contactEmail", "exact"),
        "contactEmail": ("contactEmail", "exact"),
        "myId": ("myId", "exact"),
    },
    "site": {
        "name": ("name", "like"),
        "customer_id": ("customer.id", "exact"),
        "customer_myId": ("customer.myId", "exact"),
        "myId": ("myId", "exact"),
    },
    "equipment": {
        "name": ("name", "like"),
        "customer_id": ("customer.id", "exact"),
        "customer_myId": ("customer.myId", "exact"),
        "site_id": ("site.id", "exact"),
        "site_myId": ("site.myId", "exact"),
        "myId": ("myId", "exact"),
    },
    "job": {
        "myId": ("myId", "exact"),
        "status": ("status", "exact"),
        "customer_id": ("customer.id", "exact"),
        "customer_myId": ("customer.myId", "exact"),
        "site_id": ("site.id", "exact"),
        "site_myId": ("site.myId", "exact"),
        "equipment_id": ("equipment.id", "exact"),
        "equipment_myId": ("equipment.myId", "exact"),
        "user_id": ("technician.id", "exact"),
        "user_login": ("technician.login", "exact"),
        "type_id": ("type.id", "exact"),
        "type_name": ("type.name", "exact"),
        "reportTemplate_id": ("reportTemplate.id", "exact"),
        "reportTemplate_name": ("reportTemplate.name", "exact"),
    },
    "activity": {
        "activityType_name": ("activityType.name", "exact"),
        "activityType_category": ("activityType.category", "exact"),
        "user_id": ("user.id", "exact"),
        "user_login": ("user.login", "exact"),
        "team_id": ("team.id", "exact"),
    },
}
SORTS = {
    "job": {
        "num": "num",
        "scheduledstart": "scheduledStart",
        "scheduledend": "scheduledEnd",
        "actualstart": "actualStart",
        "actualend": "actualEnd",
        "datemodified": "_modified",
    },
    "customer": {"name": "name", "datemodified": "_modified", "datecreated": "_created", "myid": "myId"},
    # Seed 000, "List activities": `sort` "takes one of four values: startDate, endDate, activityType_name
    # and user_login (Optional. Default is startDate)".
    "activity": {
        "startdate": "dateStart",
        "enddate": "dateEnd",
        "activitytype_name": "activityType.name",
        "user_login": "user.login",
    },
    # "List Custom Fields": `sort` label (default) or order.
    "customfield": {"label": "label", "order": "order"},
}
# Seed 000: customer, site and equipment lists return records "modified after" changedSince; job/list checks
# the modification "on or after" it.
INCLUSIVE_SINCE = {"job"}
JOB_DATE_FIELDS = {"scheduledStart", "scheduledEnd", "actualStart", "actualEnd"}


def _path(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _sort_key(record: dict[str, Any], shown: dict[str, Any], field: str) -> tuple[int, Any]:
    value = record.get(field) if field.startswith("_") else _path(shown, field)
    if value is None:
        return (1, "")
    if field in JOB_DATE_FIELDS:
        return (0, datetime.strptime(value, JOB_DATE))
    return (0, value.lower() if isinstance(value, str) else value)


def _match(path: str, how: str, wanted: str) -> Callable[[dict[str, Any], dict[str, Any]], bool]:
    if how == "like":
        return lambda record, shown: wanted.strip("*%").lower() in str(_path(shown, path) or "").lower()
    return lambda record, shown: str(_path(shown, path)) == wanted


def _job_window(query: QueryParams) -> list[Callable[[dict[str, Any], dict[str, Any]], bool]]:
    """`dateFrom`/`dateTo`: jobs planned, ongoing or completed on/after and on/before (actual dates first)."""

    def moment(shown: dict[str, Any], actual: str, planned: str) -> datetime | None:
        value = shown.get(actual) or shown.get(planned)
        return parse_date(value, JOB_DATE, planned).replace(tzinfo=None) if value else None

    filters: list[Callable[[dict[str, Any], dict[str, Any]], bool]] = []
    if "dateFrom" in query:
        low = parse_date(query["dateFrom"], FILTER_DATE, "dateFrom").replace(tzinfo=None)
        filters.append(lambda r, s: (end := moment(s, "actualEnd", "scheduledEnd")) is not None and end >= low)
    if "dateTo" in query:
        high = parse_date(query["dateTo"], FILTER_DATE, "dateTo").replace(tzinfo=None)
        filters.append(lambda r, s: (begin := moment(s, "actualStart", "scheduledStart")) is not None and begin <= high)
    return filters


def _int(query: QueryParams, name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        raise Invalid(f"{name} must be an integer") from None


def list_page(st: SynchroteamState, kind: str, query: QueryParams) -> dict[str, Any]:
    show = query.get("show", "active")
    if show not in {"active", "deleted", "all"}:
        raise Invalid("show must be one of active, deleted, all")
    rows = [r for r in st.records[kind].values() if show == "all" or bool(r.get("_deleted")) == (show == "deleted")]
    shown = [(r, render(st, r, simplified=True)) for r in rows]
    filters: list[Callable[[dict[str, Any], dict[str, Any]], bool]] = []
    # [INCONS] The text names the filter `changedSince` but the curl sample sends `changedFrom`.
    since = query.get("changedSince", query.get("changedFrom"))
    if since is not None:
        bound = parse_date(since, FILTER_DATE, "changedSince").timestamp()  # "the UTC date+time"
        if kind in INCLUSIVE_SINCE:
            filters.append(lambda r, s: r["_modified"] >= bound)
        else:
            filters.append(lambda r, s: r["_modified"] > bound)
    for name, (path, how) in MATCHES.get(kind, {}).items():
        if name not in query:
            continue
        wanted = query[name]
        if name == "activityType_category" and wanted == "unavailability":
            # [INCONS] The filter doc says "unavailability"; the category code is "unavail".
            wanted = "unavail"
        filters.append(_match(path, how, wanted))
    if kind == "activity" and ("startDate" in query or "endDate" in query):
        start = parse_date(query.get("startDate", ""), SHORT_DATE, "startDate")
        end = parse_date(query.get("endDate", ""), SHORT_DATE, "endDate")
        filters.append(
            lambda r, s: s["dateEnd"] >= start.strftime(SHORT_DATE) and s["dateStart"] <= end.strftime(SHORT_DATE)
        )
    if kind == "job":
        filters.extend(_job_window(query))
    matched = [(r, s) for r, s in shown if all(f(r, s) for f in filters)]
    sorts = SORTS.get(kind, SORTS["customer"] if kind in {"site", "equipment"} else {"id": "id"})
    field = sorts.get(query.get("sort", next(iter(sorts))).lower())
    if field is None:
        raise Invalid(f"sort must be one of {', '.join(sorts)}")
    matched.sort(key=lambda rs: _sort_key(rs[0], rs[1], field), reverse=query.get("sortOrder") == "descending")
    page = max(1, _int(query, "page", 1))
    size = _int(query, "pageSize", DEFAULT_PAGE_SIZE)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise Invalid(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
    data = [s for _, s in matched[(page - 1) * size : page * size]]
    return {
        "request": "list",
        "object": kind,
        "page": page,
        "pageSize": size,
        "records": len(data),
        "recordsTotal": len(matched),
        "data": data,
    }
