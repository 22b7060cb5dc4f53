"""Runs the three sandboxes in one process on their local ports (8781-8783 unless told), for `make run` and trials."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import LOGGING_CONFIG

from sandbox import servicetrade, synchroteam, synergist

HOST = "127.0.0.1"
DEFAULT_SYNCHROTEAM_KEY = "5e1d2c3b-0000-4000-8000-000000000001"
PORTS = {"servicetrade": 8781, "synchroteam": 8782, "synergist": 8783}

logger = logging.getLogger("sandbox")


def build_servers(
    host: str,
    ports: dict[str, int],
    apps: dict[str, Starlette] | None = None,
    *,
    synchroteam_options: dict[str, Any] | None = None,
    log_config: dict[str, Any] | None = LOGGING_CONFIG,
) -> list[uvicorn.Server]:
    """One uvicorn server per sandbox; pass `apps` to serve pre-built (e.g. pre-seeded) apps.

    `synchroteam_options` are keyword arguments for `synchroteam.create_app` (rate_limit,
    window_seconds, daily_quota, quota_period): the fault tests start it with other limits.
    `log_config=None` leaves logging as the caller set it up (`fieldrelay sandbox` logs JSON).
    """
    built = apps or {
        "servicetrade": servicetrade.create_app(),
        "synchroteam": synchroteam.create_app(**(synchroteam_options or {})),
        "synergist": synergist.create_app(),
    }
    return [
        uvicorn.Server(
            uvicorn.Config(
                built[name], host=host, port=port, log_level="warning", lifespan="off", log_config=log_config
            )
        )
        for name, port in ports.items()
    ]


async def serve_async(
    host: str = HOST,
    *,
    servicetrade_port: int = PORTS["servicetrade"],
    synchroteam_port: int = PORTS["synchroteam"],
    synergist_port: int = PORTS["synergist"],
    synchroteam_options: dict[str, Any] | None = None,
    log_config: dict[str, Any] | None = LOGGING_CONFIG,
) -> None:
    ports = {"servicetrade": servicetrade_port, "synchroteam": synchroteam_port, "synergist": synergist_port}
    for name, port in ports.items():
        logger.warning("%s sandbox on http://%s:%d", name, host, port)
    servers = build_servers(host, ports, synchroteam_options=synchroteam_options, log_config=log_config)
    await asyncio.gather(*(server.serve() for server in servers))


def serve(
    host: str = HOST,
    servicetrade_port: int = PORTS["servicetrade"],
    synchroteam_port: int = PORTS["synchroteam"],
    synergist_port: int = PORTS["synergist"],
    *,
    synchroteam_options: dict[str, Any] | None = None,
    log_config: dict[str, Any] | None = LOGGING_CONFIG,
) -> None:
    """Serve all three sandboxes until interrupted."""
    asyncio.run(
        serve_async(
            host,
            servicetrade_port=servicetrade_port,
            synchroteam_port=synchroteam_port,
            synergist_port=synergist_port,
            synchroteam_options=synchroteam_options,
            log_config=log_config,
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default=HOST)
    for name, port in PORTS.items():
        parser.add_argument(f"--{name}-port", type=int, default=port)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = f"http://{args.host}"
    lines = [
        f"ServiceTrade {url}:{args.servicetrade_port}/api  login sandbox / sandbox-password",
        f"Synchroteam  {url}:{args.synchroteam_port}/api/v3  Basic sandbox:{DEFAULT_SYNCHROTEAM_KEY}",
        f"Synergist    {url}:{args.synergist_port}/jsonapi  user sandbox / sandbox-password, company 1",
    ]
    print("\n".join(lines), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.host, args.servicetrade_port, args.synchroteam_port, args.synergist_port)
