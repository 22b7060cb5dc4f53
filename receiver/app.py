"""The receiver ASGI app: `create_app(settings)` serves webhooks, health and readiness."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
import redis.exceptions
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from fieldrelay.settings import Settings
from fieldrelay.state import RULES_STATUS_KEY
from receiver.console import create_console, metrics_endpoint
from receiver.publisher import EventPublisher, ingest_message
from receiver.spool import Spool
from receiver.webhooks import WebhookError, normalize, parse_message, token_matches

MAX_BODY = 1024 * 1024
log = logging.getLogger("fieldrelay.receiver")


class BodyTooLarge(Exception):
    pass


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


async def read_limited(request: Request, limit: int = MAX_BODY) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    settings: Settings, actions: Mapping[str, type[BaseModel]], *, redis_client: aioredis.Redis | None = None
) -> Starlette:
    """Build the receiver. `settings.redis_url` must be set (the CLI resolves the embedded one first).

    `actions` is the action catalog (name -> parameter model) the console's rules page loads rules
    with; the process that serves the receiver hands it in (fieldrelay_cli.asgi).
    """
    tokens = [t.get_secret_value().encode() for t in settings.webhook_tokens]
    client = redis_client or aioredis.Redis.from_url(
        settings.redis_url or "redis://127.0.0.1:6379/0",
        # Short timeouts: ServiceTrade waits 5 s, and a 503 it can retry beats a timeout.
        socket_timeout=2.0,
        socket_connect_timeout=1.0,
        health_check_interval=30,
    )
    publisher = EventPublisher(client)
    spool = Spool(settings.data_dir / "spool")

    async def servicetrade_webhook(request: Request) -> Response:
        if not token_matches(request.path_params["token"], tokens):
            return json_response({"error": "unknown webhook token"}, 401)
        try:
            body = await read_limited(request)
        except BodyTooLarge:
            return json_response({"error": f"body exceeds {MAX_BODY} bytes"}, 413)
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            events = normalize(parse_message(body), max_skew=settings.clock_skew)
        except WebhookError as exc:
            return json_response({"error": "invalid ServiceTrade webhook message", "detail": str(exc)}, 400)
        try:
            await publisher.publish(events)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            log.error("enqueue failed, spooling to disk and answering 503: %s", type(exc).__name__)
            await asyncio.to_thread(spool.write, publisher.queue, ingest_message(events, publisher.queue))
            return json_response({"error": "queue unavailable, retry later"}, 503, {"Retry-After": "5"})
        return json_response({"accepted": len(events)})

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await client.ping()
            rules = await client.get(RULES_STATUS_KEY)
        except (redis.exceptions.RedisError, OSError) as exc:
            return json_response({"status": "unavailable", "redis": type(exc).__name__}, 503)
        # A broken rules reload shows here but keeps 200: the receiver itself is fine, and the
        # workers keep running the last good set; taking receivers out of rotation would lose webhooks.
        return json_response(
            {
                "status": "ready",
                "redis": "ok",
                "rules": orjson.loads(rules) if rules else None,
                "spooled": spool.pending() if spool.directory.exists() else 0,
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        replayer = asyncio.create_task(spool.replay_forever(client, settings.spool_replay_interval))
        yield
        replayer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await replayer
        await client.aclose()

    routes = [
        # `:path`: a token may hold "/" (and "@", ":", "+"), like any generated secret.
        Route("/webhooks/servicetrade/{token:path}", servicetrade_webhook, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        metrics_endpoint(settings),
        Mount("/console", app=create_console(settings, actions)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
