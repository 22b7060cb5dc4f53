"""The reference endpoint the receiver is measured against: a bare Starlette handler that LPUSHes the body."""

from __future__ import annotations

import os

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def app() -> Starlette:
    client = aioredis.Redis.from_url(os.environ["FIELDRELAY_REDIS_URL"])

    async def ingest(request: Request) -> Response:
        await client.lpush("reference", await request.body())
        return Response(b'{"accepted":1}', media_type="application/json")

    return Starlette(routes=[Route("/webhooks/servicetrade/{token}", ingest, methods=["POST"])])
