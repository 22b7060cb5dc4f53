"""ServiceTrade list endpoints: documented filters, status defaults, `limit` and page numbering."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams

if TYPE_CHECKING:
    from sandbox.servicetrade_store import ServiceTradeState

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
}
JOB_STATUSES = (
    "new",
    "scheduled",
    "canceled",
    "bidding",
    "completed",
    "pending_invoice",
    "sending_invoice",
    "invoiced",
    "closed",
)
APPOINTMENT_STATUSES = (
    "scheduled",
    "unscheduled",
    "canceled_by_vendor",
    "canceled_by_customer",
    "completed",
    "no_show",
)


class InvalidQuery(ValueError):
    """A query parameter the docs would reject with 400; `field` names it for `messages.validation`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field, self.message = field, message


def _ints(field: str, raw: str) -> set[int]:
    try:
        return {int(part) for part in raw.split(",") if part.strip()}
    except ValueError:
        raise InvalidQuery(field, "Must be a comma-separated list of integers") from None


def _words(raw: str) -> set[str]:
    return {part.strip() for part in raw.split(",") if part.strip()}


def _truthy(raw: str) -> bool:
    return raw.strip().lower() in {"1", "true", "yes", "on"}


Filter = Callable[[dict[str, Any]], bool]

# Per type: query parameter -> (record field, how it matches).
MATCHERS: dict[str, dict[str, tuple[str, str]]] = {
    "job": {
        "id": ("id", "ids"),
        "jobIds": ("id", "ids"),
        "locationId": ("locationId", "ids"),
        "customerId": ("customerId", "ids"),
        "vendorId": ("vendorId", "ids"),
        "ownerId": ("ownerId", "ids"),
        "salesId": ("salesId", "ids"),
        "type": ("type", "words"),
    },
    "appointment": {
        "jobId": ("jobId", "ids"),
        "locationId": ("locationId", "ids"),
        "techIds": ("techIds", "any"),
    },
    "location": {
        "name": ("name", "substr"),
        "refNumber": ("refNumber", "exact"),
        "companyId": ("companyId", "ids"),
        "status": ("status", "words"),
    },
    "company": {
        "name": ("name", "substr"),
        "status": ("status", "exact"),
        "isVendor": ("isVendor", "bool"),
        "isCustomer": ("isCustomer", "bool"),
    },
    "contact": {"companyId": ("companyId", "ids"), "locationId": ("locationId", "ids")},
    "invoice": {
        "jobId": ("jobId", "ids"),
        "locationId": ("locationId", "ids"),
        "customerId": ("customerId", "ids"),
        "status": ("status", "words"),
        "type": ("type", "words"),
    },
    "quote": {"name": ("name", "substr"), "status": ("status", "words"), "locationId": ("locationId", "ids")},
    "deficiency": {
        "severity": ("severity", "exact"),
        "status": ("status", "exact"),
        "locationId": ("locationId", "ids"),
    },
    "asset": {"locationId": ("locationId", "ids"), "type": ("type", "exact"), "name": ("name", "substr")},
    "user": {
        "companyId": ("companyId", "ids"),
        "locationId": ("locationId", "ids"),
        "name": ("name", "substr"),
    },
    "attachment": {"entityId": ("entityId", "ids"), "entityType": ("entityType", "ids")},
    "servicerequest": {
        "jobId": ("jobId", "ids"),
        "locationId": ("locationId", "ids"),
        "status": ("status", "words"),
        "description": ("description", "substr"),
    },
}
BOUNDS = {
    "createdAfter": ("created", 1),
    "createdBefore": ("created", -1),
    "updatedAfter": ("updated", 1),
    "updatedBefore": ("updated", -1),
}


def _matcher(param: str, field: str, kind: str, raw: str) -> Filter:
    if kind == "ids":
        wanted = _ints(param, raw)
        return lambda r: r.get(field) in wanted
    if kind == "any":
        wanted = _ints(param, raw)
        return lambda r: bool(wanted & set(r.get(field) or []))
    if kind == "words":
        words = _words(raw)
        return lambda r: r.get(field) in words
    if kind == "bool":
        flag = _truthy(raw)
        return lambda r: bool(r.get(field)) == flag
    if kind == "substr":
        return lambda r: raw.lower() in str(r.get(field) or "").lower()
    return lambda r: str(r.get(field)) == raw


