"""The ``http.request`` action: call any URL, with an ``Idempotency-Key`` per event and rule step."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from workers.actions.context import ActionContext, ActionSpec, Clients
from workers.actions.params import ActionParams


class HttpRequest(ActionParams):
    """Send an HTTP request with an `Idempotency-Key`; the answer's status and JSON (or text) are the step's result."""

    url: str = Field(description="http(s) URL")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json", description="JSON body")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value


def request(clients: Clients, params: HttpRequest, ctx: ActionContext) -> dict[str, Any]:
    return clients.http.request(
        params.method,
        params.url,
        headers=params.headers,
        json=params.json_body,
        idempotency_key=ctx.call_key(),
    )


SPECS = [ActionSpec("http.request", HttpRequest, request, "http")]
