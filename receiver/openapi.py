"""The receiver's public endpoints as an OpenAPI 3.1 document, generated from the types it validates with.

The webhook's request body is `receiver.webhooks.WebhookMessage`, the TypedDict `parse_message`
validates every body against, so a change to it (a new field, a range check) changes the document.
The answers are TypedDicts here, the shapes `receiver.app` writes. `GET /openapi.json` serves the
document; `docs/openapi.json` is a copy that a test keeps current (`python -m receiver.openapi > docs/openapi.json`);
`tests/receiver/test_openapi.py` runs schemathesis against a real receiver with it.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typing_extensions import TypedDict

from receiver.webhooks import WebhookMessage

VERSION = "0.1.0"


class Accepted(TypedDict):
    """200: the message's events are in Redis."""

    accepted: Annotated[int, Field(ge=0, description="How many normalized events were enqueued.")]


class ErrorBody(TypedDict):
    """4xx and 503: what went wrong; `detail` lists every schema problem as `path: message`."""

    error: str
    detail: NotRequired[str]
    rejected_id: NotRequired[
        Annotated[str, Field(description="A 400's body is kept under this id (`fieldrelay webhooks rejected`).")]
    ]


class Health(TypedDict):
    status: Literal["ok"]


class Ready(TypedDict):
    status: Literal["ready"]
    redis: Literal["ok"]
    rules: Annotated[
        dict[str, Any] | None,
        Field(description="The workers' last rules load (`ok`, `rules`, `errors`...), or null before the first."),
    ]
    spooled: Annotated[int, Field(ge=0, description="Webhooks on disk waiting for Redis.")]


class Unavailable(TypedDict):
    status: Literal["unavailable"]
    redis: Annotated[str, Field(description="The kind of error Redis gave.")]


_SCHEMAS: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
    ("WebhookMessage", "validation", TypeAdapter(WebhookMessage)),
    ("Accepted", "serialization", TypeAdapter(Accepted)),
    ("ErrorBody", "serialization", TypeAdapter(ErrorBody)),
    ("Health", "serialization", TypeAdapter(Health)),
    ("Ready", "serialization", TypeAdapter(Ready)),
    ("Unavailable", "serialization", TypeAdapter(Unavailable)),
]


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


def _error(description: str, refs: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _json(refs["ErrorBody"]), **extra}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the webhook, `/healthz`, `/readyz` and `/metrics`."""
    keys, definitions = TypeAdapter.json_schemas(
        [(name, mode, adapter) for name, mode, adapter in _SCHEMAS], ref_template="#/components/schemas/{model}"
    )
    refs = {name: keys[(name, mode)]["$ref"] for name, mode, _ in _SCHEMAS}
    webhook = {
        "post": {
            "operationId": "receiveServiceTradeWebhook",
            "summary": "Receive one ServiceTrade webhook message",
            "description": (
                "ServiceTrade's documented message. Answers 2xx only once its events are in Redis. The message "
                "`timestamp` may also be sent as a string of digits, as ServiceTrade's documentation shows it."
            ),
            "parameters": [
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "description": "One of FIELDRELAY_WEBHOOK_TOKENS.",
                    "schema": {"type": "string"},
                }
            ],
            "requestBody": {"required": True, "content": _json(refs["WebhookMessage"])},
            "responses": {
                "200": {"description": "Every event of the message is in Redis.", "content": _json(refs["Accepted"])},
                "400": _error("The body is not JSON, or not the documented message; nothing was enqueued.", refs),
                "401": _error("Unknown token; nothing was read.", refs),
                "429": _error(
                    "Too many unknown tokens from this address; nothing was read until the window ends.",
                    refs,
                    headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds."}},
                ),
                "413": _error("The body is over 1 MiB.", refs),
                "503": _error(
                    "Redis is unreachable: a valid message was spooled to disk and is enqueued when Redis answers; "
                    "a rejected one could not be kept, so ServiceTrade should send it again.",
                    refs,
                    headers={"Retry-After": {"schema": {"type": "string"}, "description": "Seconds."}},
                ),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fieldrelay receiver",
            "version": VERSION,
            "description": "ServiceTrade webhooks in; health, readiness and Prometheus metrics out.",
        },
        "paths": {
            "/webhooks/servicetrade/{token}": webhook,
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "The process is up",
                    "responses": {"200": {"description": "Up.", "content": _json(refs["Health"])}},
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "ready",
                    "summary": "Redis answers (and how the workers' last rules load went)",
                    "responses": {
                        "200": {"description": "Ready.", "content": _json(refs["Ready"])},
                        "503": {"description": "Redis is unreachable.", "content": _json(refs["Unavailable"])},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics of the whole deployment, read from Redis",
                    "responses": {
                        "200": {
                            "description": "Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "503": {
                            "description": "Redis is unreachable.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                    },
                }
            },
        },
        "components": {"schemas": definitions.get("$defs", {})},
    }


def openapi_route() -> Route:
    """`GET /openapi.json`: the document, built once."""
    document = openapi_document()

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    return Route("/openapi.json", openapi, methods=["GET"])


def render() -> str:
    """The document as `docs/openapi.json` holds it."""
    return json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
