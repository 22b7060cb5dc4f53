"""ServiceTrade API sandbox: cookie sessions, entity reads and lists, job actions and webhooks."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox.control import build_app
from sandbox.servicetrade_control import control_routes
from sandbox.servicetrade_externalids import externalid_routes
from sandbox.servicetrade_files import file_routes
from sandbox.servicetrade_http import base_url, envelope, read_json
from sandbox.servicetrade_jobs import job_routes
from sandbox.servicetrade_lists import LIST_KEYS, InvalidQuery, NotAllowed, select
from sandbox.servicetrade_store import ServiceTradeState
from sandbox.servicetrade_views import Renderer
from sandbox.servicetrade_webhooks import webhook_routes

__all__ = ["ServiceTradeState", "create_app"]

API_VERSION = "1.2.3"


def create_app(
    state: ServiceTradeState | None = None, *, username: str = "sandbox", password: str = "sandbox-password"
) -> Starlette:
    """Build the ServiceTrade sandbox; clients use `http://HOST:PORT/api` as the base URL."""
    st = state if state is not None else ServiceTradeState()

    def auth_body(token: str, user: dict[str, Any] | None, base: str) -> dict[str, Any]:
        view = Renderer(st, base)
        shown = None
        if user is not None:
            shown = {k: v for k, v in view.full("user", user).items() if k not in {"location", "created", "updated"}}
            shown["account"] = {"id": 567, "name": (shown.get("company") or {}).get("name", "")}
            shown["serviceLines"] = []
        return {"authenticated": user is not None, "eulaNeeded": False, "authToken": token, "user": shown}

    def no_session(token: str) -> Response:
        return envelope(
            404,
            error="No active session found for given auth token",
            data={"authenticated": False, "eulaNeeded": True, "authToken": token, "user": None},
        )

    async def heartbeat(request: Request) -> Response:
        return envelope(200, data={"version": API_VERSION, "serverTime": st.now()})

    async def login(request: Request) -> Response:
        try:
            body = await read_json(request)
        except InvalidQuery as exc:
            return envelope(400, error=exc.message)
        if not body.get("username") or not body.get("password"):
            return envelope(400, error="username and password are required")
        if body["username"] != username or body["password"] != password:
            return envelope(
                403,
                error="Invalid credentials provided",
                data={"authenticated": False, "eulaNeeded": True, "authToken": None, "user": None},
            )
        token = st.open_session(username)
        response = envelope(200, data=auth_body(token, st.session_user(token), base_url(request)))
        response.set_cookie("PHPSESSID", token, path="/", httponly=True)
        return response

    async def session_info(request: Request) -> Response:
        token = request.cookies.get("PHPSESSID", "")
        user = st.session_user(token)
        return no_session(token) if user is None else envelope(200, data=auth_body(token, user, base_url(request)))

    async def logout(request: Request) -> Response:
        token = request.cookies.get("PHPSESSID", "")
        if st.sessions.pop(token, None) is None:
            return no_session(token)
        return Response(status_code=204)

    async def not_allowed(request: Request) -> Response:
        return envelope(405, error="method not implemented")

    async def entity_list(request: Request) -> Response:
        entity_type = request.path_params["type"]
        if entity_type not in LIST_KEYS:
            return envelope(404, error=f"resource {entity_type} not found")
        try:
            rows, page, total = select(entity_type, request.query_params, st)
        except NotAllowed as exc:
            return envelope(405, error=str(exc))
        except InvalidQuery as exc:
            return envelope(
                400, error="missing, incomplete or invalid parameters", validation={exc.field: [exc.message]}
            )
        view = Renderer(st, base_url(request))
        listed = [view.full(entity_type, r) for r in rows]
        if total is None:  # limit_mode "cap": the rows past `limit` are simply not there
            return envelope(200, data={LIST_KEYS[entity_type]: listed})
        return envelope(200, data={"totalPages": total, "page": page, LIST_KEYS[entity_type]: listed})

    async def oauth_token(request: Request) -> Response:
        """Not in seed 002: the official SDK sends `Authorization: Bearer` tokens (setBearerToken). Served
        the RFC 6749 way: `password` or `client_credentials` grant, form-encoded (JSON accepted too)."""
        raw = (await request.body()).decode("utf-8", "replace")
        form: dict[str, Any]
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                form = dict(json.loads(raw or "{}"))
            except ValueError:
                form = {}
        else:
            form = dict(parse_qsl(raw))
        grant = form.get("grant_type")
        if grant == "password":
            if form.get("username") != username or form.get("password") != password:
                return JSONResponse({"error": "invalid_grant", "error_description": "bad credentials"}, 400)
            user = username
        elif grant == "client_credentials":
            secret = st.oauth_clients.get(str(form.get("client_id")))
            if secret is None or secret != form.get("client_secret"):
                return JSONResponse({"error": "invalid_client", "error_description": "unknown client"}, 401)
            user = username
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        token = secrets.token_urlsafe(24)
        st.bearer_tokens[token] = user
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    async def set_lists(request: Request) -> Response:
        mode = (await request.json()).get("limit_mode")
        if mode not in ("page", "cap"):
            return JSONResponse({"error": "limit_mode must be page or cap"}, 400)
        st.limit_mode = mode
        return JSONResponse({"limit_mode": mode})

    async def entity_get(request: Request) -> Response:
        entity_type, entity_id = request.path_params["type"], request.path_params["id"]
        readable = entity_type in LIST_KEYS or entity_type == "comment"
        record = st.get(entity_type, entity_id) if readable else None
        if record is None:
            return envelope(404, error=f"{entity_type} {entity_id} not found (or not accessible by the user)")
        return envelope(200, data=Renderer(st, base_url(request)).full(entity_type, record))

    routes = [
        Route("/api", heartbeat, methods=["GET"]),
        Route("/api/", heartbeat, methods=["GET"]),
        Route("/api/", not_allowed, methods=["POST", "PUT", "DELETE"]),
        Route("/api/auth", login, methods=["POST"]),
        Route("/api/auth", session_info, methods=["GET"]),
        Route("/api/auth", logout, methods=["DELETE"]),
        Route("/api/auth", not_allowed, methods=["PUT"]),
        Route("/api/auth/{rest:path}", not_allowed, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/api/oauth2/token", oauth_token, methods=["POST"]),
        *file_routes(st),
        *webhook_routes(st),
        *externalid_routes(st),
        Route("/api/job", not_allowed, methods=["DELETE"]),
        *job_routes(st),
        Route("/api/{type}", entity_list, methods=["GET"]),
        Route("/api/{type}/{id:int}", entity_get, methods=["GET"]),
    ]
    return build_app(
        routes,
        state=st,
        reset=st.reset,
        identify=lambda headers, query, body: identify(st, headers, body),
        error_body=lambda status, message: {"messages": {"error": [message]}},
        extra_control=[*control_routes(st), Route("/_sandbox/lists", set_lists, methods=["PUT"])],
        middleware=[Middleware(SessionGuard, state=st)],
    )


def identify(st: ServiceTradeState, headers: Headers, body: Any) -> dict[str, Any]:
    """Who the request log says called: the session's user, or the username a login tried."""
    token = cookie_parser(headers.get("cookie", "")).get("PHPSESSID")
    tried = body.get("username") if isinstance(body, dict) else None
    return {
        "session": token is not None,
        "session_valid": token in st.sessions,
        "username": st.sessions.get(token or "") or tried,
    }


class SessionGuard:
    """Answers 401 for any `/api/*` call without a live PHPSESSID, except the heartbeat and `/auth`."""

    OPEN = ("/api", "/api/", "/api/auth", "/api/oauth2/token")

    def __init__(self, app: ASGIApp, state: ServiceTradeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        guarded = (
            scope["type"] == "http"
            and path.startswith("/api/")
            and path not in self.OPEN
            and not path.startswith("/api/auth/")
        )
        if guarded:
            headers = Headers(scope=scope)
            token = cookie_parser(headers.get("cookie", "")).get("PHPSESSID")
            scheme, _, bearer = headers.get("authorization", "").partition(" ")
            signed_in = token in self.state.sessions or (
                scheme.lower() == "bearer" and bearer in self.state.bearer_tokens
            )
            if not signed_in:
                response = envelope(401, error="unauthorized request: log in at /api/auth and send PHPSESSID")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
