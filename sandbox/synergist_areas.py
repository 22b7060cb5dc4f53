"""Synergist API areas and actions: what each `<area>.json?action=...` call does to the data set."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sandbox.synergist_calls import Call, Result, key_filter, need
from sandbox.synergist_store import (
    BAD_INPUT,
    NOT_RECOGNISED,
    VERSION_CONFLICT,
    SynergistError,
    SynergistState,
    sha512,
)
from sandbox.synergist_views import activity_view, job_view

CUSTOM_FIELD = re.compile(r"^(activity|job)CustomField\d+$")
ACTIVITY_FIELDS = {
    "activitySubject",
    "activityDetails",
    "activityClientCode",
    "activityJobNumber",
    "activityJobAndPhase",
    "activityActivitytypeCode",
    "activityOwnerID",
    "activityStatus",
    "activityCompleted",
    "activityDateDue",
    "activityCompanyNumber",
}
JOB_FIELDS = {
    "jobDescription",
    "jobComments",
    "jobDateIn",
    "jobDateDue",
    "jobStatus",
    "jobClientCode",
    "jobOrderNumber",
    "jobReferenceJob",
    "jobHandlerUserID",
    "jobHandlerTeam",
    "jobJobtypeCode",
    "jobProjectCode",
    "jobCampaignNo",
    "jobContactInternalRef",
    "jobCurrencyCode",
    "jobWorkflowCode",
    "jobExchangeRate",
    "jobCurQuotedPrice",
    "jobQuotedPrice",
    "jobTaxCode",
    "jobSalesStatusReason",
    "jobStageNotes",
}
JOB_CREATE_FIELDS = JOB_FIELDS | {"jobNumber", "jobHandleruserid", "jobPrefixOnly"}


def _date(raw: Any, name: str) -> str:
    # The job create example writes "2017/12/06"; the docs' stated date format is YYYY-MM-DD.
    for fmt in ("%Y/%m/%d", "%Y-%m-%d"):
        try:
            return datetime.strptime(str(raw), fmt).strftime("%Y-%m-%d")
        except ValueError:
            continue
    raise SynergistError(BAD_INPUT, f"{name}: expected YYYY/MM/DD or YYYY-MM-DD, got {raw!r}")


def activities(st: SynergistState, call: Call) -> Result:
    table = st.tables["activities"]
    if call.action == "":
        rows = key_filter(
            call,
            sorted(table.values(), key=lambda r: r["activityID"]),
            "activity",
            {
                "activityid": "activityID",
                "client": "activityClientCode",
                "job": "activityJobNumber",
                "jobphase": "activityJobAndPhase",
            },
        )
        return Result([activity_view(st, r) for r in rows], paged=True)
    if call.action == "activitytypes":
        return Result(list(st.activitytypes), paged=True)
    if call.action in {"clientslist", "clients"}:
        return Result(list(st.clients), paged=True)
    if call.action not in {"create", "update", "delete"}:
        raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    out = []
    for item in call.items:
        if call.action == "create":
            need(item, "activityActivitytypeCode", "activityClientCode")
            if not any(t["activitytypeCode"] == item["activityActivitytypeCode"] for t in st.activitytypes):
                raise SynergistError(BAD_INPUT, f"unknown activity type {item['activityActivitytypeCode']}")
            st.client(item["activityClientCode"])
            values = {k: v for k, v in item.items() if k in ACTIVITY_FIELDS or CUSTOM_FIELD.match(k)}
            values.update(
                activityJobNumber=item.get("Job", ""),
                activityJobAndPhase=item.get("Jobphase", ""),
                activityOwnerID=call.user["userUserId"],
                activityCompleted=False,
                activityDateDue="0000-00-00",
            )
            record = st.insert("activities", st.next_key("activities"), values)
            out.append(
                {
                    k: activity_view(st, record)[k]
                    for k in (
                        "activityuuid",
                        "activityID",
                        "activityOwnerID",
                        "activityOwnerName",
                        "activityTimeStampModified",
                        "activityRecordVersionNumber",
                    )
                }
            )
        elif call.action == "update":
            need(item, "activityID", "activityRecordVersionNumber")
            record = st.get("activities", item["activityID"])
            if int(item["activityRecordVersionNumber"]) != record["activityRecordVersionNumber"]:
                # Seed 001: "If the record has been updated by another user in the meantime, the update will
                # fail." The failure's text is undocumented; this one names no cause a client could match.
                raise SynergistError(VERSION_CONFLICT, f"activity {record['activityID']}: update rejected")
            st.touch(
                "activities",
                record,
                {k: v for k, v in item.items() if k in ACTIVITY_FIELDS or CUSTOM_FIELD.match(k)},
            )
            out.append(
                {
                    k: record[k]
                    for k in (
                        "activityID",
                        "activityuuid",
                        "activityTimeStampModified",
                        "activityRecordVersionNumber",
                    )
                }
            )
        elif call.action == "delete":
            need(item, "activityID")
            record = st.get("activities", item["activityID"])
            del st.tables["activities"][record["activityID"]]
            out.append({"activityID": record["activityID"], "activityuuid": record["activityuuid"]})
        else:
            raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    return Result(out, message="data processed successfully.")


def jobs(st: SynergistState, call: Call) -> Result:
    table = st.tables["jobs"]
    if call.action == "":
        rows = key_filter(
            call,
            sorted(table.values(), key=lambda r: r["jobNumber"]),
            "job",
            {"job": "jobNumber", "client": "jobClientCode"},
        )
        return Result([job_view(st, r) for r in rows], paged=True)
    if call.action == "clients":
        return Result(list(st.clients), paged=True)
    if call.action not in {"create", "update", "delete"}:
        raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    out = []
    for item in call.items:
        if call.action == "create":
            need(item, "varJobTemplate", "jobClientCode")
            if item["varJobTemplate"] not in st.job_templates:
                raise SynergistError(BAD_INPUT, f"unknown job template {item['varJobTemplate']}")
            st.client(item["jobClientCode"])
            number = item.get("jobNumber") or _next_job_number(table, call.company)
            if number in table:
                raise SynergistError(BAD_INPUT, f"job number {number} already exists")
            values = _job_values(st, item, JOB_CREATE_FIELDS)
            values.setdefault("jobStatus", 1)
            record = st.insert("jobs", number, values)
        elif call.action == "update":
            need(item, "jobNumber")
            record = st.get("jobs", item["jobNumber"])
            st.touch("jobs", record, _job_values(st, item, JOB_FIELDS))
        else:
            raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
        out.append(
            {k: record[k] for k in ("jobNumber", "jobUuid", "jobTimeStampModified", "jobRecommendedVersionNumber")}
        )
    return Result(out, message="data processed successfully.")


def _next_job_number(table: dict[Any, dict[str, Any]], company: str) -> str:
    """One above the highest number in use: counting records would reuse a number (e.g. the seeded 510)."""
    prefix = f"{company}/"
    used = [int(n[len(prefix) :]) for n in table if str(n).startswith(prefix) and str(n)[len(prefix) :].isdigit()]
    return f"{prefix}{max(used, default=0) + 1:08d}"


def _job_values(st: SynergistState, item: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    values = {k: v for k, v in item.items() if (k in allowed or CUSTOM_FIELD.match(k)) and k != "jobNumber"}
    for name in ("jobDateIn", "jobDateDue"):
        if name in values:
            values[name] = _date(values[name], name)
    if "jobStatus" in values:
        if str(values["jobStatus"]) not in st.job_statuses:
            raise SynergistError(BAD_INPUT, f"jobStatus must be one of {', '.join(st.job_statuses)}")
        values["jobStatus"] = int(values["jobStatus"])
    if "jobClientCode" in values:
        st.client(values["jobClientCode"])
    return values


def users(st: SynergistState, call: Call) -> Result:
    if call.action.upper() == "GETSHA512":
        user = call.user
        return Result(
            [
                {
                    "userUserId": user["userUserId"],
                    "userUuid": user.get("userUuid", ""),
                    "userTimestampModified": user.get("userTimestampModified", 0),
                    "userRecordVersionNumber": user.get("userRecordVersionNumber", 0),
                    "userPasswordSha512": sha512(call.password),
                }
            ],
            paged=True,
        )
    if call.action == "":
        return Result(list(st.users), paged=True)
    raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")


def system(st: SynergistState, call: Call) -> Result:
    if call.action != "version":
        raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    return Result(
        [
            {
                "uuid": "E646889F48DD423CA1300491A31E8C50",
                "systemparameters_versionno": 12.2,
                "systemparameters_versionrevision": "d",
                "variable_apiversion": "3.2",
            }
        ]
    )


def clients(st: SynergistState, call: Call) -> Result:
    if call.action not in {"", "clientslist"}:
        raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    return Result(key_filter(call, list(st.clients), "client", {"client": "clientCode"}), paged=True)


Handler = Callable[[SynergistState, Call], Result]
