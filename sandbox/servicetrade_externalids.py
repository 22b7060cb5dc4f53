"""ServiceTrade `/externalid` resource: external ids stored on records, and records found by them.

ServiceTrade doc, "ExternalId":
- "Supported entity types: asset, company, contact, contract, deficiency, location, job, jobitem, libitem,
  quote, user"; `GET /externalid/foo` is 404 "invalid entity type"; `/externalid`, `/externalid/location`
  are 405.
- `GET /externalid/{entity}/123` -> `{"values": {...}}`; 404 "{entity} 123 not found".
- `GET|POST|PUT /externalid/{entity}/123/system_name` -> `{"value": ...}`; 404 "no external system with
  that name was found"; DELETE 405. "If an empty string is given for a PUT, the existing value will be
  removed."
- `GET /externalid/{entity}/system_name/ENT1` (or `/system_name/?value=ENT1`) -> the record; 404 "no
  {entity} object was found in system_name identified by 'ENT2'"; POST/PUT/DELETE 405.
- Records return "a key/value object of external system ids" as `externalIds`.

[INCONS] The params table types `entityType` as the "entity type constant" (3 for a job), while every
example path uses the name (`/externalid/location/123`): both are accepted here.
Whether setting an external id changes the record's `updated` or sends a webhook is not documented;
the sandbox does neither.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.servicetrade_http import base_url, envelope, read_json
from sandbox.servicetrade_lists import InvalidQuery
from sandbox.servicetrade_store import ServiceTradeState
from sandbox.servicetrade_views import Renderer

SUPPORTED = (
    "asset",
    "company",
    "contact",
    "contract",
    "deficiency",
    "location",
    "job",
    "jobitem",
    "libitem",
    "quote",
    "user",
)
# The doc's "Entity Types" constants for the supported types.
CONSTANTS = {
    "2": "asset",
    "5": "company",
    "22": "contact",
    "30": "contract",
    "10": "deficiency",
    "11": "location",
    "3": "job",
    "23": "jobitem",
    "24": "libitem",
    "9": "quote",
    "4": "user",
}


def externalid_routes(st: ServiceTradeState) -> list[Route]:
    def entity_type(raw: str) -> str | None:
        name = CONSTANTS.get(raw, raw)
        return name if name in SUPPORTED else None

    def invalid_type() -> Response:
        return envelope(404, error="invalid entity type")

    def not_allowed(request: Request) -> Response:
        return envelope(405, error="not allowed")

    async def listing(request: Request) -> Response:
        if "type" in request.path_params and entity_type(request.path_params["type"]) is None:
            return invalid_type()
        return not_allowed(request)

    def record_of(request: Request) -> tuple[str | None, dict[str, Any] | None, Response | None]:
        name = entity_type(request.path_params["type"])
        if name is None:
            return None, None, invalid_type()
        record = st.get(name, request.path_params["id"])
        if record is None:
            return name, None, envelope(404, error=f"{name} {request.path_params['id']} not found")
        return name, record, None

    async def all_values(request: Request) -> Response:
        _, record, problem = record_of(request)
        if problem is not None or record is None:
            return problem or invalid_type()
        return envelope(200, data={"values": dict(record.get("externalIds") or {})})

    async def one_value(request: Request) -> Response:
        _, record, problem = record_of(request)
        if problem is not None or record is None:
            return problem or invalid_type()
        system = request.path_params["system"]
        if system not in st.external_systems:
            return envelope(404, error="no external system with that name was found")
        ids = record.setdefault("externalIds", {})
        if request.method == "GET":
            if system not in ids:
                return envelope(404, error=f"no {system} external id for this record")
            return envelope(200, data={"value": ids[system]})
        try:
            body = await read_json(request)
        except InvalidQuery as exc:
            return envelope(400, error=exc.message)
        value = body.get("value", "")
        if not isinstance(value, str):
            return envelope(400, error="bad data given", validation={"value": ["Must be a string"]})
        if request.method == "PUT" and value == "":
            ids.pop(system, None)
        else:
            ids[system] = value
        return envelope(200, data={"value": value})

    async def lookup(request: Request) -> Response:
        name = entity_type(request.path_params["type"])
        if name is None:
            return invalid_type()
        system = request.path_params["system"]
        value = request.path_params.get("value") or request.query_params.get("value", "")
        for record in st.all(name):
            if (record.get("externalIds") or {}).get(system) == value and value:
                return envelope(200, data=Renderer(st, base_url(request)).full(name, record))
        return envelope(404, error=f"no {name} object was found in {system} identified by {value!r}")

    prefix = "/api/externalid"
    return [
        Route(prefix, listing, methods=["GET", "POST", "PUT", "DELETE"]),
        Route(f"{prefix}/{{type}}", listing, methods=["GET", "POST", "PUT", "DELETE"]),
        Route(f"{prefix}/{{type}}/{{id:int}}", all_values, methods=["GET"]),
        Route(f"{prefix}/{{type}}/{{id:int}}/{{system}}", one_value, methods=["GET", "POST", "PUT"]),
        Route(f"{prefix}/{{type}}/{{id:int}}/{{system}}", not_allowed, methods=["DELETE"]),
        Route(f"{prefix}/{{type}}/{{system}}/", lookup, methods=["GET"]),
        Route(f"{prefix}/{{type}}/{{system}}/{{value}}", lookup, methods=["GET"]),
        Route(f"{prefix}/{{type}}/{{system}}/{{value}}", not_allowed, methods=["POST", "PUT", "DELETE"]),
    ]
