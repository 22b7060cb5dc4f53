"""ASGI entry point for servers that import an app factory (`uvicorn --factory receiver.asgi:app`)."""

from __future__ import annotations

import gc

from starlette.applications import Starlette

from fieldrelay.observability import init_sentry
from fieldrelay.settings import load_settings
from receiver.app import create_app


def app() -> Starlette:
    settings = load_settings()
    if not settings.redis_url:
        raise RuntimeError("FIELDRELAY_REDIS_URL is unset: start with `fieldrelay receiver`")
    init_sentry(settings, "receiver")
    app = create_app(settings)
    # Collections of the long-lived start-up objects showed as p99 spikes under load; keep
    # them out of the collector's view and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    return app
