"""ServiceTrade actions: job comments and updates, appointments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from workers.actions.context import ActionContext, ActionSpec, Clients
from workers.actions.params import ActionParams

Visibility = Literal["public", "schedule", "tech", "billing"]


class Params(ActionParams):
    pass

    def payload(self, *leave_out: str) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_unset=True)
        return {k: v for k, v in data.items() if k not in leave_out}


class JobComment(Params):
    """Comment on a job (once per rule call: a retry returns the comment already posted)."""

    jobId: int
    content: str = Field(description="text of the comment")
    visibility: list[Visibility] | None = Field(
        default=None, description="empty or missing: private, neither schedule nor tech"
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
    # A comment has no natural key: post it once per event and answer retries from the link.
    link = f"servicetrade.job.comment:{ctx.call_key()}"
    if known := ctx.link_store.get(link):
        return {"id": int(known) if known.isdigit() else known, "content": params.content, "repeated": True}
    result = clients.servicetrade.comment_job(params.jobId, params.content, params.visibility)
    if result.get("id") is not None:
        ctx.link_store.set(link, str(result["id"]))
    return result


def update(clients: Clients, params: JobUpdate, ctx: ActionContext) -> dict[str, Any]:
    return clients.servicetrade.update_job(params.jobId, params.payload("jobId"))


def create_appointment(clients: Clients, params: AppointmentCreate, ctx: ActionContext) -> dict[str, Any]:
    link = ctx.link_key("servicetrade.appointment.create")
    if known := ctx.link_store.get(link):
        return clients.servicetrade.update_appointment(known, params.payload("jobId", "serviceRequestIds"))
    result = clients.servicetrade.create_appointment(params.jobId, **params.payload("jobId"))
    if result.get("id") is not None:
        ctx.link_store.set(link, str(result["id"]))
    return result


SPECS = [
    ActionSpec("servicetrade.job.comment", JobComment, comment, "servicetrade"),
    ActionSpec("servicetrade.job.update", JobUpdate, update, "servicetrade"),
    ActionSpec("servicetrade.appointment.create", AppointmentCreate, create_appointment, "servicetrade"),
]
