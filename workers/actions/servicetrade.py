"""ServiceTrade actions: jobs (create, update, comment), appointments (create, update, complete), service
requests, and attachments (files, or a Synchroteam job's photos and report)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from workers.actions.context import ActionContext, ActionSpec, Clients, with_link
from workers.actions.params import ActionParams
from workers.connectors.servicetrade import EXTERNAL_ID_TYPES
from workers.intents import create_once

Visibility = Literal["public", "schedule", "tech", "billing"]


class Params(ActionParams):
    pass

    def payload(self, *leave_out: str) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_unset=True)
        return {k: v for k, v in data.items() if k not in leave_out}


class JobComment(Params):
    """Comment on a job once per rule call (a retry, even after a crash, finds the comment already posted).

    It is found by its marker, or without one by its text and time (see "Creates, crashes and retries").
    """

    jobId: int
    content: str = Field(description="text of the comment")
    visibility: list[Visibility] | None = Field(
        default=None, description="empty or missing: private, neither schedule nor tech"
    )
    marker: bool = Field(
        default=True,
        description="end the comment with a short tag, [fieldrelay:<12 hex>], that lets a retry after a crash "
        "recognise it; false: match its exact text posted since the first attempt instead",
    )


class JobFields(Params):
    """The job fields a create and an update both send (seed 002, "Job", parameters for POST / PUT)."""

    vendorId: int | None = None
    customerId: int | None = None
    ownerId: int | None = None
    salesId: int | None = None
    termsId: int | None = None
    contractId: int | None = None
    primaryContactId: int | None = None
    assignedOfficeId: int | None = None
    type: str | None = Field(default=None, description="repair, inspection, ...")
    status: str | None = None
    visibility: list[str] | None = None
    serviceRequestIds: list[int] | None = None
    customerPo: str | None = Field(default=None, max_length=40)
    description: str | None = None
    budgeted: bool | None = None


class JobUpdate(JobFields):
    """Change a job's fields (``PUT /job/{jobId}``)."""

    jobId: int
    brokerId: int | None = None


class AppointmentCreate(Params):
    """Create an appointment on a job (a retry updates the one already created)."""

    link_kind: ClassVar[str] = "servicetrade.appointment"

    jobId: int
    status: str | None = Field(default=None, description="default scheduled")
    serviceRequestIds: list[int] | None = None
    techIds: list[int] | None = None
    windowStart: int | None = Field(default=None, description="Unix seconds")
    windowEnd: int | None = Field(default=None, description="Unix seconds")
    released: bool | None = None


class AppointmentRef(Params):
    """An appointment by id, or the job whose ``currentAppointment`` it is (seed 002, "Job": the job
    record embeds ``currentAppointment{id, uri, name, status, techs, released}``)."""

    appointmentId: int | None = None
    jobId: int | None = Field(default=None, description="use the job's currentAppointment")

    @model_validator(mode="after")
    def _has_ref(self) -> AppointmentRef:
        if self.appointmentId is None and self.jobId is None:
            raise ValueError("appointmentId or jobId is required")
        return self


AppointmentStatus = Literal["scheduled", "canceled_by_vendor", "canceled_by_customer", "completed", "no_show"]


class AppointmentUpdate(AppointmentRef):
    """Change an appointment (``PUT /appointment/{id}``); ``unscheduled`` cannot be set by a PUT."""

    status: AppointmentStatus | None = None
    techIds: list[int] | None = None
    windowStart: int | None = Field(default=None, description="Unix seconds")
    windowEnd: int | None = Field(default=None, description="Unix seconds")
    released: bool | None = None


class AppointmentComplete(AppointmentRef):
    """Complete an appointment; ``services: done`` also marks each of its service requests done."""

    services: Literal["done", "leave"] = Field(default="leave", description="done: every service completion=done")


class JobCreate(JobFields):
    """Create a job (``POST /job``); a retry updates the job already created for this source record."""

    link_kind: ClassVar[str] = "servicetrade.job"

    locationId: int


