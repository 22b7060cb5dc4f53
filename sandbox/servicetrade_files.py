"""ServiceTrade attachments, clock events, job creation and service requests, as seed 002 documents them."""

from __future__ import annotations

import hashlib
from email import policy
from email.parser import BytesParser

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.servicetrade_http import base_url, envelope, read_json
from sandbox.servicetrade_lists import InvalidQuery
from sandbox.servicetrade_store import ServiceTradeState
from sandbox.servicetrade_views import Renderer
from sandbox.webhook_delivery import Change

# Seed 002, "Attachment Purpose" constants, and the "Entity Types" an attachment may name.
PURPOSES = {
    1: "Job Paperwork",
    2: "Job Vendor Bill",
    3: "Job Picture",
    5: "Deficiency Repair Proposal",
    7: "Job Attachment",
    8: "Avatar Image",
    9: "Import",
    10: "Blank Paperwork",
    11: "Work Acknowledgement",
    12: "Logo",
    14: "Job Invoice",
}  # [INCONS] the samples name 3 "Job Picture" and 7 "Job Attachment"
ATTACHABLE = {3: "job", 16: "appointment", 11: "location", 9: "quote", 10: "deficiency", 18: "servicerequest"}
SERVICE_STATUSES = ("open", "in_progress", "closed", "pending", "canceled", "void")
COMPLETIONS = ("pending", "not_done", "done", "invalid")
SERVICE_FIELDS = {"description", "status", "windowStart", "windowEnd", "assetId", "serviceLineId", "jobId"}
JOB_CREATE_FIELDS = {
    "locationId",
    "vendorId",
    "customerId",
    "ownerId",
    "salesId",
    "termsId",
    "contractId",
    "primaryContactId",
    "assignedOfficeId",
    "type",
    "status",
    "visibility",
    "serviceRequestIds",
    "customerPo",
    "description",
    "budgeted",
}


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, tuple[str, str, bytes]]]:
    """Form fields and files of a multipart/form-data body (the stdlib's MIME parser, no extra dependency)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    if not message.is_multipart():
        raise InvalidQuery("uploadedFile", "the body must be multipart/form-data")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True) or b""
        assert isinstance(payload, bytes)
        filename = part.get_filename()
        if filename:
            files[name] = (filename, part.get_content_type(), payload)
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields, files


def file_routes(st: ServiceTradeState) -> list[Route]:
    def announce(request: Request, change: Change) -> BackgroundTask:
        return BackgroundTask(st.dispatcher.send, st.notify([change], base_url(request)))

    def shown(request: Request, entity_type: str, entity_id: int, change: Change | None = None) -> Response:
        data = Renderer(st, base_url(request)).full(entity_type, st.get(entity_type, entity_id) or {})
        return envelope(200, data=data, background=announce(request, change) if change else None)

    def invalid(field: str, message: str) -> Response:
        return envelope(400, error="missing, incomplete or invalid parameters", validation={field: [message]})

    async def upload(request: Request) -> Response:
        """Seed 002, "Upload a file": multipart, `uploadedFile`, `purposeId`, `entityId`, `entityType` required."""
        try:
            fields, files = parse_multipart(request.headers.get("content-type", ""), await request.body())
        except InvalidQuery as exc:
            return invalid(exc.field, exc.message)
        for name in ("purposeId", "entityId", "entityType"):
            if not fields.get(name, "").isdigit():
                return invalid(name, "Required, an integer")
        purpose, entity_id, entity_type = (int(fields[k]) for k in ("purposeId", "entityId", "entityType"))
        if purpose not in PURPOSES:
            return invalid("purposeId", f"Must be one of: {', '.join(map(str, PURPOSES))}")
        target = ATTACHABLE.get(entity_type)
        if target is None or st.get(target, entity_id) is None:
            return invalid("entityId", f"no {target or 'entity'} {entity_id} of entity type {entity_type}")
        if "uploadedFile" not in files:
            return invalid("uploadedFile", "Required, the file")
        name, kind, content = files["uploadedFile"]
        checksum = hashlib.md5(content).hexdigest()  # the doc's "MD5 checksum", not security
        record = st.create(
            "attachment",
            {
                "fileName": name,
                "fileType": kind,
                "checksum": checksum,
                "size": len(content),
                "description": fields.get("description"),
                "purposeId": purpose,
                "purpose": PURPOSES[purpose],
                "entityId": entity_id,
                "entityType": entity_type,
                "visibility": ["public"],
                "meta": {},
            },
        )
        record["contentUrl"] = f"{base_url(request)}/attachment/{record['id']}/content/{checksum}"
        st.contents[record["id"]] = content
        return shown(request, "attachment", record["id"], Change("created", "attachment", record["id"], st.now()))

    async def create_job(request: Request) -> Response:
        """Seed 002, "Job": POST with `locationId` (POST only); `number` is generated."""
        try:
            body = await read_json(request)
        except InvalidQuery as exc:
            return invalid(exc.field, exc.message)
        location_id = body.get("locationId")
        location = st.get("location", location_id) if isinstance(location_id, int) else None
        if location is None:
            return invalid("locationId", "Required, the id of an existing location")
        values = {k: v for k, v in body.items() if k in JOB_CREATE_FIELDS}
        values.setdefault("status", "new")
        values.setdefault("customerId", location.get("companyId"))
        record = st.create("job", values)
        return shown(request, "job", record["id"], Change("created", "job", record["id"], st.now()))

    async def update_service(request: Request) -> Response:
        """Seed 002, "Service Request": PUT with status (open, in_progress, closed, pending, canceled, void)."""
        service_id = request.path_params["id"]
        if st.get("servicerequest", service_id) is None:
            return envelope(404, error=f"servicerequest {service_id} not found (or not accessible by the user)")
        try:
            body = await read_json(request)
        except InvalidQuery as exc:
            return invalid(exc.field, exc.message)
        if "status" in body and body["status"] not in SERVICE_STATUSES:
            return invalid("status", f"Must be one of: {', '.join(SERVICE_STATUSES)}")
        values = {k: v for k, v in body.items() if k in SERVICE_FIELDS}
        if values.get("status") == "closed":
            values["closedOn"] = st.now()
        changeset = st.update("servicerequest", service_id, values)
        return shown(
            request, "servicerequest", service_id, Change("updated", "servicerequest", service_id, st.now(), changeset)
        )

    async def service_completion(request: Request) -> Response:
        """Seed 002, "Appointment": `PUT /appointment/123/servicerequest/456` with `completion`."""
        appointment_id, service_id = request.path_params["id"], request.path_params["service"]
        appointment = st.get("appointment", appointment_id)
        if appointment is None or service_id not in (appointment.get("serviceRequestIds") or []):
            return envelope(404, error=f"servicerequest {service_id} not on appointment {appointment_id}")
        try:
            body = await read_json(request)
        except InvalidQuery as exc:
            return invalid(exc.field, exc.message)
        if body.get("completion") not in COMPLETIONS:
            return invalid("completion", f"Must be one of: {', '.join(COMPLETIONS)}")
        appointment.setdefault("completions", {})[str(service_id)] = body["completion"]
        appointment["updated"] = st.now()
        return shown(
            request, "appointment", appointment_id, Change("updated", "appointment", appointment_id, st.now(), [])
        )

    async def clock_events(request: Request) -> Response:
        """Seed 002, "Clockin/Clockout": `GET /clock` "403 must provide at least one filter"; `events`, or
        `pairedEvents` + `unpairedEvents` when `paired` (default true with a jobId)."""
        q = request.query_params
        filters = {
            "userId",
            "userIds",
            "startTime",
            "endTime",
            "type",
            "activity",
            "source",
            "jobId",
            "appointmentId",
            "openClockEvents",
        }
        if not filters & set(q):
            return envelope(403, error="must provide at least one filter")
        rows = st.all("clock")
        try:
            if "startTime" in q:
                rows = [r for r in rows if r.get("eventTime", 0) >= int(q["startTime"])]
            if "endTime" in q:
                rows = [r for r in rows if r.get("eventTime", 0) <= int(q["endTime"])]
            for name, field in (("jobId", "jobId"), ("appointmentId", "appointmentId"), ("userId", "userId")):
                if name in q:
                    rows = [r for r in rows if r.get(field) == int(q[name])]
        except ValueError:
            return invalid("startTime", "Must be numeric")
        view = Renderer(st, base_url(request))
        events = [view.full("clock", r) for r in rows]
        paired = q.get("paired", "true" if "jobId" in q else "false").lower() == "true"
        if paired and ("jobId" in q or "appointmentId" in q):
            ins = [e for e in events if e.get("type") == "clock-in"]
            outs = [e for e in events if e.get("type") == "clock-out"]
            pairs = [[i, o] for i, o in zip(ins, outs, strict=False)]
            return envelope(200, data={"pairedEvents": pairs, "unpairedEvents": ins[len(pairs) :]})
        return envelope(200, data={"events": events})

    return [
        Route("/api/attachment", upload, methods=["POST"]),
        Route("/api/job", create_job, methods=["POST"]),
        Route("/api/servicerequest/{id:int}", update_service, methods=["PUT"]),
        Route("/api/appointment/{id:int}/servicerequest/{service:int}", service_completion, methods=["PUT"]),
        Route("/api/clock", clock_events, methods=["GET"]),
    ]
