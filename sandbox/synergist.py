"""Synergist v3.2 JSON API sandbox: query-string credentials, `input` writes and the 404 error envelope."""

from __future__ import annotations

import json
import math
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.control import build_app
from sandbox.recorder import CONTROL_PREFIX
from sandbox.synergist_areas import Handler, activities, clients, jobs, system, users
from sandbox.synergist_bookings import calendar, phases, tspending
from sandbox.synergist_calls import Call, Result
from sandbox.synergist_store import (
    ACCOUNT_DISABLED,
    BAD_COMPANY,
    BAD_CREDENTIALS,
    BAD_INPUT,
    ERROR_FORMS,
    NO_CREDENTIALS,
    NOT_RECOGNISED,
    SynergistError,
    SynergistState,
    sha512,
)

__all__ = ["SynergistState", "create_app"]

AREAS: dict[str, Handler] = {
    "activities": activities,
    "jobs": jobs,
    "users": users,
    "system": system,
    "clients": clients,
    "calendar": calendar,
    "tspending": tspending,
    "phases": phases,
}
VERSIONS = {"3", "3.0", "3.1", "3.2"}  # [INCONS] a few examples send version=3.1; the overview uses 3.
WRITES = {"create", "update", "delete"}


def envelope(result: Result, call: Call) -> dict[str, Any]:
    body: dict[str, Any] = {"responsecode": 1, "responsestatus": "OK", "errorcode": 0, "errormessage": ""}
    data = result.data
    if result.paged:
        # [INCONS] `page` "starts at 0", yet the examples send page=1 and get pagenumber 1; we echo the page.
        rows = int(call.param("rows") or 0)
        page = int(call.param("page") or 0)
        total = len(data)
        if rows > 0:
            data = data[page * rows : (page + 1) * rows]
        body.update(
            totalrows=total,
            totalpages=max(1, math.ceil(total / rows)) if rows > 0 else 1,
            responsemessage=result.message,
            pagerows=rows,
            pagenumber=page,
        )
    else:
        body.update(responsemessage=result.message, warningmessage="")
    body.update(success=True, data=data)
    return body


def failure_body(code: int, message: str) -> dict[str, Any]:
    # The docs show only the XML error; this JSON form mirrors the success envelope's fields.
    return {
        "responsecode": 0,
        "responsestatus": "ERROR",
        "errorcode": code,
        "errormessage": message,
        "responsemessage": "",
        "warningmessage": "",
        "success": False,
        "data": [],
    }


def failure(exc: SynergistError, form: str) -> Response:
    """The error in the configured form: 404 + XML (seed 001's stated one), 404 + JSON, or 200 + success:false."""
    if form == "xml":
        text = escape(exc.message)
        error = f'    <Error ErrorID="{exc.code}">\n        <ErrorText>{text}</ErrorText>\n    </Error>'
        xml = f"<Responses>\n{error}\n</Responses>"
        return Response(xml, status_code=404, media_type="text/xml")
    return JSONResponse(failure_body(exc.code, exc.message), status_code=404 if form == "json404" else 200)


def create_app(
    state: SynergistState | None = None,
    *,
    user: str = "sandbox",
    password: str = "sandbox-password",
    company: str = "1",
    error_form: str = "xml",
) -> Starlette:
    """Build the Synergist sandbox; clients call `http://HOST:PORT/jsonapi/<area>.json?...`.

    `error_form` is how errors are answered (`xml`, `json404`, `json200`); `PUT /_sandbox/errors
    {"form": ...}` changes it at run time.
    """
    if error_form not in ERROR_FORMS:
        raise ValueError(f"error_form must be one of {', '.join(ERROR_FORMS)}, not {error_form!r}")
    st = state if state is not None else SynergistState()
    st.default_error_form = st.error_form = error_form

    def authenticate(params: dict[str, str]) -> dict[str, Any]:
        given_user = params.get("user")
        secret = params.get("password")
        hashed = params.get("sha512password")
        if not given_user or not (secret or hashed):
            raise SynergistError(NO_CREDENTIALS, "no credentials supplied")
        ok = given_user == user and (secret == password if secret else (hashed or "").lower() == sha512(password))
        if not ok:
            raise SynergistError(BAD_CREDENTIALS, "invalid credentials supplied")
        if st.disabled:
            raise SynergistError(ACCOUNT_DISABLED, "account disabled")
        found = st.user_by_login(user) or (st.users[0] if st.users else {"userUserId": 1})
        return found

    async def params_of(request: Request) -> dict[str, str]:
        params = {k.lower(): v for k, v in request.query_params.items()}
        if request.method == "POST":
            # The docs only show GETs; a POST carries the same parameters, form-encoded.
            body = (await request.body()).decode("utf-8", "replace")
            params.update({k.lower(): v for k, v in parse_qsl(body, keep_blank_values=True)})
        return params

    async def api(request: Request) -> Response:
        try:
            params = await params_of(request)
            caller = authenticate(params)
            area, _, ext = request.path_params["file"].partition(".")
            if request.path_params["api"].lower() != "jsonapi" or ext != "json" or area not in AREAS:
                raise SynergistError(NOT_RECOGNISED, f"request not recognised: {request.url.path}")
            if params.get("version") and params["version"] not in VERSIONS:
                raise SynergistError(NOT_RECOGNISED, f"unsupported API version {params['version']}")
            companies = params.get("company", company).strip("[]").replace(" ", "").split(",")
            if company not in companies:
                raise SynergistError(BAD_COMPANY, f"company {params.get('company')} not available")
            call = Call(area, params.get("action", ""), params, caller, company, password=password)
            if call.action in WRITES:
                call.items = parse_input(params.get("input"))
            return JSONResponse(envelope(AREAS[area](st, call), call))
        except SynergistError as exc:
            return failure(exc, st.error_form)

    async def set_errors(request: Request) -> Response:
        try:
            form = (await request.json()).get("form")
        except ValueError:
            form = None
        if form not in ERROR_FORMS:
            return JSONResponse({"error": f"form must be one of {', '.join(ERROR_FORMS)}"}, status_code=400)
        st.error_form = form
        return JSONResponse({"form": form})

    def identify(headers: Headers, query: QueryParams, body: Any) -> dict[str, Any]:
        given = query.get("user")
        secret, hashed = query.get("password"), query.get("sha512password")
        valid = given == user and (secret == password if secret else (hashed or "").lower() == sha512(password))
        return {
            "user": given,
            "valid": valid,
            "method": "password" if secret else "sha512" if hashed else None,
        }

    routes = [Route("/{api}/{file}", api, methods=["GET", "POST"])]
    return build_app(
        routes,
        state=st,
        reset=st.reset,
        identify=identify,
        error_body=lambda status, message: failure_body(NOT_RECOGNISED if status == 404 else 404500, message),
        extra_control=[Route(f"{CONTROL_PREFIX}/errors", set_errors, methods=["PUT"])],
    )


def parse_input(raw: str | None) -> list[dict[str, Any]]:
    if not raw:
        raise SynergistError(BAD_INPUT, 'input is required: {"data":[{...}]}')
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise SynergistError(BAD_INPUT, f"input is not valid JSON: {exc}") from None
    items = parsed.get("data") if isinstance(parsed, dict) else None
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise SynergistError(BAD_INPUT, 'input must look like {"data":[{...}]}')
    return items
