"""The ``http.request`` action: call any URL, with an ``Idempotency-Key`` per event and rule step."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from fieldrelay.egress import SETTING, EgressPolicy, EgressRefused
from fieldrelay.settings import http_allowed_hosts
from workers.actions.context import ActionContext, ActionSpec, Clients
from workers.actions.params import ActionParams


def _http_url(value: str, info: ValidationInfo) -> str:
    # Part of the field's type, so `rules check` applies it to a literal URL at load time; a
    # templated one is checked when it renders. A literal aimed where the egress policy will never let it
    # go (cloud metadata, loopback, a private network, a host not in the allowlist) is a load error, so
    # `rules check` says so rather than the first run's dead letter. At run time the connector applies the
    # worker's policy to every URL it sends to, so the settings are not read again for each render.
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise ValueError(f"not an http(s) URL: {value!r}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"only http and https URLs are allowed, not {parts.scheme or 'no scheme'!r}: {value!r}")
    if not host:
        raise ValueError(f"not an http(s) URL (no host): {value!r}")
    if not (info.context or {}).get("at_load"):
        return value
    reason = EgressPolicy.from_entries(http_allowed_hosts()).check_url(value)
    if reason is not None:
        raise ValueError(f"{EgressRefused(reason)} ({SETTING} names the hosts it may call)")
    return value


class HttpRequest(ActionParams):
    """Send an HTTP request with an `Idempotency-Key`; the answer's status and JSON (or text) are the step's result.

    The URL must be http or https, and pass the egress policy (FIELDRELAY_HTTP_ALLOWED_HOSTS, or
    public addresses only); the answer kept in the result is cut at 64 KiB.
    """

    url: Annotated[str, AfterValidator(_http_url)] = Field(description="http(s) URL")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json", description="JSON body")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def request(clients: Clients, params: HttpRequest, ctx: ActionContext) -> dict[str, Any]:
    return clients.http.request(
        params.method,
        params.url,
        headers=params.headers,
        json=params.json_body,
        idempotency_key=ctx.call_key(),
    )


SPECS = [ActionSpec("http.request", HttpRequest, request, "http")]