class ServiceRequestUpdate(Params):
    """Change a service request (``PUT /servicerequest/{id}``); ``status: closed`` is the close-out."""

    serviceRequestId: int
    status: Literal["open", "in_progress", "closed", "pending", "canceled", "void"] | None = None
    description: str | None = None
    windowStart: int | None = None
    windowEnd: int | None = None
    assetId: int | None = None


class SynchroteamJobRef(Params):
    id: str | None = None
    myId: str | None = None
    num: int | None = None

    def key(self) -> dict[str, str | int]:
        return {k: v for k, v in (("id", self.id), ("myId", self.myId), ("num", self.num)) if v is not None}


class AttachmentUpload(Params):
    """Attach files to a job or an appointment: text or base64 content, or a Synchroteam job's photos.

    Uploads once per event and file: a retry answers from the link store.
    """

    entityType: Literal["job", "appointment"] = "job"
    entityId: int
    purposeId: int = Field(default=1, description="1 Job Paperwork, 3 Job Picture, 7 Generic Attachment")
    description: str | None = None
    fileName: str | None = Field(default=None, description="with content or content_base64")
    contentType: str = "application/octet-stream"
    content: str | None = Field(default=None, description="text to upload as the file")
    content_base64: str | None = Field(default=None, description="binary file, base64")
    synchroteam_photos: SynchroteamJobRef | None = Field(
        default=None, description="every photo of this Synchroteam job (id, myId or num)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> AttachmentUpload:
        sources = [x for x in (self.content, self.content_base64, self.synchroteam_photos) if x is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of content, content_base64 or synchroteam_photos")
        if self.synchroteam_photos is None and not self.fileName:
            raise ValueError("fileName is required with content or content_base64")
        if self.synchroteam_photos is not None and not self.synchroteam_photos.key():
            raise ValueError("synchroteam_photos needs id, myId or num")
        return self


def comment(clients: Clients, params: JobComment, ctx: ActionContext) -> dict[str, Any]:
    # A comment has no natural key: post it once per event, answer retries from the link, and after a
    # crash between the post and the link, find it among the job's comments (workers/intents.py).
    link = f"servicetrade.job.comment:{ctx.call_key()}"
    if known := ctx.link_store.get(link):
        return {"id": int(known) if known.isdigit() else known, "content": params.content, "repeated": True}
    tag = f"[fieldrelay:{ctx.call_key()[:12]}]" if params.marker else None
    content = f"{params.content}\n{tag}" if tag else params.content
    st = clients.servicetrade
    return create_once(
        ctx.link_store,
        ctx.intents,
        link,
        {"content": content},
        create=lambda: st.comment_job(params.jobId, content, params.visibility),
        find=lambda sent, since: _found(
            st.find_job_comment(params.jobId, marker=tag, content=sent.get("content"), created_after=since)
        ),
        ident=lambda record: record.get("id"),
    )


def update(clients: Clients, params: JobUpdate, ctx: ActionContext) -> dict[str, Any]:
    return clients.servicetrade.update_job(params.jobId, params.payload("jobId"))


class ExternalIdSet(Params):
    """Store another system's id on a ServiceTrade record (``POST /externalid/{entityType}/{entityId}/{systemName}``).

    Rules read it back through ``entity.externalIds.<systemName>`` on later events of that record.
    ``systemName`` must be an external system the ServiceTrade account knows; an empty ``value`` removes it.
    """

    entityType: Literal[EXTERNAL_ID_TYPES] = Field(  # type: ignore[valid-type]
        description="the record's type (the ExternalId resource supports these)"
    )
    entityId: int
    systemName: str = Field(min_length=1, description="the external system's name in ServiceTrade")
    value: str = Field(description="that system's id for the record; empty removes it")


def create_appointment(clients: Clients, params: AppointmentCreate, ctx: ActionContext) -> dict[str, Any]:
    st = clients.servicetrade
    changes = params.payload("jobId", "serviceRequestIds")
    fields = params.payload("jobId")
    return with_link(
        ctx,
        "servicetrade.appointment.create",
        params.link_kind,
        update=lambda known: st.update_appointment(known, changes),
        create=lambda: create_once(
            ctx.link_store,
            ctx.intents,
            ctx.link_key("servicetrade.appointment.create"),
            fields,
            create=lambda: st.create_appointment(params.jobId, **fields),
            find=lambda sent, since: _found(st.find_appointment(params.jobId, sent, created_after=since)),
            ident=lambda record: record.get("id"),
            update=lambda found: st.update_appointment(found["id"], changes),
        ),
        id_of=lambda record: record.get("id"),
    )


def _found(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if record is None else dict(record)


def set_external_id(clients: Clients, params: ExternalIdSet, ctx: ActionContext) -> dict[str, Any]:
    # Setting the same value again is harmless, so a retry needs no link.
    result = clients.servicetrade.set_external_id(params.entityType, params.entityId, params.systemName, params.value)
    return {
        "entityType": params.entityType,
        "entityId": params.entityId,
        "systemName": params.systemName,
        "value": result.get("value", params.value),
    }


def _appointment_id(clients: Clients, params: AppointmentRef, ctx: ActionContext) -> int:
    """The appointment named, or the job's: its `currentAppointment`, else (once that one is completed and no
    longer current) the one this call chose before, else the job's latest appointment by window."""
    if params.appointmentId is not None:
        return params.appointmentId
    link = f"servicetrade.appointment.of-job:{ctx.call_key()}"
    if known := ctx.link_store.get(link):
        return int(known)
    job = clients.servicetrade.get_entity("job", str(params.jobId))
    current = job.get("currentAppointment") or {}
    chosen = current.get("id")
    if not chosen:
        appointments: list[dict[str, Any]] = [
            dict(a) for a in clients.servicetrade.iter_list("appointment", jobId=params.jobId)
        ]
        latest = max(appointments, key=lambda a: int(a.get("windowStart") or 0), default=None)
        if latest is None:
            raise ValueError(f"job {params.jobId} has no appointment")
        chosen = latest["id"]
    ctx.link_store.set(link, str(chosen))
    return int(chosen)


def update_appointment(clients: Clients, params: AppointmentUpdate, ctx: ActionContext) -> dict[str, Any]:
    appointment_id = _appointment_id(clients, params, ctx)
    result = clients.servicetrade.update_appointment(appointment_id, params.payload("appointmentId", "jobId"))
    return {"id": appointment_id, **result}


def complete_appointment(clients: Clients, params: AppointmentComplete, ctx: ActionContext) -> dict[str, Any]:
    appointment_id = _appointment_id(clients, params, ctx)
    result = {"id": appointment_id, **clients.servicetrade.update_appointment(appointment_id, {"status": "completed"})}
    if params.services == "done":
        done = []
        for service in result.get("serviceRequests") or []:
            if service.get("id") is not None and service.get("completion") != "done":
                clients.servicetrade.complete_appointment_service(appointment_id, service["id"], "done")
                done.append(service["id"])
        result["servicesDone"] = done
    return result


def create_job(clients: Clients, params: JobCreate, ctx: ActionContext) -> dict[str, Any]:
    # No natural key (`number` is generated): the job made for this source record is kept in the link store,
    # and a run after a crash looks for it (`find_job`) before creating another.
    st = clients.servicetrade
    payload = params.payload()
    changes = params.payload("locationId")
    return with_link(
        ctx,
        "servicetrade.job.create",
        params.link_kind,
        update=lambda known: {"id": int(known), **st.update_job(known, changes)},
        create=lambda: create_once(
            ctx.link_store,
            ctx.intents,
            ctx.link_key("servicetrade.job.create"),
            payload,
            create=lambda: st.create_job(payload),
            find=lambda sent, since: _found(st.find_job(sent, created_after=since)),
            ident=lambda record: record.get("id"),
            update=lambda found: {"id": found["id"], **st.update_job(found["id"], changes)},
        ),
        id_of=lambda record: record.get("id"),
    )


def update_service_request(clients: Clients, params: ServiceRequestUpdate, ctx: ActionContext) -> dict[str, Any]:
    fields = params.payload("serviceRequestId")
    return {
        "id": params.serviceRequestId,
        **clients.servicetrade.update_service_request(params.serviceRequestId, fields),
    }


def _files(clients: Clients, params: AttachmentUpload) -> list[tuple[str, bytes, str, str | None]]:
    """(file name, bytes, content type, description) for each file the parameters name."""
    if params.synchroteam_photos is not None:
        photos = clients.synchroteam.job_photos(image_data=True, **params.synchroteam_photos.key())
        files = []
        for n, photo in enumerate(photos.get("photos") or []):
            data = photo.get("imageData")
            if not data:
                continue  # "imageData ... optional": nothing to upload without it
            try:
                content = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"photo {photo.get('fileName')!r}: imageData is not Base64") from None
            name = photo.get("fileName") or f"photo-{n + 1}.jpg"
            kind = "image/png" if name.lower().endswith(".png") else "image/jpeg"
            files.append((name, content, kind, photo.get("comment") or params.description))
        return files
    assert params.fileName is not None  # the validator requires it with content
    if params.content is not None:
        return [(params.fileName, params.content.encode(), params.contentType, params.description)]
    try:
        raw = base64.b64decode(params.content_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("content_base64 is not Base64") from None
    return [(params.fileName, raw, params.contentType, params.description)]


def _upload_once(
    clients: Clients,
    params: AttachmentUpload,
    ctx: ActionContext,
    link: str,
    name: str,
    content: bytes,
    kind: str,
    description: str | None,
) -> dict[str, Any]:
    """One file, uploaded once: after a crash the record's attachments are read for it first."""
    st = clients.servicetrade
    sent = {"fileName": name, "bytes": len(content)}
    return create_once(
        ctx.link_store,
        ctx.intents,
        link,
        sent,
        create=lambda: dict(
            st.upload_attachment(params.entityType, params.entityId, params.purposeId, name, content, kind, description)
        ),
        find=lambda _sent, since: _found(
            st.find_attachment(params.entityType, params.entityId, name, created_after=since)
        ),
        ident=lambda record: record.get("id"),
    )


def upload_attachment(clients: Clients, params: AttachmentUpload, ctx: ActionContext) -> dict[str, Any]:
    uploaded: list[dict[str, Any]] = []
    for name, content, kind, description in _files(clients, params):
        # Once per event and file name: a retry after a partial run uploads only what is missing.
        link = f"servicetrade.attachment.upload:{ctx.call_key()}:{name}"
        if known := ctx.link_store.get(link):
            uploaded.append({"id": int(known) if known.isdigit() else known, "fileName": name, "repeated": True})
            continue
        result = _upload_once(clients, params, ctx, link, name, content, kind, description)
        entry = {"id": result.get("id"), "fileName": name, "uri": result.get("uri")}
        uploaded.append({**entry, "recovered": True} if result.get("recovered") else entry)
    outcome: dict[str, Any] = {"entityType": params.entityType, "entityId": params.entityId, "attachments": uploaded}
    if any(a.get("recovered") for a in uploaded):
        outcome["recovered"] = True  # a file an earlier, killed attempt had uploaded was found, not sent again
    return outcome


SPECS = [
    ActionSpec("servicetrade.job.comment", JobComment, comment, "servicetrade"),
    ActionSpec("servicetrade.job.update", JobUpdate, update, "servicetrade"),
    ActionSpec("servicetrade.job.create", JobCreate, create_job, "servicetrade"),
    ActionSpec("servicetrade.appointment.create", AppointmentCreate, create_appointment, "servicetrade"),
    ActionSpec("servicetrade.appointment.update", AppointmentUpdate, update_appointment, "servicetrade"),
    ActionSpec("servicetrade.appointment.complete", AppointmentComplete, complete_appointment, "servicetrade"),
    ActionSpec("servicetrade.servicerequest.update", ServiceRequestUpdate, update_service_request, "servicetrade"),
    ActionSpec("servicetrade.attachment.upload", AttachmentUpload, upload_attachment, "servicetrade"),
    ActionSpec("servicetrade.externalid.set", ExternalIdSet, set_external_id, "servicetrade"),
]
