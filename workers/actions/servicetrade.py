"""ServiceTrade actions: job comments and updates, appointments."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from workers.actions.context import ActionContext, ActionSpec, Clients, with_link
from workers.actions.params import ActionParams
from workers.connectors.servicetrade import EXTERNAL_ID_TYPES

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

    link_kind: ClassVar[str] = "servicetrade.appointment"

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
    return with_link(
        ctx,
        "servicetrade.appointment.create",
        params.link_kind,
        update=lambda known: clients.servicetrade.update_appointment(
            known, params.payload("jobId", "serviceRequestIds")
        ),
        create=lambda: clients.servicetrade.create_appointment(params.jobId, **params.payload("jobId")),
        id_of=lambda record: record.get("id"),
    )


def set_external_id(clients: Clients, params: ExternalIdSet, ctx: ActionContext) -> dict[str, Any]:
    # Setting the same value again is harmless, so a retry needs no link.
    result = clients.servicetrade.set_external_id(params.entityType, params.entityId, params.systemName, params.value)
    return {
        "entityType": params.entityType,
        "entityId": params.entityId,
        "systemName": params.systemName,
        "value": result.get("value", params.value),
    }


SPECS = [
    ActionSpec("servicetrade.job.comment", JobComment, comment, "servicetrade"),
    ActionSpec("servicetrade.job.update", JobUpdate, update, "servicetrade"),
    ActionSpec("servicetrade.appointment.create", AppointmentCreate, create_appointment, "servicetrade"),
    ActionSpec("servicetrade.externalid.set", ExternalIdSet, set_external_id, "servicetrade"),
]
