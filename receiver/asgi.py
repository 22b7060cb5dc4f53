"""ASGI entry point for servers that import an app factory (`uvicorn --factory receiver.asgi:app`)."""

from __future__ import annotations

from starlette.applications import Starlette

from fieldrelay.observability import init_sentry
from fieldrelay.settings import load_settings
from receiver.app import create_app


def app() -> Starlette:
    settings = load_settings()
    if not settings.redis_url:
        raise RuntimeError("FIELDRELAY_REDIS_URL is unset: start with `fieldrelay receiver`")
    init_sentry(settings, "receiver")
    return create_app(settings)
