"""How Synergist records read back: stored fields plus the descriptive fields the docs' examples show."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.synergist_store import NOT_FOUND, SynergistError, SynergistState

APPROVAL_NAMES = {
    "P": "Posted",
    "A": "Approved",
    "Q": "Queried",
    "R": "Rejected",
    "H": "Held",
    "W": "Unsubmitted",
}
# Fields the documented tspending create answer carries that the sandbox does not model, at neutral values.
TSP_DEFAULTS: dict[str, Any] = {
    "tspChargeCode": "",
    "tspComplete": "",
    "tspMaterialCode": "",
    "tspMatQuantity": 0,
    "tspTaskDescription": "",
    "tspStageCode": "",
    "tspChargeCodeDescription": "",
    "tspApproverNotes": "",
    "tspCompleteStages": False,
    "tspCopy": "Y",
    "tspDelete": "Y",
    "tspEdit": "Y",
    "tspMaterials": 0,
    "tspMovestages": False,
    "tspSubmit": "N",
    "tspSubmitterNotes": "",
    "tspTimerElapsedNormal": 0,
    "tspTimerElapsedOt1": 0,
    "tspTimerElapsedOt2": 0,
    "tspTimerStatusNormal": "",
    "tspTimerStatusOt1": "",
    "tspTimerStatusOt2": "",
    "tspPhaseDescription": "",
    "tspStageCurrentDescription": "",
    "tspMatDescription": "",
    "tspStageDescription": "",
}
CAL_DEFAULTS: dict[str, Any] = {
    "calStageCode": "",
    "calTaskDescription": "",
    "calDescription": "",
    "calNotes": "",
    "calStatus": "",
    "calRequestStatus": "",
    "calColourHex": "EBFF00",
    "calFeedback": "",
    "calWeakLink": 0,
    "calAllDay": False,
}


def _user(st: SynergistState, user_id: Any) -> dict[str, Any]:
    return next((u for u in st.users if str(u["userUserId"]) == str(user_id)), {})


def _job(st: SynergistState, job_and_phase: Any) -> dict[str, Any]:
    return st.tables["jobs"].get(str(job_and_phase or "").split(".")[0], {})


def _simple(code: Any) -> str:
    return str(code or "").split("/")[-1].lstrip("0")


def activity_view(st: SynergistState, record: dict[str, Any]) -> dict[str, Any]:
    kind = next((t for t in st.activitytypes if t["activitytypeCode"] == record.get("activityActivitytypeCode")), {})
    client = next((c for c in st.clients if c["clientCode"] == record.get("activityClientCode")), {})
    return {
        **record,
        "activityOwnerName": _user(st, record.get("activityOwnerID")).get("userFullName", ""),
        "activityActivitytype": kind.get("activitytypeDescription", ""),
        "activityClientName": client.get("clientName", ""),
    }


def job_view(st: SynergistState, record: dict[str, Any]) -> dict[str, Any]:
    client = next((c for c in st.clients if c["clientCode"] == record.get("jobClientCode")), {})
    return {
        **record,
        "jobNumberSimple": _simple(record["jobNumber"]),
        "jobStatusDescription": st.job_statuses.get(str(record.get("jobStatus")), ""),
        "jobClientName": client.get("clientName", ""),
        "jobCompleted": False,
    }


def time_summary(st: SynergistState, internal: Any) -> dict[str, Any]:
    found = next((t for t in st.time_summaries if str(t["calTimeSummaryInternal"]) == str(internal)), None)
    if found is None:
        raise SynergistError(NOT_FOUND, f"time summary {internal}: unavailable (see calendar.json?action=unallocated)")
    return found


def booking_view(st: SynergistState, record: dict[str, Any]) -> dict[str, Any]:
    summary = time_summary(st, record["calTimeSummaryInternal"])
    job = _job(st, summary["jobAndPhase"])
    client = next((c for c in st.clients if c["clientCode"] == job.get("jobClientCode")), {})
    start = datetime.fromisoformat(record["calIsoDateTimeStart"])
    end = datetime.fromisoformat(record["calIsoDateTimeEnd"])
    hours = float(record.get("calDurationDecimalHours") or (end - start).total_seconds() / 3600)
    booked = sum(
        float(r.get("calDurationDecimalHours") or 0)
        for r in st.tables["calendar"].values()
        if str(r["calTimeSummaryInternal"]) == str(record["calTimeSummaryInternal"])
    )
    return {
        **CAL_DEFAULTS,
        **record,
        "calResourceId": str(record["calResourceId"]),
        "calResourceName": _user(st, record["calResourceId"]).get("userFullName", ""),
        "calClientCode": job.get("jobClientCode", ""),
        "calClientName": client.get("clientName", ""),
        "calJobNumber": job.get("jobNumber", ""),
        "calJobNumberSimple": _simple(job.get("jobNumber")),
        "calJobDescription1stLine": str(job.get("jobDescription", "")).split("\n")[0],
        "calJobHandlerName": _user(st, job.get("jobHandlerUserID")).get("userFullName", ""),
        "calJobAndPhase": summary["jobAndPhase"],
        "calJobPhaseNumberSimple": _simple(summary["jobAndPhase"]),
        "calPhaseDescription1stLine": summary.get("phaseDescription", ""),
        "calChargeCode": summary.get("chargeCode", ""),
        "calChargeCodeDescription": summary.get("chargeCodeDescription", ""),
        "calStartDate": start.strftime("%Y-%m-%d"),
        "calStartTime": start.strftime("%H:%M:%S"),
        "calEndTime": end.strftime("%H:%M:%S"),
        "calendarunallocatedunique": f"{summary['jobAndPhase']}###{summary.get('chargeCode', '')}",
        "calendarunallocatedestimated": summary.get("estimatedHours", 0),
        "calendarunallocatedbooked": booked,
        "calendarunallocatedremaining": summary.get("estimatedHours", 0) - booked,
        "calendarunallocatedtimesheets": 0,
        "calendarunallocateddraft": 0,
        "calendarunallocatedinitials": "",
        "calNumberOfDays": str((end.date() - start.date()).days + 1),
        "calDurationDescription": f"{hours:g} hour",
        "calHoursPerDay": f"{hours:g}",
    }


def tsp_view(st: SynergistState, record: dict[str, Any]) -> dict[str, Any]:
    job = _job(st, record.get("tspJobAndPhase"))
    client = next((c for c in st.clients if c["clientCode"] == job.get("jobClientCode")), {})
    return {
        **TSP_DEFAULTS,
        **record,
        "tspApprovalStatusName": APPROVAL_NAMES.get(record.get("tspApprovalStatus", "W"), ""),
        "tspJobPhaseNumberSimple": _simple(record.get("tspJobAndPhase")),
        "tspClientCode": job.get("jobClientCode", ""),
        "tspJobClientName": client.get("clientName", ""),
        "tspPhaseJobDescription1stline": str(job.get("jobDescription", "")).split("\n")[0],
    }
