"""The operations console (`/console`) and the Prometheus scrape endpoint (`/metrics`), served by the receiver.

Both read Redis synchronously in Starlette's thread pool, never on the event loop that answers webhooks.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import redis
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fieldrelay.metrics import render
from fieldrelay.poll_metrics import PollCollector
from fieldrelay.redaction import redactor_for
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from receiver.console.auth import ConsoleAuth
from receiver.console.rulesview import RulesView
from receiver.console.views import Console

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def sync_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(
        settings.redis_url or "redis://127.0.0.1:6379/0",
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )


def create_console(
    settings: Settings, actions: Mapping[str, type[BaseModel]], client: redis.Redis | None = None
) -> Starlette:
    """The console over the pipeline's state; `actions` is the action catalog the rules page loads rules with."""
    redactor = redactor_for(settings)
    token = settings.console_token.get_secret_value() if settings.console_token else ""
    state = PipelineState(client or sync_redis(settings), redactor=redactor)
    auth = ConsoleAuth(token, state.r, secure=not settings.dev_mode)
    rules = RulesView(settings.rules_dir, actions, settings.synchroteam_timezone)
    c = Console(state, auth, rules, redactor, clock_skew=settings.clock_skew)
    routes = [
        Route("/", c.guarded(c.overview), methods=["GET"], name="overview"),
        Route("/login", c.login, methods=["GET", "POST"]),
        Route("/logout", c.action(c.logout), methods=["POST"]),
        Route("/rejected", c.guarded(c.rejected_webhooks), methods=["GET"]),
        Route("/rejected/{rejected_id}", c.guarded(c.rejected_body), methods=["GET"]),
        Route("/rejected/{rejected_id}/replay", c.action(c.rejected_replay), methods=["POST"]),
        Route("/events", c.guarded(c.events), methods=["GET"]),
        Route("/events/{event_id}", c.guarded(c.event), methods=["GET"]),
        Route("/dead-letters", c.guarded(c.dead_letters), methods=["GET"]),
        Route("/dead-letters/{dlq_id}/{verb:str}", c.action(c.dead_letter_action), methods=["POST"]),
        Route("/rules", c.guarded(c.rules_index), methods=["GET"]),
        Route("/rules/test", c.action(c.rules_test), methods=["POST"]),
        Route("/targets", c.guarded(c.targets), methods=["GET"]),
        Route("/targets/{name}/{verb:str}", c.action(c.target_action), methods=["POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])


class SecurityHeaders:
    """Every console answer: a strict CSP (the pages' one style block carries a per-response nonce; there
    is no script), no framing, no referrer, no sniffing, no caching; HSTS when the request came over https."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = (
                    f"default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
                    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
                )
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["X-Content-Type-Options"] = "nosniff"
                headers.setdefault("Cache-Control", "no-store")
                if https:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def metrics_endpoint(settings: Settings, client: redis.Redis | None = None) -> Route:
    """`GET /metrics`: the whole deployment's counters and gauges, from Redis (see fieldrelay.metrics)."""
    scrape_client = client or sync_redis(settings)

    async def metrics(request: Request) -> Response:
        try:
            body = await run_in_threadpool(render, scrape_client, PollCollector(scrape_client))
        except (redis.exceptions.RedisError, OSError) as exc:
            return Response(f"redis unavailable: {type(exc).__name__}\n", 503, media_type="text/plain")
        return Response(body, media_type=CONTENT_TYPE)

    return Route("/metrics", metrics, methods=["GET"])
