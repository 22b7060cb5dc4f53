"""Synchroteam job lifecycle actions: schedule, unschedule, cancel, validate, confirm and complete."""

from __future__ import annotations

from typing import Any

from sandbox.synchroteam_store import FILTER_DATE, JOB_DATE, SHORT_DATE, Invalid, SynchroteamState, parse_date

ACTIONS = ("schedule", "unschedule", "cancel", "validate", "confirm", "complete")
# [INCONS] `confirmed` is what confirm returns, yet the job status enum does not list it.
RESULT_STATUS = {
    "cancel": "cancelled",
    "validate": "validated",
    "confirm": "confirmed",
    "complete": "completed",
}


def _job(st: SynchroteamState, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not any(body.get(k) not in (None, "") for k in ("id", "myId", "num")):
        raise Invalid("id, myId or num is required")
    job = st.find("job", body)
    if job is None:
        raise Invalid(f"job not found: { {k: body[k] for k in ('id', 'myId', 'num') if k in body} }", 404)
    return job


def _person(st: SynchroteamState, ref: Any) -> dict[str, Any]:
    user = st.user(ref) or {}
    return {"id": user.get("id"), "name": user.get("name"), "login": user.get("login")}


def run_action(st: SynchroteamState, action: str, body: Any) -> list[dict[str, Any]]:
    """Apply one lifecycle action; the docs answer each with a one-element list."""
    job = _job(st, body)
    if action == "schedule":
        start, end = body.get("scheduledStart"), body.get("scheduledEnd")
        # [INCONS] schedule takes yyyy-mm-dd HH:mm:ss while the job object stores dd/MM/yyyy HH:mm:ss.
        begins = parse_date(start, FILTER_DATE, "scheduledStart")
        ends = parse_date(end, FILTER_DATE, "scheduledEnd")
        if ends < begins:
            raise Invalid("scheduledEnd must not be before scheduledStart")
        if not body.get("technician"):
            raise Invalid("technician id or login is required")
        technician = _person(st, body["technician"])
        others = [_person(st, o) for o in body.get("otherTechnicians") or []]
        job.update(
            status="scheduled",
            scheduledStart=begins.strftime(JOB_DATE),
            scheduledEnd=ends.strftime(JOB_DATE),
            technician={"id": technician["id"]},
            otherTechnicians=[{"id": o["id"]} for o in others],
        )
        st.touch(job)
        return [
            {
                "id": job["id"],
                "status": "scheduled",
                "scheduledStart": start,
                "scheduledEnd": end,
                "technician": technician,
                "otherTechnicians": others,
            }
        ]
    if action == "unschedule":
        job.update(scheduledStart=None, scheduledEnd=None, technician=None, otherTechnicians=[])
        st.touch(job)
        # [INCONS] The sample answer still says "scheduled" after unscheduling; we echo the docs.
        return [
            {
                "id": job["id"],
                "status": "scheduled",
                "scheduledStart": None,
                "scheduledEnd": None,
                "technician": None,
            }
        ]
    if action == "complete":
        started = parse_date(body.get("actualStart"), SHORT_DATE, "actualStart")
        ended = parse_date(body.get("actualEnd"), SHORT_DATE, "actualEnd")
        if ended < started:
            raise Invalid("actualEnd must not be before actualStart")
        job.update(
            actualStart=started.strftime(JOB_DATE),
            actualEnd=ended.strftime(JOB_DATE),
            duration=int((ended - started).total_seconds() // 60),
        )
    if action == "confirm" and not (job.get("preferences") or {}).get("isDraft"):
        raise Invalid("only jobs in draft scheduling can be confirmed")
    job["status"] = RESULT_STATUS[action]
    st.touch(job)
    return [{"id": job["id"], "status": job["status"]}]
