"""Synergist actions; creates are idempotent through the link store, since Synergist has no upsert, and a
create interrupted by a crash is found again by what it sent (workers/intents.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from workers.actions.context import ActionContext, ActionSpec, Clients, with_link
from workers.actions.params import ActionParams
from workers.intents import create_once

Id = int | str


class Params(ActionParams):
    """Field names are Synergist's own; unknown names are errors."""

    def payload(self, *leave_out: str) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_unset=True)
        return {k: v for k, v in data.items() if k not in leave_out}


class WithCustomFields(Params):
    """Also takes ``<prefix>CustomField<N>`` values, top level or under ``custom_fields``.

    Rule files use ``custom_fields``: the rule loader checks parameter names against the
    model's fields, and numbered custom-field names cannot be listed there.
    """

    custom_prefix: ClassVar[str] = ""
    custom_fields: dict[str, Any] = Field(
        default_factory=dict, exclude=True, description="<prefix>CustomField<N> values, sent as they are"
    )

    @model_validator(mode="before")
    @classmethod
    def _collect_custom(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        custom = {k: v for k, v in data.items() if cls._is_custom(k)}
        if not custom:
            return data
        rest = {k: v for k, v in data.items() if k not in custom}
        return {**rest, "custom_fields": {**rest.get("custom_fields", {}), **custom}}

    @model_validator(mode="after")
    def _custom_names(self) -> WithCustomFields:
        for name in self.custom_fields:
            if not self._is_custom(name):
                raise ValueError(f"{name!r} is not a {self.custom_prefix}CustomField<N> name")
        return self

    @classmethod
    def _is_custom(cls, name: str) -> bool:
        return re.fullmatch(rf"{cls.custom_prefix}CustomField\d+", name) is not None

    def payload(self, *leave_out: str) -> dict[str, Any]:
        return {**super().payload(*leave_out), **self.custom_fields}


class ActivityFields(WithCustomFields):
    custom_prefix = "activity"
    activitySubject: str | None = None
    activityDetails: str | None = None
    activityStatus: str | None = None
    activityDateDue: str | None = Field(default=None, description="YYYY-MM-DD")
    activityCompleted: bool | str | None = None


class ActivityCreate(ActivityFields):
    """Create an activity (a later run for the same record updates it, following ``on_conflict``)."""

    on_conflict: Literal["overwrite", "keep_theirs", "fail"] = Field(
        default="keep_theirs", exclude=True, description="on a later update: see synergist.activity.update"
    )

    link_kind: ClassVar[str] = "synergist.activity"

    activityActivitytypeCode: str = Field(description='e.g. "Notes"')
    activityClientCode: str = Field(description='e.g. "1/C4126"')
    Job: str | None = Field(default=None, description='e.g. "1/0000123"')
    Jobphase: str | None = None
    activityCompanyNumber: int | None = None


OnConflictPolicy = Literal["overwrite", "keep_theirs", "fail"]
CONFLICT_HELP = "a field someone else changed since our last write: overwrite, keep_theirs (default) or fail"


class ActivityUpdate(ActivityFields):
    """Update an activity's given fields; on a stale version, re-read and follow ``on_conflict``."""

    activityID: int
    activityRecordVersionNumber: int | None = None
    activityActivitytypeCode: str | None = None
    activityClientCode: str | None = None
    on_conflict: OnConflictPolicy = Field(default="keep_theirs", exclude=True, description=CONFLICT_HELP)


class ActivityDelete(Params):
    """Delete an activity."""

    activityID: int


class JobFields(WithCustomFields):
    custom_prefix = "job"
    jobDescription: str | None = None
    jobComments: str | None = None
    jobDateIn: str | None = Field(default=None, description='e.g. "2017/04/01"')
    jobDateDue: str | None = None
    jobStatus: Literal["1", "2", "3", "4", "5"] | None = Field(
        default=None, description="1 Quote, 2 Live, 3 In house, 4 On hold, 5 Special"
    )
    jobJobtypeCode: str | None = None
    jobHandlerTeam: str | None = None
    jobReferenceJob: str | None = None
    jobContactInternalRef: Id | None = None
    jobProjectCode: Id | None = None
    jobCampaignNo: Id | None = None


class JobCreate(JobFields):
    """Create a job from a template (a retry updates the job already created)."""

    link_kind: ClassVar[str] = "synergist.job"

    varJobTemplate: str = Field(description='template job, e.g. "8/00800001"')
    jobClientCode: str
    jobNumber: str | None = Field(default=None, description="where manual numbering is allowed")
    jobHandleruserid: Id | None = None
    jobPrefixOnly: str | None = None


class JobUpdate(JobFields):
    """Update a job's fields (Synergist 12.2+)."""

    jobNumber: str
    jobClientCode: str | None = None
    jobOrderNumber: str | None = None
    jobHandlerUserID: Id | None = None
    jobCurrencyCode: str | None = None
    jobWorkflowCode: str | None = None
    jobSalesStatusReason: str | None = Field(default=None, description='with jobStatus "2", e.g. "3-6"')


class BookingCreate(Params):
    """Book time in the calendar (a retry moves the booking already made)."""

    link_kind: ClassVar[str] = "synergist.calendar"

    calTimeSummaryInternal: Id
    calIsoDateTimeStart: str = Field(description='e.g. "2017-07-10T14:30:00"')
    calIsoDateTimeEnd: str
    calDurationDecimalHours: float | str
    calResourceId: Id
    calAllDay: Literal["true", "false"] = Field(default="false", description="used when a retry updates")


class BookingUpdate(Params):
    """Move or resize a calendar booking."""

    calDiaryInternal: Id
    calIsoDateTimeStart: str
    calIsoDateTimeEnd: str
    calAllDay: Literal["true", "false"]
    calResourceId: Id


class BookingDelete(Params):
    """Delete a calendar booking."""

    diary_diaryinternal: Id


class PhaseList(Params):
    """List a job's phases (``phaseJobAndPhase`` is what timesheets and ``Jobphase`` take)."""

    writes = False

    job: str = Field(description='e.g. "1/00000519"')


class Unallocated(Params):
    """List the estimates that can be booked (``calTimeSummaryInternal`` for ``synergist.calendar.create``)."""

    writes = False

    client: str | None = Field(default=None, description='key field filter, e.g. "1/F667"')
    job: str | None = None
    jobphase: str | None = None


class TimesheetCreate(Params):
    """Create a pending timesheet entry (a retry updates the entry already created)."""

    link_kind: ClassVar[str] = "synergist.timesheet"

    tspJobAndPhase: str = Field(description='e.g. "1/00000772.001"')
    tspTimeDate: str = Field(description="YYYY-MM-DD")
    tspResourceCode: str = Field(description='e.g. "1/USER"')
    tspWorkDone: str | None = None
    tspHoursNormal: float | None = None
    tspHoursOtime1: float | None = None
    tspHoursOtime2: float | None = None
    tspChargeCode: str | None = None
    tspTaskDescription: str | None = None


def _written_key(ctx: ActionContext, activity_id: int) -> str:
    return f"synergist.activity.written:{activity_id}"


def _update_with_base(
    clients: Clients, ctx: ActionContext, activity_id: int, fields: dict[str, Any], version: int | None, policy: str
) -> dict[str, Any]:
    """Update through the link store's memory of our last write: its version and the values we wrote."""
    raw = ctx.link_store.get(_written_key(ctx, activity_id))
    last = json.loads(raw) if raw else None
    if version is None and last is not None:
        version = int(last["version"])
    result = clients.synergist.update_activity(
        activity_id,
        fields,
        version=version,
        base=(last or {}).get("fields"),
        on_conflict=policy,  # type: ignore[arg-type]  # checked by the parameter model's Literal
    )
    _remember(ctx, activity_id, result, {**((last or {}).get("fields") or {}), **result.get("written", fields)})
    return result


def _remember(ctx: ActionContext, activity_id: int, result: dict[str, Any], fields: dict[str, Any]) -> None:
    version = result.get("activityRecordVersionNumber")
    if version is not None:
        ctx.link_store.set(_written_key(ctx, activity_id), json.dumps({"version": int(version), "fields": fields}))


def create_activity(clients: Clients, params: ActivityCreate, ctx: ActionContext) -> dict[str, Any]:
    sg = clients.synergist
    fields = params.payload("Job", "Jobphase", "activityCompanyNumber")
    payload = params.payload()

    def create() -> dict[str, Any]:
        record = sg.create_activity(payload)
        _remember(ctx, int(record["activityID"]), record, fields)
        return record

    return with_link(
        ctx,
        "synergist.activity.create",
        params.link_kind,
        update=lambda known: _update_with_base(clients, ctx, int(known), fields, None, params.on_conflict),
        create=lambda: create_once(
            ctx.link_store,
            ctx.intents,
            ctx.link_key("synergist.activity.create"),
            payload,
            create=create,
            find=lambda sent, since: _found(sg.find_activity(sent, since=since)),
            ident=lambda record: record.get("activityID"),
            update=lambda found: sg.update_activity(int(found["activityID"]), fields),
        ),
        id_of=lambda record: record.get("activityID"),
    )


def update_activity(clients: Clients, params: ActivityUpdate, ctx: ActionContext) -> dict[str, Any]:
    fields = params.payload("activityID", "activityRecordVersionNumber")
    return _update_with_base(
        clients, ctx, params.activityID, fields, params.activityRecordVersionNumber, params.on_conflict
    )


def delete_activity(clients: Clients, params: ActivityDelete, ctx: ActionContext) -> dict[str, Any]:
    return clients.synergist.delete_activity(params.activityID)


def create_job(clients: Clients, params: JobCreate, ctx: ActionContext) -> dict[str, Any]:
    sg = clients.synergist
    fields = params.payload("varJobTemplate", "jobNumber", "jobPrefixOnly", "jobHandleruserid")
    if params.jobHandleruserid is not None:  # create and update spell this field differently
        fields["jobHandlerUserID"] = params.jobHandleruserid
    payload = params.payload()
    return with_link(
        ctx,
        "synergist.job.create",
        params.link_kind,
        update=lambda known: {"jobNumber": known, **sg.update_job(known, fields)},
        create=lambda: create_once(
            ctx.link_store,
            ctx.intents,
            ctx.link_key("synergist.job.create"),
            payload,
            create=lambda: sg.create_job(payload),
            find=lambda sent, since: _found(sg.find_job(sent, since=since)),
            ident=lambda record: record.get("jobNumber"),
            update=lambda found: {"jobNumber": found["jobNumber"], **sg.update_job(str(found["jobNumber"]), fields)},
        ),
        id_of=lambda record: record.get("jobNumber"),
    )


def update_job(clients: Clients, params: JobUpdate, ctx: ActionContext) -> dict[str, Any]:
    return clients.synergist.update_job(params.jobNumber, params.payload("jobNumber"))


def create_booking(clients: Clients, params: BookingCreate, ctx: ActionContext) -> dict[str, Any]:
    sg = clients.synergist
    fields = params.payload("calTimeSummaryInternal", "calDurationDecimalHours")
    fields.setdefault("calAllDay", params.calAllDay)
    payload = params.payload("calAllDay")
    return with_link(
        ctx,
        "synergist.calendar.create",
        params.link_kind,
        update=lambda known: sg.update_booking(known, fields),
        create=lambda: create_once(
            ctx.link_store,
            ctx.intents,
            ctx.link_key("synergist.calendar.create"),
            payload,
            create=lambda: sg.create_booking(payload),
            find=lambda sent, since: sg.find_booking(sent),
            ident=lambda record: record.get("calDiaryInternal"),
            update=lambda found: sg.update_booking(found["calDiaryInternal"], fields),
        ),
        id_of=lambda record: record.get("calDiaryInternal"),
    )


def update_booking(clients: Clients, params: BookingUpdate, ctx: ActionContext) -> dict[str, Any]:
    return clients.synergist.update_booking(params.calDiaryInternal, params.payload("calDiaryInternal"))


def delete_booking(clients: Clients, params: BookingDelete, ctx: ActionContext) -> dict[str, Any]:
    return clients.synergist.delete_booking(params.diary_diaryinternal)


def create_timesheet(clients: Clients, params: TimesheetCreate, ctx: ActionContext) -> dict[str, Any]:
    sg = clients.synergist
    payload = params.payload()
    return with_link(
        ctx,
        "synergist.timesheet.create",
        params.link_kind,
        update=lambda known: sg.update_pending_timesheet(int(known), payload),
        create=lambda: create_once(
            ctx.link_store,
            ctx.intents,
            ctx.link_key("synergist.timesheet.create"),
            payload,
            create=lambda: sg.create_pending_timesheet(payload),
            find=lambda sent, since: sg.find_pending_timesheet(sent),
            ident=lambda record: record.get("tspEntryNo"),
            update=lambda found: sg.update_pending_timesheet(int(found["tspEntryNo"]), payload),
        ),
        id_of=lambda record: record.get("tspEntryNo"),
    )


def _found(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if record is None else dict(record)


def list_phases(clients: Clients, params: PhaseList, ctx: ActionContext) -> dict[str, Any]:
    phases = list(clients.synergist.iter_phases(params.job))
    return {"phases": phases, "first": phases[0].get("phaseJobAndPhase") if phases else None}


def unallocated(clients: Clients, params: Unallocated, ctx: ActionContext) -> dict[str, Any]:
    filters = {k: v for k, v in params.payload().items() if v is not None}
    return {"estimates": clients.synergist.unallocated(**filters)}


SPECS = [
    ActionSpec("synergist.activity.create", ActivityCreate, create_activity, "synergist"),
    ActionSpec("synergist.activity.update", ActivityUpdate, update_activity, "synergist"),
    ActionSpec("synergist.activity.delete", ActivityDelete, delete_activity, "synergist"),
    ActionSpec("synergist.job.create", JobCreate, create_job, "synergist"),
    ActionSpec("synergist.job.update", JobUpdate, update_job, "synergist"),
    ActionSpec("synergist.calendar.create", BookingCreate, create_booking, "synergist"),
    ActionSpec("synergist.calendar.update", BookingUpdate, update_booking, "synergist"),
    ActionSpec("synergist.calendar.delete", BookingDelete, delete_booking, "synergist"),
    ActionSpec("synergist.timesheet.create", TimesheetCreate, create_timesheet, "synergist"),
    ActionSpec("synergist.phase.list", PhaseList, list_phases, "synergist"),
    ActionSpec("synergist.calendar.unallocated", Unallocated, unallocated, "synergist"),
]
