"""The receiver process's ASGI app factory (`uvicorn --factory fieldrelay_cli.asgi:app`).

It assembles the process: the receiver (webhooks, health, metrics, console) with the workers'
action catalog, which the console's rules page loads rules with.
"""

from __future__ import annotations

import gc

from starlette.applications import Starlette

from fieldrelay.observability import init_sentry
from fieldrelay.settings import load_settings
from receiver.app import create_app
from workers.actions.registry import action_params


def app() -> Starlette:
    settings = load_settings()
    if not settings.redis_url:
        raise RuntimeError("FIELDRELAY_REDIS_URL is unset: start with `fieldrelay receiver`")
    init_sentry(settings, "receiver")
    app = create_app(settings, action_params())
    # Collections of the long-lived start-up objects showed as p99 spikes under load; keep
    # them out of the collector's view and collect the young generation less often.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    return app
