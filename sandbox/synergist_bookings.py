"""Synergist calendar bookings (`calendar.json`) and pending timesheets (`tspending.json`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.synergist_calls import Call, Result, key_filter, need
from sandbox.synergist_store import BAD_INPUT, NOT_RECOGNISED, SynergistError, SynergistState
from sandbox.synergist_views import booking_view, time_summary, tsp_view

TSP_FIELDS = {
    "tspJobAndPhase",
    "tspTimeDate",
    "tspResourceCode",
    "tspWorkDone",
    "tspHoursNormal",
    "tspHoursOtime1",
    "tspHoursOtime2",
    "tspChargeCode",
    "tspTaskDescription",
    "tspStageCode",
}


def _iso(raw: Any, name: str) -> str:
    try:
        return datetime.fromisoformat(str(raw)).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise SynergistError(BAD_INPUT, f"{name}: expected YYYY-MM-DDTHH:MM:SS, got {raw!r}") from None


def calendar(st: SynergistState, call: Call) -> Result:
    table = st.tables["calendar"]
    if call.action == "calendardisplay":
        low, high = call.param("datefrom") or "0000-00-00", call.param("dateto") or "9999-12-31"
        rows = [r for r in table.values() if low <= str(r["calIsoDateTimeStart"])[:10] <= high]
        return Result([booking_view(st, r) for r in rows], paged=True)
    if call.action == "users":
        return Result(list(st.users), paged=True)
    if call.action == "unallocated":
        # Seed 001, "Unallocated list": estimates to book against. The sample row names the booking key
        # calTimeSummarySelect ([INCONS] a booking's create takes calTimeSummaryInternal): echoed as shown.
        rows = [unallocated_row(st, t) for t in st.time_summaries]
        if (client := call.param("client")) is not None:
            rows = [r for r in rows if r["_client"] == client]
        for param, key in (("job", "_job"), ("jobphase", "calJobPhaseSelect")):
            if (wanted := call.param(param)) is not None:
                rows = [r for r in rows if r[key] == wanted]
        return Result([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows], paged=True)
    if call.action not in {"create", "update", "delete"}:
        raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    out = []
    for item in call.items:
        if call.action == "create":
            need(
                item,
                "calTimeSummaryInternal",
                "calIsoDateTimeStart",
                "calIsoDateTimeEnd",
                "calDurationDecimalHours",
                "calResourceId",
            )
            time_summary(st, item["calTimeSummaryInternal"])
            values = {
                **item,
                "calIsoDateTimeStart": _iso(item["calIsoDateTimeStart"], "calIsoDateTimeStart"),
                "calIsoDateTimeEnd": _iso(item["calIsoDateTimeEnd"], "calIsoDateTimeEnd"),
                "calTimeSummaryInternal": int(item["calTimeSummaryInternal"]),
            }
            record = st.insert("calendar", st.next_key("calendar"), values)
        elif call.action == "update":
            # [INCONS] The update and delete tables say action=create; their examples say update/delete.
            need(
                item,
                "calDiaryInternal",
                "calIsoDateTimeStart",
                "calIsoDateTimeEnd",
                "calAllDay",
                "calResourceId",
            )
            record = st.get("calendar", int(item["calDiaryInternal"]))
            changes = {k: v for k, v in item.items() if k != "calDiaryInternal"}
            changes.update(
                calIsoDateTimeStart=_iso(item["calIsoDateTimeStart"], "calIsoDateTimeStart"),
                calIsoDateTimeEnd=_iso(item["calIsoDateTimeEnd"], "calIsoDateTimeEnd"),
                calAllDay=str(item["calAllDay"]).lower() == "true",
            )
            st.touch("calendar", record, changes)
        elif call.action == "delete":
            need(item, "diary_diaryinternal")
            record = st.get("calendar", int(item["diary_diaryinternal"]))
            del table[record["calDiaryInternal"]]
        else:
            raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
        # The docs: calTimeStampModified "returns 0" on calendar writes.
        out.append({**booking_view(st, record), "calTimeStampModified": 0})
    return Result(out, message="data processed successfully.")


def tspending(st: SynergistState, call: Call) -> Result:
    table = st.tables["tspending"]
    if call.action in {"", "timesheetpendinglist"}:
        rows = key_filter(call, list(table.values()), "tsp", {"tspending": "tspEntryNo", "job": "tspJobAndPhase"})
        if (resource := call.param("resource")) is not None:
            wanted = {r.strip(' "').lower() for r in resource.strip("[]").split(",")}
            rows = [r for r in rows if str(r.get("tspResourceCode", "")).lower() in wanted]
        elif call.action == "timesheetpendinglist":
            raise SynergistError(BAD_INPUT, "resource is mandatory")
        low, high = call.param("datefrom") or "0000-00-00", call.param("dateto") or "9999-12-31"
        rows = [r for r in rows if low <= str(r.get("tspTimeDate")) <= high]
        return Result([tsp_view(st, r) for r in rows], paged=True)
    if call.action not in {"create", "update", "delete"}:
        raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    out = []
    for item in call.items:
        if call.action == "create":
            need(item, "tspJobAndPhase", "tspTimeDate", "tspResourceCode")
            st.get("jobs", str(item["tspJobAndPhase"]).split(".")[0])
            values = {
                "tspWorkDone": "",
                "tspHoursNormal": 0,
                "tspHoursOtime1": 0,
                "tspHoursOtime2": 0,
                "tspApprovalStatus": "W",
                "tspDiaryInternal": 0,
                **{k: v for k, v in item.items() if k in TSP_FIELDS},
            }
            record = st.insert("tspending", st.next_key("tspending"), values)
            record["tspRecordVersionNumber"] = 0
        elif call.action == "update":
            need(item, "tspEntryNo")
            record = st.get("tspending", int(item["tspEntryNo"]))
            st.touch("tspending", record, {k: v for k, v in item.items() if k in TSP_FIELDS})
        elif call.action == "delete":
            need(item, "tspEntryNo")
            record = st.get("tspending", int(item["tspEntryNo"]))
            del table[record["tspEntryNo"]]
        else:
            raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
        out.append(tsp_view(st, record))
    # The documented tspending create answer is a paged list envelope, unlike the other writes.
    return Result(out, paged=call.action == "create", message="data processed successfully.")


def unallocated_row(st: SynergistState, summary: dict[str, Any]) -> dict[str, Any]:
    job = next((j for j in st.tables["jobs"].values() if summary["jobAndPhase"].startswith(f"{j['jobNumber']}.")), {})
    client = next((c for c in st.clients if c["clientCode"] == job.get("jobClientCode")), {})
    booked = sum(
        float(r.get("calDurationDecimalHours") or 0)
        for r in st.tables["calendar"].values()
        if str(r["calTimeSummaryInternal"]) == str(summary["calTimeSummaryInternal"])
    )
    estimated = float(summary.get("estimatedHours", 0))
    return {
        "_client": job.get("jobClientCode", ""),
        "_job": job.get("jobNumber", ""),
        "calBookedSelect": booked,
        "calChargeCodeSelect": summary.get("chargeCode", ""),
        "calChargeDescSelect": summary.get("chargeCodeDescription", ""),
        "calClientSelect": client.get("clientName", ""),
        "calDescriptionSelect": summary.get("phaseDescription", ""),
        "calEstimatedSelect": estimated,
        "calJobPhaseSelect": summary["jobAndPhase"],
        "calRemainingSelect": estimated - booked,
        "calStatusSelect": "Live",
        "calTimeSummarySelect": summary["calTimeSummaryInternal"],
        "calUniqueSelect": f"{summary['jobAndPhase']}###{summary.get('chargeCode', '')}",
    }


def phases(st: SynergistState, call: Call) -> Result:
    """Seed 001, "Phases": `phaseslist` rows (phaseJobAndPhase, phasePhase, phaseStatus...); the sandbox's
    phases are those its time summaries book against. Create, update and delete are not documented."""
    if call.action != "":
        raise SynergistError(NOT_RECOGNISED, f"invalid action {call.action}")
    seen: dict[str, dict[str, Any]] = {}
    for summary in st.time_summaries:
        code = summary["jobAndPhase"]
        number, _, phase = code.partition(".")
        seen.setdefault(
            code,
            {
                "phaseuuid": f"PH{summary['calTimeSummaryInternal']}",
                "phaseTimeStampModified": 0,
                "phaseRecordVersionNumber": 1,
                "phaseJobNumber": number,
                "phaseJobAndPhase": code,
                "phasePhase": phase,
                "phaseDescription": summary.get("phaseDescription", ""),
                "phaseStatus": "Live",
            },
        )
    rows = key_filter(call, list(seen.values()), "phase", {"job": "phaseJobNumber", "jobphase": "phaseJobAndPhase"})
    return Result(rows, paged=True)
