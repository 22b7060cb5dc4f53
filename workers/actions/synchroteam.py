"""Synchroteam actions: upserts keyed on ``myId`` and the job lifecycle."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from workers.actions.context import ActionContext, ActionSpec, Clients
from workers.actions.params import ActionParams
from workers.connectors.errors import NotFound
from workers.intents import create_once


class Params(ActionParams):
    """Base for Synchroteam parameters: field names are the API's own, unknown names are errors."""

    def payload(self) -> dict[str, Any]:
        """The JSON body: only the fields the rule set, so an upsert leaves the rest alone."""
        return self.model_dump(mode="json", exclude_unset=True)


class RecordRef(Params):
    """A linked customer, site or equipment, by ``id`` or ``myId``."""

    id: int | None = None
    myId: str | None = None
    name: str | None = None


class NamedRef(Params):
    """A job type, report template or activity type, by ``id`` or ``name``."""

    id: int | None = None
    name: str | None = None


class UserRef(Params):
    """A technician or user, by ``id`` or ``login``."""

    id: int | None = None
    login: str | None = None
    name: str | None = None


class Position(Params):
    latitude: str | float
    longitude: str | float


class CustomFieldValue(Params):
    id: int | None = None
    label: str | None = None
    value: Any = None


class ReportItem(Params):
    nmCategory: str
    nmItem: str
    value: Any = None
    iteration: int | None = None


class Addressed(Params):
    """Address and contact fields shared by customers, sites and jobs."""

    address: str | None = None
    addressStreet: str | None = None
    addressComplement: str | None = None
    addressZIP: str | None = None
    addressCity: str | None = None
    addressProvince: str | None = None
    addressCountry: str | None = None
    position: Position | None = None
    contactFirstName: str | None = None
    contactLastName: str | None = None
    contactPhone: str | None = None
    contactMobile: str | None = None
    contactEmail: str | None = None
    customFieldValues: list[CustomFieldValue] | None = None


class Keyed(Addressed):
    id: int | None = Field(default=None, description="Synchroteam id; prefer myId")
    myId: str | None = Field(default=None, description="Your key (e.g. the ServiceTrade id): the upsert key")
    name: str | None = None

    @model_validator(mode="after")
    def _has_key(self) -> Keyed:
        if self.id is None and not self.myId:
            raise ValueError("id or myId is required (myId makes the upsert idempotent)")
        return self


class CustomerUpsert(Keyed):
    """Create or update a Synchroteam customer matched on ``myId`` (or ``id``)."""

    contactFax: str | None = None
    vatNumber: str | None = None


class SiteUpsert(Keyed):
    """Create or update a site; ``customer`` (``id`` or ``myId``) is required on create."""

    customer: RecordRef | None = None
    contactName: str | None = None


class EquipmentUpsert(Params):
    """Create or update equipment; a ``customer`` or ``site`` is required on create."""

    id: int | None = None
    myId: str | None = None
    name: str | None = None
    customer: RecordRef | None = None
    site: RecordRef | None = None
    customFieldValues: list[CustomFieldValue] | None = None

    @model_validator(mode="after")
    def _has_key(self) -> EquipmentUpsert:
        if self.id is None and not self.myId:
            raise ValueError("id or myId is required (myId makes the upsert idempotent)")
        return self


class JobKey(Params):
    """Identifies a job by ``id``, ``myId`` or ``num``."""

    id: str | None = Field(default=None, description='Synchroteam job id, e.g. "265_160719144323649"')
    myId: str | None = Field(default=None, description="Your key for the job")
    num: int | None = Field(default=None, description="Synchroteam job number")

    @model_validator(mode="after")
    def _has_key(self) -> JobKey:
        if self.id is None and not self.myId and self.num is None:
            raise ValueError("one of id, myId or num is required")
        return self

    def key(self) -> dict[str, str | int]:
        return {k: v for k, v in (("id", self.id), ("myId", self.myId), ("num", self.num)) if v is not None}