def _status_filter(entity_type: str, query: QueryParams, state: ServiceTradeState) -> Filter | None:
    raw = query.get("status")
    if entity_type == "job":
        # "defaults to 'scheduled' if not supplied, unless a job number is supplied"; `all` omits canceled.
        if raw is None:
            return None if "number" in query else (lambda r: r["status"] == "scheduled")
        if raw == "all":
            return lambda r: r["status"] != "canceled"
        if raw not in JOB_STATUSES:
            raise InvalidQuery("status", f"Must be one of: all, {', '.join(JOB_STATUSES)}")
        return lambda r: r["status"] == raw
    if entity_type == "appointment":
        wanted = _words(raw) if raw else set(APPOINTMENT_STATUSES) - {"unscheduled"}
        if wanted - set(APPOINTMENT_STATUSES):
            raise InvalidQuery("status", f"Must be a list of: {', '.join(APPOINTMENT_STATUSES)}")
        return lambda r: r["status"] in wanted
    if entity_type in {"asset", "user"} and raw is None:
        return lambda r: r.get("status") == "active"
    if entity_type == "location":
        companies = state.records.get("company", {})

        def kind(r: dict[str, Any], flag: str) -> bool:
            return bool(companies.get(r.get("companyId", 0), {}).get(flag))

        if _truthy(query.get("isVendor", "false")):
            return lambda r: kind(r, "isVendor")
        if _truthy(query.get("isCustomer", "true")):
            return lambda r: kind(r, "isCustomer")
    return None


def _bound(field: str, bound: int, sign: int) -> Filter:
    return lambda r: (r.get(field) or 0) * sign >= bound * sign


def _filters(entity_type: str, query: QueryParams, state: ServiceTradeState) -> list[Filter]:
    filters: list[Filter] = []
    for param, (field, sign) in BOUNDS.items():
        if param in query:
            try:
                bound = int(query[param])
            except ValueError:
                raise InvalidQuery(param, "Must be numeric") from None
            # The docs say all four bounds are inclusive ("on or after", "on or before").
            filters.append(_bound(field, bound, sign))
    for param, (field, kind) in MATCHERS.get(entity_type, {}).items():
        if param in query:
            filters.append(_matcher(param, field, kind, query[param]))
    if entity_type == "job" and "number" in query:
        filters.append(_matcher("number", "number", "ids", query["number"]))
    elif entity_type == "job" and "refNumber" in query:
        filters.append(_matcher("refNumber", "refNumber", "exact", query["refNumber"]))
    status = _status_filter(entity_type, query, state)
    if status is not None:
        filters.append(status)
    return filters


class NotAllowed(ValueError):
    """A list the docs answer with 405 ("missing required query params")."""


def select(
    entity_type: str, query: QueryParams, state: ServiceTradeState
) -> tuple[list[dict[str, Any]], int, int | None]:
    """Return (records on the requested page, page, totalPages or None when the answer has no paging).

    The docs give `limit` defaults but no page size. `state.limit_mode` picks the reading: "page" uses
    `limit` as the page size; "cap" returns at most `limit` rows and no paging fields.
    """
    if entity_type == "attachment" and not {"entityId", "entityType"} <= set(query):
        # Seed 002, "Attachment": GET /attachment 405 "missing required query params" (entityId and
        # entityType are "required"). Old: answered 400, and 200 with only an updated bound.
        raise NotAllowed("missing required query params: entityId and entityType")
    filters = _filters(entity_type, query, state)
    rows = [r for r in state.all(entity_type) if all(f(r) for f in filters)]
    default = state.default_limits.get(entity_type, state.fallback_limit)
    try:
        limit = int(query.get("limit", default))
        page = int(query.get("page", 1))
    except ValueError:
        raise InvalidQuery("limit", "Must be numeric") from None
    limit = max(1, min(limit, state.max_limits.get(entity_type, max(default, limit))))
    page = max(1, page)
    if state.limit_mode == "cap":
        return rows[:limit], 1, None
    total_pages = max(1, math.ceil(len(rows) / limit))
    return rows[(page - 1) * limit : page * limit], page, total_pages
