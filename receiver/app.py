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

from fieldrelay.logs import OutageLog
from fieldrelay.metrics import counter_field, metric_key
from fieldrelay.settings import Settings
from fieldrelay.state import RULES_STATUS_KEY
from receiver.console import create_console, metrics_endpoint
from receiver.openapi import openapi_route
from receiver.publisher import EventPublisher, event_messages
from receiver.rejected import keep
from receiver.spool import Spool
from receiver.throttle import Throttle
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
    publisher = EventPublisher(client, per_message=settings.events_per_message)
    spool = Spool(settings.data_dir / "spool")
    # One line when Redis stops answering and one when it answers again, not one per webhook.
    outage = OutageLog(
        log,
        "enqueue failed, spooling webhooks to disk and answering 503 until Redis answers",
        "Redis takes webhooks again",
        level=logging.ERROR,
    )
    throttle = Throttle()

    async def count(name: str, **labels: str) -> None:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):  # a metric never changes the answer
            await client.hincrby(metric_key(name), counter_field(name, labels), 1)

    async def refused_token(address: str) -> Response:
        """A wrong token: 401, and past the limit 429 for the address until its window ends."""
        waiting = throttle.blocked(address)
        if waiting:
            await count("fieldrelay_auth_throttled_total", kind="webhook")
            return json_response({"error": "too many failed tokens"}, 429, {"Retry-After": str(int(waiting) + 1)})
        failures = throttle.failed(address)
        await count("fieldrelay_auth_failures_total", kind="webhook")
        if failures == 1 or failures == throttle.limit:
            log.warning(
                "unknown webhook token from %s (%d in %g s%s)",
                address,
                failures,
                throttle.window,
                "; throttled" if failures >= throttle.limit else "",
            )
        return json_response({"error": "unknown webhook token"}, 401)

    async def servicetrade_webhook(request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        if not token_matches(request.path_params["token"], tokens):
            return await refused_token(address)
        if not throttle.trusted(address):
            waiting = throttle.blocked(address)
            if waiting:  # an address that has only ever guessed: a right guess is refused too
                await count("fieldrelay_auth_throttled_total", kind="webhook")
                return json_response({"error": "too many failed tokens"}, 429, {"Retry-After": str(int(waiting) + 1)})
            throttle.trust(address)
        try:
            body = await read_limited(request)
        except BodyTooLarge:
            return json_response({"error": f"body exceeds {MAX_BODY} bytes"}, 413)
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            events = normalize(parse_message(body), max_skew=settings.clock_skew)
        except WebhookError as exc:
            kind = "not_json" if str(exc).startswith("body is not valid JSON") else "invalid"
            return await rejected(body, str(exc), kind)
        except Exception as exc:  # a body nothing above expected: kept like any other rejection, never a 500
            log.exception("webhook body could not be read")
            return await rejected(body, f"could not be read: {type(exc).__name__}", "invalid")
        try:
            await publisher.publish(events)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            outage.failed(type(exc).__name__)
            await asyncio.to_thread(spool.write, publisher.queue, event_messages(events, publisher.queue))
            return json_response({"error": "queue unavailable, retry later"}, 503, {"Retry-After": "5"})
        outage.recovered()
        return json_response({"accepted": len(events)})

    async def rejected(body: bytes, detail: str, kind: str) -> Response:
        """400 for a body a valid token sent; it is kept first (receiver/rejected.py), since ServiceTrade
        will not send it again. If it cannot be kept, 503: ServiceTrade retries a 5xx."""
        try:
            rejected_id = await keep(client, body, detail, kind)
        except (redis.exceptions.RedisError, OSError) as exc:
            log.error("rejected webhook not kept (%s); answering 503 so it is sent again", type(exc).__name__)
            return json_response({"error": "queue unavailable, retry later"}, 503, {"Retry-After": "5"})
        log.warning("webhook rejected and kept as %s: %s", rejected_id, detail[:500])
        return json_response(
            {"error": "invalid ServiceTrade webhook message", "detail": detail, "rejected_id": rejected_id}, 400
        )

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
        openapi_route(),
        Mount("/console", app=create_console(settings, actions)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