class JobUpsert(JobKey, Addressed):
    """Create or update a job matched on ``myId`` (or ``id``/``num``); ``customer`` required on create."""

    description: str | None = None
    priority: Literal["low", "medium", "high"] | None = None
    customer: RecordRef | None = None
    site: RecordRef | None = None
    equipment: RecordRef | None = None
    type: NamedRef | None = None
    reportTemplate: NamedRef | None = None
    technician: UserRef | None = None
    otherTechnicians: list[UserRef] | None = None
    scheduledStart: str | None = Field(default=None, description="dd/MM/yyyy HH:mm:ss")
    scheduledEnd: str | None = Field(default=None, description="dd/MM/yyyy HH:mm:ss")
    duration: int | None = Field(default=None, description="minutes")
    skills: list[str] | None = None
    report: list[ReportItem] | None = Field(default=None, description="on create only")
    preferences: dict[str, Any] | None = None


class ActivityUpsert(Params):
    """Create or update an activity; without ``id`` the id stored for this call is reused."""

    id: int | None = None
    activityType: NamedRef
    note: str | None = None
    dateStart: str = Field(description="local time, yyyy-mm-dd hh:mm")
    dateEnd: str = Field(description="local time, yyyy-mm-dd hh:mm")
    user: UserRef | None = None
    team: NamedRef | None = None


class JobSchedule(JobKey):
    """Schedule a job for a technician."""

    scheduledStart: str = Field(description="yyyy-mm-dd hh:mm:ss")
    scheduledEnd: str = Field(description="yyyy-mm-dd hh:mm:ss")
    technician: UserRef | None = None
    otherTechnicians: list[UserRef] | None = None


class JobComplete(JobKey):
    """Mark a job completed."""

    actualStart: str = Field(description="yyyy-mm-dd hh:mm")
    actualEnd: str = Field(description="yyyy-mm-dd hh:mm")


class PartLine(Params):
    """A part: ``reference`` (or ``id``) and ``quantity``, or ``serialNumbers`` for serialized parts."""

    id: str | None = None
    reference: str | None = None
    quantity: float | None = None
    serialNumbers: list[str] | None = None

    @model_validator(mode="after")
    def _named(self) -> PartLine:
        if self.id is None and not self.reference:
            raise ValueError("a part needs a reference or an id")
        if self.quantity is None and not self.serialNumbers:
            raise ValueError("a part needs a quantity, or serialNumbers for serialized parts")
        return self


class JobParts(JobKey):
    """Add parts to a job (``job/parts/send``)."""

    parts: list[PartLine] = Field(min_length=1)


class JobReport(JobKey):
    """Read a job's report (and its photos' names): the result feeds later steps (``summary``, ``blocks``)."""

    writes = False

    photos: bool = Field(default=True, description="also list the photos (without their data)")


LookupKind = Literal["jobtype", "activityType", "customfield", "jobReportTemplate", "jobschedulingwindow"]


class Lookup(Params):
    """Read a configuration list (job types, activity types, custom fields...) to map codes in later steps."""

    writes = False

    kind: LookupKind
    type: Literal["job", "customer", "site", "equipment", "user"] | None = Field(
        default=None, description="customfield only: which object's fields"
    )

    @model_validator(mode="after")
    def _type(self) -> Lookup:
        if (self.kind == "customfield") != (self.type is not None):
            raise ValueError("type is required for customfield, and only for it")
        return self


def report_summary(blocks: list[Any]) -> str:
    """One line per filled item, ``Block / Item: value (comment) [issue]``, for a comment or a timesheet."""
    lines = []
    for block in blocks:
        title = block.get("name") or block.get("blockName") or f"Block {block.get('id')}"
        for item in block.get("items") or []:
            value = item.get("value")
            if value in (None, ""):
                continue
            line = f"{title} / {item.get('name')}: {value}"
            if item.get("comment"):
                line += f" ({item['comment']})"
            if item.get("issue") not in (None, "", "-", "None"):
                line += f" [{item['issue']}]"
            lines.append(line)
    return "\n".join(lines)


def upsert(kind: str) -> Any:
    def run(clients: Clients, params: Params, ctx: ActionContext) -> dict[str, Any]:
        return clients.synchroteam.send(kind, params.payload())

    return run


