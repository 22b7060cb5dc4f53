"""Synchroteam record shapes: validating `/send` payloads into upserts and rendering records back."""

from __future__ import annotations

from typing import Any

from sandbox.synchroteam_store import (
    FIELDS,
    JOB_DATE,
    JOB_STATUSES,
    LIST_OMITS,
    SHORT_DATE,
    UPSERT_KEYS,
    Invalid,
    SynchroteamState,
    parse_date,
)

PRIORITIES = ("low", "medium", "high")
JOB_DATES = ("scheduledStart", "scheduledEnd", "actualStart", "actualEnd")


def _named(table: list[dict[str, Any]], ref: Any, what: str) -> dict[str, Any] | None:
    if ref is None:
        return None
    found = next(
        (t for t in table if isinstance(ref, dict) and (t["id"] == ref.get("id") or t["name"] == ref.get("name"))),
        None,
    )
    if found is None:
        raise Invalid(f"{what} not found: {ref}")
    return {"id": found["id"], "name": found["name"]}


def _user_ref(st: SynchroteamState, ref: Any) -> dict[str, Any] | None:
    user = st.user(ref)
    return {"id": user["id"]} if user else None


def normalize(st: SynchroteamState, kind: str, body: dict[str, Any], creating: bool) -> dict[str, Any]:
    """Check a `/send` body and turn references into the stored `{"id": ...}` form."""
    values = {k: v for k, v in body.items() if k in FIELDS[kind]}
    for field in ("customer", "site", "equipment"):
        if field in values and kind != field:
            values[field] = st.reference(field, values[field])
    if kind == "site" and creating and not values.get("customer"):
        raise Invalid("customer id or myId is required to create a site")
    if kind in {"equipment", "job"} and values.get("site") and not values.get("customer"):
        site = st.records["site"][values["site"]["id"]]
        values["customer"] = site.get("customer")
    if kind == "equipment" and creating and not values.get("customer"):
        raise Invalid("customer or site id/myId is required to create equipment")
    if kind == "job":
        # [INCONS] The customer field says its id/myId is required; the site field says a customer OR site is.
        if creating and not values.get("customer"):
            raise Invalid("customer id or myId is required to create a job")
        _check_job(st, values)
    if kind == "activity":
        _check_activity(st, values, creating)
    return values


def _check_job(st: SynchroteamState, values: dict[str, Any]) -> None:
    if "status" in values and values["status"] not in JOB_STATUSES:
        raise Invalid(f"status must be one of {', '.join(JOB_STATUSES)}")
    if "priority" in values and values["priority"] not in PRIORITIES:
        raise Invalid(f"priority must be one of {', '.join(PRIORITIES)}")
    for field in JOB_DATES:
        if values.get(field) is not None:
            parse_date(values[field], JOB_DATE, field)
    if "type" in values:
        values["type"] = _named(st.job_types, values["type"], "job type")
    if "reportTemplate" in values:
        values["reportTemplate"] = _named(st.report_templates, values["reportTemplate"], "report template")
    if "technician" in values:
        values["technician"] = _user_ref(st, values["technician"])
    if "otherTechnicians" in values:
        values["otherTechnicians"] = [_user_ref(st, t) for t in values["otherTechnicians"] or []]


def _check_activity(st: SynchroteamState, values: dict[str, Any], creating: bool) -> None:
    if creating and not all(values.get(k) for k in ("activityType", "dateStart", "dateEnd")):
        raise Invalid("activityType.id, dateStart and dateEnd are required to create an activity")
    if "activityType" in values:
        ref = values["activityType"]
        known = {t["id"] for t in st.activity_types}
        if not isinstance(ref, dict) or ref.get("id") not in known:
            raise Invalid(f"activity type not found: {ref}")
        values["activityType"] = {"id": ref["id"]}
    for field in ("dateStart", "dateEnd"):
        if field in values:
            parse_date(values[field], SHORT_DATE, field)
    if "user" in values:
        values["user"] = _user_ref(st, values["user"])
    if values.get("team") is not None:
        values["team"] = _named(st.teams, values["team"], "team")


def send(st: SynchroteamState, kind: str, body: Any) -> dict[str, Any]:
    """The `/send` upsert: update the record the keys match, else create; omitted fields are kept."""
    if not isinstance(body, dict):
        raise Invalid("request body must be a JSON object")
    # Only the documented upsert keys match: `find` also looks up by name/email for `details`,
    # and a new customer that shares a name with another must not overwrite it.
    existing = st.find(kind, {k: body.get(k) for k in UPSERT_KEYS[kind]})
    values = normalize(st, kind, body, creating=existing is None)
    return st.update(existing, values) if existing else st.create(kind, values)


def render(st: SynchroteamState, record: dict[str, Any], *, simplified: bool = False) -> dict[str, Any]:
    kind = record["_kind"]
    out: dict[str, Any] = {k: record.get(k) for k in FIELDS[kind] if not (simplified and k in LIST_OMITS)}
    for field in ("customer", "site", "equipment"):
        if kind != field and isinstance(out.get(field), dict):
            target = st.records[field].get(out[field]["id"], {})
            out[field] = {"id": out[field]["id"], "myId": target.get("myId"), "name": target.get("name")}
    for field in ("technician", "createdBy"):
        if out.get(field):
            user = st.user(out[field]) or {}
            out[field] = {"id": user.get("id"), "name": user.get("name"), "login": user.get("login")}
    if out.get("otherTechnicians"):
        out["otherTechnicians"] = [
            {"id": u["id"], "name": u["name"], "login": u["login"]}
            for u in (st.user(t) for t in out["otherTechnicians"])
            if u
        ]
    if kind == "job":
        for field, key in (("dateCreated", "_created"), ("dateModified", "_modified")):
            out[field] = st.local(record[key], JOB_DATE)
    if kind == "activity":
        kind_ref = next((t for t in st.activity_types if t["id"] == (out.get("activityType") or {}).get("id")), {})
        out["activityType"] = {k: kind_ref.get(k) for k in ("id", "name", "category", "payable")}
        if out.get("user"):
            user = st.user(out["user"]) or {}
            out["user"] = {k: user.get(k) for k in ("id", "login", "firstName", "lastName")}
    return out
