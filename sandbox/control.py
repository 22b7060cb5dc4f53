"""The `/_sandbox/*` control surface every sandbox shares: request log, faults, reset, state access."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.faults import ErrorBody, Fault, FaultInjector, FaultMiddleware
from sandbox.recorder import CONTROL_PREFIX, Identify, RecorderMiddleware, RequestRecorder


def build_app(
    routes: Sequence[BaseRoute],
    *,
    state: Any,
    reset: Callable[[], None],
    identify: Identify,
    error_body: ErrorBody,
    extra_control: Sequence[BaseRoute] = (),
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """Wrap a sandbox's API routes with the shared control routes, request log and fault injection.

    The app exposes `app.state.sandbox` (the state object), `app.state.recorder` and `app.state.faults`.
    """
    recorder = RequestRecorder(identify)
    injector = FaultInjector()

    async def list_requests(request: Request) -> Response:
        return JSONResponse(recorder.entries())

    async def clear_requests(request: Request) -> Response:
        recorder.clear()
        return Response(status_code=204)

    async def list_faults(request: Request) -> Response:
        return JSONResponse(injector.describe())

    async def add_fault(request: Request) -> Response:
        try:
            body = await request.json()
            faults = [Fault.from_json(item) for item in (body if isinstance(body, list) else [body])]
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        for fault in faults:
            injector.add(fault)
        return JSONResponse(injector.describe())

    async def clear_faults(request: Request) -> Response:
        injector.clear()
        return Response(status_code=204)

    async def do_reset(request: Request) -> Response:
        reset()
        recorder.clear()
        injector.clear()
        return Response(status_code=204)

    control = [
        Route(f"{CONTROL_PREFIX}/requests", list_requests, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/requests", clear_requests, methods=["DELETE"]),
        Route(f"{CONTROL_PREFIX}/faults", list_faults, methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/faults", add_fault, methods=["POST"]),
        Route(f"{CONTROL_PREFIX}/faults", clear_faults, methods=["DELETE"]),
        Route(f"{CONTROL_PREFIX}/reset", do_reset, methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        # Unknown paths and verbs answer in the API's own error shape, not Starlette's plain text.
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "error")
        return JSONResponse(error_body(status, f"{request.method} {request.url.path}: {detail}"), status_code=status)

    app = Starlette(
        routes=[*control, *extra_control, *routes],
        exception_handlers={404: http_error, 405: http_error},
        middleware=[
            Middleware(RecorderMiddleware, recorder=recorder),
            Middleware(FaultMiddleware, injector=injector, error_body=error_body),
            *middleware,
        ],
    )
    app.state.sandbox = state
    app.state.recorder = recorder
    app.state.faults = injector
    return app