def upsert_activity(clients: Clients, params: ActivityUpsert, ctx: ActionContext) -> dict[str, Any]:
    # Activities upsert only on id (no myId), so the id from the first run is kept per call; the create
    # itself records its intent first, and a retry after a crash finds the activity by what it sent.
    link = ctx.link_key("synchroteam.activity.upsert")
    payload = params.payload()
    sy = clients.synchroteam
    if params.id is None and (known := ctx.link_store.get(link)):
        payload["id"] = int(known)
    if "id" in payload:
        record = sy.send("activity", payload)
        if record.get("id") is not None:
            ctx.link_store.set(link, str(record["id"]))
        return record

    return create_once(
        ctx.link_store,
        ctx.intents,
        link,
        payload,
        create=lambda: sy.send("activity", payload),
        find=lambda sent, since: None if (found := sy.find_activity(sent)) is None else dict(found),
        ident=lambda record: record.get("id"),
        update=lambda found: sy.send("activity", {**payload, "id": found["id"]}),
    )


def schedule(clients: Clients, params: JobSchedule, ctx: ActionContext) -> dict[str, Any]:
    return clients.synchroteam.schedule_job(
        params.key(),
        params.scheduledStart,
        params.scheduledEnd,
        technician=params.technician.payload() if params.technician else None,
        other_technicians=[t.payload() for t in params.otherTechnicians or []] or None,
    )


def complete(clients: Clients, params: JobComplete, ctx: ActionContext) -> dict[str, Any]:
    return clients.synchroteam.complete_job(params.key(), params.actualStart, params.actualEnd)


def send_parts(clients: Clients, params: JobParts, ctx: ActionContext) -> dict[str, Any]:
    return clients.synchroteam.send_parts(params.key(), [p.payload() for p in params.parts])


def read_report(clients: Clients, params: JobReport, ctx: ActionContext) -> dict[str, Any]:
    try:
        blocks = clients.synchroteam.job_report(**params.key())
    except NotFound:
        blocks = []  # "If the block is not found a 404 Error is returned": nothing filled in yet
    result: dict[str, Any] = {"blocks": blocks, "summary": report_summary(list(blocks))}
    if params.photos:
        photos = clients.synchroteam.job_photos(image_data=False, **params.key()).get("photos") or []
        result["photos"] = [{k: p.get(k) for k in ("fileName", "comment", "iteration")} for p in photos]
    return result


def lookup(clients: Clients, params: Lookup, ctx: ActionContext) -> dict[str, Any]:
    filters = {"type": params.type} if params.type else {}
    items = clients.synchroteam.lookup(params.kind, **filters)
    return {"items": items, "by_name": {str(i.get("name") or i.get("label")): i.get("id") for i in items}}


def lifecycle(op: str) -> Any:
    def run(clients: Clients, params: JobKey, ctx: ActionContext) -> dict[str, Any]:
        method = getattr(clients.synchroteam, f"{op}_job")
        return dict(method(params.key()))

    return run


SPECS = [
    ActionSpec("synchroteam.job.upsert", JobUpsert, upsert("job"), "synchroteam"),
    ActionSpec("synchroteam.customer.upsert", CustomerUpsert, upsert("customer"), "synchroteam"),
    ActionSpec("synchroteam.site.upsert", SiteUpsert, upsert("site"), "synchroteam"),
    ActionSpec("synchroteam.equipment.upsert", EquipmentUpsert, upsert("equipment"), "synchroteam"),
    ActionSpec("synchroteam.activity.upsert", ActivityUpsert, upsert_activity, "synchroteam"),
    ActionSpec("synchroteam.job.schedule", JobSchedule, schedule, "synchroteam"),
    ActionSpec("synchroteam.job.complete", JobComplete, complete, "synchroteam"),
    ActionSpec("synchroteam.job.parts", JobParts, send_parts, "synchroteam"),
    ActionSpec("synchroteam.job.report", JobReport, read_report, "synchroteam"),
    ActionSpec("synchroteam.lookup", Lookup, lookup, "synchroteam"),
    *(
        ActionSpec(f"synchroteam.job.{op}", JobKey, lifecycle(op), "synchroteam", f"{op.capitalize()} a job.")
        for op in ("unschedule", "cancel", "validate", "confirm")
    ),
]
