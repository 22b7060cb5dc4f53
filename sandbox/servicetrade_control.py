"""ServiceTrade-only control routes: change records as if a user did, and steer webhook delivery."""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.recorder import CONTROL_PREFIX
from sandbox.servicetrade_http import base_url
from sandbox.servicetrade_lists import LIST_KEYS
from sandbox.servicetrade_store import ServiceTradeState
from sandbox.webhook_delivery import Change

ACTIONS = {"created", "updated", "deleted"}


def control_routes(st: ServiceTradeState) -> list[Route]:
    """`/_sandbox/entities/...` changes records and notifies hooks; `/_sandbox/webhook/...` steers them."""

    def deliver(request: Request, changes: list[Change]) -> BackgroundTask:
        return BackgroundTask(st.dispatcher.send, st.notify(changes, base_url(request)))

    async def create_entity(request: Request) -> Response:
        entity_type = request.path_params["type"]
        if entity_type not in LIST_KEYS:
            return JSONResponse({"error": f"unknown entity type {entity_type!r}"}, status_code=404)
        record = st.create(entity_type, await request.json())
        change = Change("created", entity_type, record["id"], record["created"])
        return JSONResponse(record, background=deliver(request, [change]))

    async def update_entity(request: Request) -> Response:
        entity_type, entity_id = request.path_params["type"], request.path_params["id"]
        if st.get(entity_type, entity_id) is None:
            return JSONResponse({"error": f"{entity_type} {entity_id} not found"}, status_code=404)
        changeset = st.update(entity_type, entity_id, await request.json())
        record = st.get(entity_type, entity_id) or {}
        change = Change("updated", entity_type, entity_id, record.get("updated", st.now()), changeset)
        return JSONResponse(st.get(entity_type, entity_id), background=deliver(request, [change]))

    async def delete_entity(request: Request) -> Response:
        entity_type, entity_id = request.path_params["type"], request.path_params["id"]
        if st.delete(entity_type, entity_id) is None:
            return JSONResponse({"error": f"{entity_type} {entity_id} not found"}, status_code=404)
        change = Change("deleted", entity_type, entity_id, st.now())
        return Response(status_code=204, background=deliver(request, [change]))

    async def emit(request: Request) -> Response:
        """Send one message with the given items, as in the docs' sample: `{"data": [{action, type, id}]}`."""
        body: dict[str, Any] = await request.json()
        items = body.get("data", [])
        if not items or any(i.get("action") not in ACTIONS or "type" not in i or "id" not in i for i in items):
            return JSONResponse({"error": "data must be a non-empty list of {action, type, id}"}, status_code=400)
        changes = [
            Change(
                i["action"],
                i["type"],
                int(i["id"]),
                int(i.get("timestamp", st.now())),
                list(i.get("changeset", [])),
            )
            for i in items
        ]
        deliveries = st.notify(changes, base_url(request))
        return JSONResponse(
            {"messages": [m for _, m in deliveries]},
            background=BackgroundTask(st.dispatcher.send, deliveries),
        )

    async def add_external_system(request: Request) -> Response:
        """`{"name": ...}`: an external system the account knows (the doc's `/externalsystem` POST is not simulated)."""
        body = await request.json()
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            return JSONResponse({"error": "name must be a non-empty string"}, status_code=400)
        st.external_systems.add(name)
        return JSONResponse(sorted(st.external_systems))

    async def get_controls(request: Request) -> Response:
        return JSONResponse(st.dispatcher.describe())

    async def set_controls(request: Request) -> Response:
        try:
            st.dispatcher.set_controls(await request.json())
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(st.dispatcher.describe())

    async def flush(request: Request) -> Response:
        held = st.dispatcher.release()
        return JSONResponse({"released": len(held)}, background=BackgroundTask(st.dispatcher.send, held))

    async def deliveries(request: Request) -> Response:
        return JSONResponse(list(st.dispatcher.log))

    async def clear_deliveries(request: Request) -> Response:
        st.dispatcher.log.clear()
        return Response(status_code=204)

    prefix = CONTROL_PREFIX
    return [
        Route(f"{prefix}/entities/{{type}}", create_entity, methods=["POST"]),
        Route(f"{prefix}/entities/{{type}}/{{id:int}}", update_entity, methods=["PATCH", "PUT"]),
        Route(f"{prefix}/entities/{{type}}/{{id:int}}", delete_entity, methods=["DELETE"]),
        Route(f"{prefix}/externalsystems", add_external_system, methods=["POST"]),
        Route(f"{prefix}/webhook/emit", emit, methods=["POST"]),
        Route(f"{prefix}/webhook/controls", get_controls, methods=["GET"]),
        Route(f"{prefix}/webhook/controls", set_controls, methods=["PUT", "POST"]),
        Route(f"{prefix}/webhook/flush", flush, methods=["POST"]),
        Route(f"{prefix}/webhook/deliveries", deliveries, methods=["GET"]),
        Route(f"{prefix}/webhook/deliveries", clear_deliveries, methods=["DELETE"]),
    ]
