"""ServiceTrade `/webhook` resource: list, read, create, update and delete hook registrations."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.servicetrade_http import base_url, envelope, read_json
from sandbox.servicetrade_lists import InvalidQuery
from sandbox.servicetrade_store import ServiceTradeState


def webhook_routes(st: ServiceTradeState) -> list[Route]:
    def shown(request: Request, hook: dict[str, Any]) -> dict[str, Any]:
        return {"id": hook["id"], "uri": f"{base_url(request)}/webhook/{hook['id']}", **hook}

    def missing(hook_id: int) -> Response:
        return envelope(404, error=f"webhook {hook_id} not found")

    def invalid(field: str, message: str) -> Response:
        return envelope(400, error="bad data given", validation={field: [message]})

    async def list_hooks(request: Request) -> Response:
        hooks = [shown(request, st.webhooks[k]) for k in sorted(st.webhooks)]
        return envelope(200, data={"totalPages": 1, "page": 1, "webhooks": hooks})

    async def get_hook(request: Request) -> Response:
        hook = st.webhooks.get(request.path_params["id"])
        return missing(request.path_params["id"]) if hook is None else envelope(200, data=shown(request, hook))

    async def create_hook(request: Request) -> Response:
        try:
            body = await read_json(request)
        except InvalidQuery as exc:
            return invalid(exc.field, exc.message)
        url = body.get("hookUrl")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return invalid("hookUrl", "Required, an http(s) URL")
        flags = {k: body.get(k, default) for k, default in (("enabled", True), ("includeChangesets", False))}
        for key, value in flags.items():
            if not isinstance(value, bool):
                return invalid(key, "Must be a boolean")
        hook = st.add_webhook(url, flags["enabled"], flags["includeChangesets"])
        # The documented create answer shows confirmed:false; confirming right after it, not in a
        # background task, means a change made straight after creation is never missed.
        data = shown(request, dict(hook))
        await st.confirm_webhook(hook)
        return envelope(200, data=data)

    async def update_hook(request: Request) -> Response:
        hook = st.webhooks.get(request.path_params["id"])
        if hook is None:
            return missing(request.path_params["id"])
        try:
            body = await read_json(request)
        except InvalidQuery as exc:
            return invalid(exc.field, exc.message)
        changes: dict[str, Any] = {k: body[k] for k in ("enabled", "includeChangesets") if k in body}
        for key, value in changes.items():
            if not isinstance(value, bool):
                return invalid(key, "Must be a boolean")
        hook.update(changes)
        return envelope(200, data=shown(request, hook))

    async def delete_hook(request: Request) -> Response:
        hook_id = request.path_params["id"]
        if st.webhooks.pop(hook_id, None) is None:
            return missing(hook_id)
        return envelope(200, data={})

    return [
        Route("/api/webhook", list_hooks, methods=["GET"]),
        Route("/api/webhook", create_hook, methods=["POST"]),
        Route("/api/webhook/{id:int}", get_hook, methods=["GET"]),
        Route("/api/webhook/{id:int}", update_hook, methods=["PUT"]),
        Route("/api/webhook/{id:int}", delete_hook, methods=["DELETE"]),
    ]
