"""Response and request helpers shared by the ServiceTrade sandbox's route modules."""

from __future__ import annotations

import json
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.servicetrade_lists import InvalidQuery


def envelope(
    status: int,
    *,
    data: Any = None,
    error: str | None = None,
    validation: dict[str, list[str]] | None = None,
    background: BackgroundTask | None = None,
) -> Response:
    body: dict[str, Any] = {}
    if error or validation:
        body["messages"] = {
            "error": [error] if error else [],
            **({"validation": validation} if validation else {}),
        }
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status, background=background)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/api"


async def read_json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidQuery("body", "Request data must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidQuery("body", "Request data must be a JSON object")
    return body
