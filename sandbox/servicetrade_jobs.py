"""ServiceTrade writes the product makes: job updates and comments, appointment create and update."""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.servicetrade_http import base_url, envelope, read_json
from sandbox.servicetrade_lists import APPOINTMENT_STATUSES, JOB_STATUSES, InvalidQuery
from sandbox.servicetrade_store import ServiceTradeState
from sandbox.servicetrade_views import Renderer
from sandbox.webhook_delivery import Change

# The job POST/PUT parameters the docs list; `locationId` is "valid on post only".
JOB_FIELDS = {
    "vendorId",
    "customerId",
    "brokerId",
    "ownerId",
    "salesId",
    "termsId",
    "contractId",
    "primaryContactId",
    "assignedOfficeId",
    "type",
    "status",
    "visibility",
    "customerPo",
    "description",
    "dueBy",
    "budgeted",
}
OPEN_JOB = {"new", "scheduled", "bidding"}
APPOINTMENT_FIELDS = {"status", "techIds", "windowStart", "windowEnd", "released", "serviceRequestIds"}


def job_routes(st: ServiceTradeState) -> list[Route]:
    def announce(request: Request, change: Change) -> BackgroundTask:
        return BackgroundTask(st.dispatcher.send, st.notify([change], base_url(request)))

    def shown(request: Request, entity_type: str, entity_id: int, change: Change | None = None) -> Response:
        record = st.get(entity_type, entity_id) or {}
        data = Renderer(st, base_url(request)).full(entity_type, record)
        return envelope(200, data=data, background=announce(request, change) if change else None)

    def invalid(field: str, message: str) -> Response:
        return envelope(400, error="missing, incomplete or invalid parameters", validation={field: [message]})

    async def body_of(request: Request) -> dict[str, Any] | Response:
        try:
            return await read_json(request)
        except InvalidQuery as exc:
            return envelope(400, error=exc.message)

    async def job_update(request: Request) -> Response:
        job_id = request.path_params["id"]
        if st.get("job", job_id) is None:
            return envelope(404, error=f"job {job_id} not found (or not accessible by the user)")
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        if "status" in body and body["status"] not in JOB_STATUSES:
            return invalid("status", f"Must be one of: {', '.join(JOB_STATUSES)}")
        job = st.get("job", job_id) or {}
        if "budgeted" in body and body["budgeted"] != job.get("budgeted") and job.get("status") not in OPEN_JOB:
            # The docs: budgeted "may only be changed on an open job with no active budget".
            return envelope(409, error="budgeted may only change on an open job")
        changeset = st.update("job", job_id, {k: v for k, v in body.items() if k in JOB_FIELDS})
        at = (st.get("job", job_id) or {}).get("updated", st.now())
        return shown(request, "job", job_id, Change("updated", "job", job_id, at, changeset))

    async def job_comment(request: Request) -> Response:
        job_id = request.path_params["id"]
        if st.get("job", job_id) is None:
            return envelope(404, error=f"job {job_id} not found (or not accessible by the user)")
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        if not isinstance(body.get("content"), str) or not body["content"]:
            return invalid("content", "Required")
        author = st.session_user(request.cookies.get("PHPSESSID")) or {}
        comment = st.create(
            "comment",
            {
                "content": body["content"],
                "visibility": list(body.get("visibility") or []),
                "entityType": 3,
                "entityId": job_id,
                "authorId": author.get("id"),
            },
        )
        return shown(request, "comment", comment["id"])

    def comments_on(entity_type: int, entity_id: int, wanted: set[str], cascade: bool) -> list[dict[str, Any]]:
        """The docs' "Cascaded Comments": a job's comments, plus the tech and schedule comments of its location
        (entity type 11) and customer company (5), each with its own `entity`; `visibility` matches any given."""
        job = st.get("job", entity_id) if entity_type == 3 and cascade else None
        parents = {(11, job.get("locationId")), (5, job.get("customerId"))} if job else set()

        def listed(c: dict[str, Any]) -> bool:
            flags = set(c.get("visibility") or [])
            own = c.get("entityType") == entity_type and c.get("entityId") == entity_id
            cascaded = (c.get("entityType"), c.get("entityId")) in parents and bool(flags & {"tech", "schedule"})
            return (own or cascaded) and (not wanted or bool(flags & wanted))

        return [c for c in st.all("comment") if listed(c)]

    def comments_page(request: Request, comments: list[dict[str, Any]]) -> Response:
        view = Renderer(st, base_url(request))
        return envelope(200, data={"totalPages": 1, "page": 1, "comments": [view.full("comment", c) for c in comments]})

    async def job_comments(request: Request) -> Response:
        job_id = request.path_params["id"]
        if st.get("job", job_id) is None:
            return envelope(404, error=f"job {job_id} not found (or not accessible by the user)")
        wanted = {v for v in request.query_params.get("visibility", "").split(",") if v}
        return comments_page(request, comments_on(3, job_id, wanted, cascade=True))

    async def comment_list(request: Request) -> Response:
        """Seed 002, "Comment", says two things of `GET /comment`: its table answers 405 "not allowed", and
        its query params make `entityType` required and `entityId` required "unless one of the following is
        supplied: createdAfter, createdBefore, updatedAfter, updatedBefore", with the example "Retrieve
        comments for job 41 GET /comment?entityId=41&entityType=3" answering 200. Both readings: without
        those params, 405; with them, the list. Cascaded comments come only with an entity and no filter
        but `visibility`, as "Cascaded Comments" says."""
        q = request.query_params
        ranges = {k: q[k] for k in ("createdAfter", "createdBefore", "updatedAfter", "updatedBefore") if k in q}
        if "entityType" not in q or ("entityId" not in q and not ranges):
            return envelope(405, error="not allowed")
        try:
            entity_type = int(q["entityType"])
            entity_id = int(q["entityId"]) if "entityId" in q else None
            author = int(q["authorId"]) if "authorId" in q else None
            bounds = {k: int(v) for k, v in ranges.items()}
        except ValueError:
            return invalid("entityType", "entityType, entityId, authorId and the date filters are integers")
        wanted = {v for v in q.get("visibility", "").split(",") if v}
        only_visibility = set(q) <= {"entityType", "entityId", "visibility"}
        if entity_id is not None:
            rows = comments_on(entity_type, entity_id, wanted, cascade=only_visibility)
        else:
            rows = [
                c
                for c in st.all("comment")
                if c.get("entityType") == entity_type and (not wanted or set(c.get("visibility") or []) & wanted)
            ]

        def kept(c: dict[str, Any]) -> bool:
            created, updated = c.get("created", 0), c.get("updated", c.get("created", 0))
            return (
                (author is None or c.get("authorId") == author)
                and created >= bounds.get("createdAfter", created)
                and created <= bounds.get("createdBefore", created)
                and updated >= bounds.get("updatedAfter", updated)
                and updated <= bounds.get("updatedBefore", updated)
            )

        return comments_page(request, [c for c in rows if kept(c)])

    async def appointment_create(request: Request) -> Response:
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        job_id = body.get("jobId")
        job = st.get("job", job_id) if isinstance(job_id, int) else None
        if job is None:
            return invalid("jobId", "Required, the id of an existing job")
        status = body.get("status", "scheduled")
        if status not in APPOINTMENT_STATUSES:
            return invalid("status", f"Must be one of: {', '.join(APPOINTMENT_STATUSES)}")
        # The docs: windows default to null when unscheduled and to the current time otherwise.
        now = None if status == "unscheduled" else st.now()
        values = {
            "status": status,
            "jobId": job["id"],
            "locationId": job.get("locationId"),
            "techIds": list(body.get("techIds") or []),
            "windowStart": body.get("windowStart", now),
            "windowEnd": body.get("windowEnd", now),
            "released": bool(body.get("released", True)),
        }
        record = st.create("appointment", values)
        record["name"] = f"Appointment #{record['id']}"
        return shown(
            request, "appointment", record["id"], Change("created", "appointment", record["id"], record["created"])
        )

    async def appointment_update(request: Request) -> Response:
        appointment_id = request.path_params["id"]
        if st.get("appointment", appointment_id) is None:
            return envelope(404, error=f"appointment {appointment_id} not found")
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        if "status" in body and body["status"] not in APPOINTMENT_STATUSES:
            return invalid("status", f"Must be one of: {', '.join(APPOINTMENT_STATUSES)}")
        if body.get("status") == "unscheduled":
            # The docs: a PUT cannot set `unscheduled` (only a new appointment starts that way).
            return invalid("status", "Cannot be set to unscheduled")
        changeset = st.update("appointment", appointment_id, {k: v for k, v in body.items() if k in APPOINTMENT_FIELDS})
        at = (st.get("appointment", appointment_id) or {}).get("updated", st.now())
        change = Change("updated", "appointment", appointment_id, at, changeset)
        return shown(request, "appointment", appointment_id, change)

    return [
        Route("/api/job/{id:int}", job_update, methods=["PUT"]),
        Route("/api/job/{id:int}/comment", job_comment, methods=["POST"]),
        Route("/api/job/{id:int}/comment", job_comments, methods=["GET"]),
        Route("/api/comment", comment_list, methods=["GET"]),
        Route("/api/appointment", appointment_create, methods=["POST"]),
        Route("/api/appointment/{id:int}", appointment_update, methods=["PUT"]),
    ]
