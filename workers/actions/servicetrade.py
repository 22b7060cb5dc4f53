"""ServiceTrade actions: job comments and updates, appointments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from workers.actions.context import ActionContext, ActionSpec, Clients
from workers.actions.params import ActionParams
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


class JobUpdate(Params):
    """Change a job's fields (``PUT /job/{jobId}``)."""

    jobId: int
    vendorId: int | None = None
    customerId: int | None = None
    brokerId: int | None = None
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


class AppointmentCreate(Params):
    """Create an appointment on a job (a retry updates the one already created)."""

    jobId: int
    status: str | None = Field(default=None, description="default scheduled")
    serviceRequestIds: list[int] | None = None
    techIds: list[int] | None = None
    windowStart: int | None = Field(default=None, description="Unix seconds")
    windowEnd: int | None = Field(default=None, description="Unix seconds")
    released: bool | None = None


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


def create_appointment(clients: Clients, params: AppointmentCreate, ctx: ActionContext) -> dict[str, Any]:
    link = ctx.link_key("servicetrade.appointment.create")
    st = clients.servicetrade
    changes = params.payload("jobId", "serviceRequestIds")
    if known := ctx.link_store.get(link):
        return st.update_appointment(known, changes)
    fields = params.payload("jobId")
    return create_once(
        ctx.link_store,
        ctx.intents,
        link,
        fields,
        create=lambda: st.create_appointment(params.jobId, **fields),
        find=lambda sent, since: _found(st.find_appointment(params.jobId, sent, created_after=since)),
        ident=lambda record: record.get("id"),
        update=lambda found: st.update_appointment(found["id"], changes),
    )


def _found(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if record is None else dict(record)


SPECS = [
    ActionSpec("servicetrade.job.comment", JobComment, comment, "servicetrade"),
    ActionSpec("servicetrade.job.update", JobUpdate, update, "servicetrade"),
    ActionSpec("servicetrade.appointment.create", AppointmentCreate, create_appointment, "servicetrade"),
]
