"""Synchroteam v3 API sandbox: Basic auth, rate limit and quota, `/send` upserts, lists and job lifecycle."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.control import build_app
from sandbox.ratelimit import RateLimiter
from sandbox.recorder import CONTROL_PREFIX
from sandbox.synchroteam_jobs import ACTIONS, run_action
from sandbox.synchroteam_lists import list_page
from sandbox.synchroteam_payloads import render, send
from sandbox.synchroteam_store import Invalid, SynchroteamState
from sandbox.synchroteam_technician import technician_routes

__all__ = ["SynchroteamState", "create_app"]

# [INCONS] Resources use /api/v3; lifecycle blocks and the pagination sample /v3; the auth sample /Api/v3.
PREFIXES = ("/api/v3", "/v3", "/Api/v3")
KINDS = {"customer", "site", "equipment", "job", "activity"}
DETAIL_KEYS = {
    "customer": ("id", "myId", "name", "email"),
    "site": ("id", "myId", "name"),
    "equipment": ("id", "myId", "name"),
    "job": ("id", "myId", "num"),
    "activity": ("id",),
}
UNDELETED = {
    "customer": ("customersDeleted", "isDeleted"),
    "site": ("SitesUnDeleted", "isUnDeleted"),
    "equipment": ("EquipmentsUnDeleted", "isUnDeleted"),
}
ERRORS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": ERRORS.get(status, "Error"), "message": message}, status_code=status, headers=headers)


def basic_credentials(headers: Headers) -> tuple[str, str] | None:
    scheme, _, encoded = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        domain, sep, key = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (domain, key) if sep else None


class Gate:
    """Checks JSON acceptability, Basic credentials and the per-key budget; stamps budget headers."""

    def __init__(self, app: ASGIApp, domain: str, api_key: str, limiter: RateLimiter) -> None:
        self.app, self.domain, self.api_key, self.limiter = app, domain, api_key, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        accept = headers.get("accept", "*/*")
        creds = basic_credentials(headers)
        # Seed 000, "Rate Limits and Quotas": the budget is "provided in the response headers of every
        # request", refused ones included (they are not counted against it).
        budget = self.limiter.peek(creds[1] if creds else "")
        if not any(t in accept for t in ("json", "*/*", "application/*", "text/*")):
            await error(406, "Only application/json or text/json responses are available", budget)(scope, receive, send)
            return
        if creds != (self.domain, self.api_key):
            await error(401, "Your API key is wrong", budget)(scope, receive, send)
            return
        verdict = self.limiter.check(self.api_key)
        if not verdict.allowed:
            await error(429, verdict.reason, verdict.headers)(scope, receive, send)
            return

        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    *((k.lower().encode(), v.encode()) for k, v in verdict.headers.items()),
                ]
            await send(message)

        await self.app(scope, receive, stamped)


def _query_keys(query: QueryParams, kind: str) -> dict[str, Any]:
    keys = {k: query[k] for k in DETAIL_KEYS[kind] if query.get(k)}
    if not keys:
        raise Invalid(f"one of {', '.join(DETAIL_KEYS[kind])} is required")
    return keys


def create_app(
    state: SynchroteamState | None = None,
    *,
    domain: str = "sandbox",
    api_key: str = "5e1d2c3b-0000-4000-8000-000000000001",
    rate_limit: int = 120,
    window_seconds: float = 60.0,
    daily_quota: int = 10000,
    quota_period: float = 86400.0,
    timezone: str | None = None,
) -> Starlette:
    """Build the Synchroteam sandbox; clients use `http://HOST:PORT` and paths under `/api/v3`.

    `quota_period` (seconds from the epoch; UTC days by default) lets tests compress the quota day.
    `timezone` (IANA) is the account's zone, in which it writes every date the doc does not mark as UTC.
    """
    st = state if state is not None else SynchroteamState()
    if timezone is not None:
        st.zone = ZoneInfo(timezone)
    limiter = RateLimiter(
        limit=rate_limit,
        window_seconds=window_seconds,
        daily_quota=daily_quota,
        clock=st.clock,
        quota_period=quota_period,
    )

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise Invalid("request body is not valid JSON") from None

    async def resource(request: Request) -> Response:
        kind, verb, method = request.path_params["kind"], request.path_params["verb"], request.method
        if kind not in KINDS:
            return error(404, f"unknown resource {kind}")
        try:
            if kind == "job" and verb in ACTIONS and method == "POST":
                return JSONResponse(run_action(st, verb, await body_of(request)))
            if verb == "send" and method == "POST":
                return JSONResponse(render(st, send(st, kind, await body_of(request))))
            if verb == "list" and method == "GET":
                return JSONResponse(list_page(st, kind, request.query_params))
            if verb == "details" and method == "GET":
                found = st.find(kind, _query_keys(request.query_params, kind))
                return error(404, f"{kind} not found") if found is None else JSONResponse(render(st, found))
            if verb in {"delete", "undelete"} and method == ("DELETE" if verb == "delete" else "POST"):
                return change_deleted(kind, verb, request.query_params)
        except Invalid as exc:
            return error(exc.status, exc.message)
        return error(405, f"{method} {kind}/{verb} is not supported")

    def change_deleted(kind: str, verb: str, query: QueryParams) -> Response:
        if verb == "undelete" and kind not in UNDELETED:
            return error(405, f"{kind} cannot be undeleted")
        keys = _query_keys(query, kind)
        rows = st.records[kind].values()
        deleted = verb == "undelete"
        if "name" in keys:  # the docs: deleting by name deletes every record with that name
            matches = [r for r in rows if r.get("name") == keys["name"] and bool(r.get("_deleted")) == deleted]
        else:
            found = st.find(kind, keys, deleted=deleted)
            matches = [found] if found else []
        if not matches:
            return error(404, f"{kind} not found")
        for record in matches:
            (st.undelete if deleted else st.delete)(kind, record)
        if deleted:
            key, flag = UNDELETED[kind]
            return JSONResponse({key: [{"id": r["id"], flag: True} for r in matches]})
        return JSONResponse([{"id": r["id"], "deleted": True} for r in matches])

    def job_of(query: QueryParams) -> dict[str, Any]:
        found = st.find("job", _query_keys(query, "job"))
        if found is None:
            raise Invalid("job not found", 404)
        return found

    async def job_report(request: Request) -> Response:
        """Seed 000, "Retrieve a job report": the blocks; "If the block is not found a 404 Error is returned"."""
        try:
            job = job_of(request.query_params)
        except Invalid as exc:
            return error(exc.status, exc.message)
        blocks = st.reports.get(str(job["id"]))
        return error(404, "no report for this job") if blocks is None else JSONResponse(blocks)

    async def job_photos(request: Request) -> Response:
        """Seed 000, "Retrieve job photos": a simplified job and its photos; imageData only with getImageData."""
        try:
            job = job_of(request.query_params)
        except Invalid as exc:
            return error(exc.status, exc.message)
        with_data = request.query_params.get("getImageData", "false").lower() == "true"
        photos = [
            {**p, "imageData": p.get("imageData") if with_data else None} for p in st.photos.get(str(job["id"]), [])
        ]
        return JSONResponse({"job": {k: job.get(k) for k in ("id", "myId", "num")}, "photos": photos})

    async def job_parts(request: Request) -> Response:
        """Seed 000, "Send job parts": the job by id/num/myId, `parts[{id|reference, quantity, serialNumbers}]`."""
        try:
            body = await body_of(request)
            if not isinstance(body, dict):
                raise Invalid("request body must be a JSON object")
            job = st.find("job", {k: body.get(k) for k in ("id", "myId", "num") if body.get(k)})
            if job is None:
                raise Invalid("job not found", 404)
            parts = body.get("parts")
            if not isinstance(parts, list) or not parts:
                raise Invalid("parts: a non-empty list is required")
            for part in parts:
                if not isinstance(part, dict) or not (part.get("reference") or part.get("id")):
                    raise Invalid("each part needs a reference or an id")
                if part.get("quantity") is None and not part.get("serialNumbers"):
                    raise Invalid("each part needs a quantity, or serialNumbers for a serialized part")
        except Invalid as exc:
            return error(exc.status, exc.message)
        job["parts"] = [*(job.get("parts") or []), *parts]
        st.touch(job)
        # [INCONS] the sample answer's `id` is a GUID, not the job's id.
        return JSONResponse({"id": str(uuid.uuid4()), "parts": parts})

    async def custom_fields(request: Request) -> Response:
        """Seed 000, "List Custom Fields by object type": `type` (mandatory) job, customer, site, equipment, user."""
        kind = request.query_params.get("type")
        if kind not in ("job", "customer", "site", "equipment", "user"):
            return error(400, "type is mandatory: job, customer, site, equipment or user")
        return paged(st.custom_fields.get(kind, []))

    def paged(table: list[dict[str, Any]]) -> Response:
        return JSONResponse(
            {"page": 1, "pageSize": len(table), "records": len(table), "recordsTotal": len(table), "data": table}
        )

    async def lookup_list(request: Request) -> Response:
        kind = request.url.path.rsplit("/", 2)[-2]
        table = {
            "activityType": st.activity_types,
            "jobtype": st.job_types,
            "jobReportTemplate": st.report_templates,
        }[kind]
        return JSONResponse(
            {
                "page": 1,
                "pageSize": len(table),
                "records": len(table),
                "recordsTotal": len(table),
                "data": table,
            }
        )

    routes = [
        route
        for prefix in PREFIXES
        for route in (
            *(
                Route(f"{prefix}/{kind}/list", lookup_list, methods=["GET"])
                for kind in ("activityType", "jobtype", "jobReportTemplate")
            ),
            Route(f"{prefix}/jobReport/details", job_report, methods=["GET"]),
            Route(f"{prefix}/job/photos", job_photos, methods=["GET"]),
            Route(f"{prefix}/job/parts/send", job_parts, methods=["POST"]),
            Route(f"{prefix}/customfield/list", custom_fields, methods=["GET"]),
            Route(f"{prefix}/{{kind}}/{{verb}}", resource, methods=["GET", "POST", "PUT", "DELETE"]),
        )
    ]

    def identify(headers: Headers, query: QueryParams, body: Any) -> dict[str, Any]:
        creds = basic_credentials(headers)
        return {"domain": creds[0] if creds else None, "key_valid": creds == (domain, api_key)}

    def reset() -> None:
        st.reset()
        limiter.reset()

    app = build_app(
        routes,
        state=st,
        reset=reset,
        identify=identify,
        error_body=lambda status, message: {"error": ERRORS.get(status, "Error"), "message": message},
        extra_control=technician_routes(st),
        middleware=[Middleware(Gate, domain=domain, api_key=api_key, limiter=limiter)],
    )
    app.state.limiter = limiter
    return app
