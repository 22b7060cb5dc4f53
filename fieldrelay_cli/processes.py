"""`fieldrelay receiver|worker|beat|sandbox|run`: the long-running processes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import uvicorn

from fieldrelay.logs import logging_config, setup_logging
from fieldrelay.queues import ALL_QUEUES
from fieldrelay_cli.common import settings_or_exit, with_redis
from fieldrelay_cli.devstack import run_stack
from fieldrelay_cli.supervise import supervise
from sandbox.server import serve


def cmd_receiver(args: argparse.Namespace) -> int:
    settings = with_redis(settings_or_exit())
    uvicorn.run(
        "fieldrelay_cli.asgi:app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=False,
        log_config=logging_config(settings),
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = with_redis(settings_or_exit())
    if not args.once:
        # The Celery worker runs as a child that fieldrelay.supervise starts again when it dies. `-P`
        # keeps the working directory off sys.path: an ops repository's own `rules/` folder must
        # not shadow the installed package.
        return supervise(
            [sys.executable, "-P", "-m", "fieldrelay_cli", "worker", "--once", *_worker_flags(args)], name="worker"
        )
    from workers.celery_app import app  # the app reads the settings, Redis URL included, when imported

    argv = [
        "worker",
        "--loglevel",
        args.loglevel,
        "-Q",
        args.queues or ",".join(ALL_QUEUES),
        "--concurrency",
        str(args.concurrency or settings.worker_concurrency),
    ]
    if args.name:
        argv += ["-n", args.name]
    # Not worker_main, which drops the worker's exit code. celery-types declares start() NoReturn,
    # but Celery 5 catches click's Exit and returns its code (None after a clean stop).
    start: Callable[[list[str]], int | None] = app.start
    return int(start(argv) or 0)


def _worker_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--loglevel", args.loglevel]
    for option in ("queues", "concurrency", "name"):
        if getattr(args, option):
            flags += [f"--{option}", str(getattr(args, option))]
    return flags


def cmd_beat(args: argparse.Namespace) -> int:
    settings = with_redis(settings_or_exit())
    setup_logging(settings)
    from workers.celery_app import app  # the app reads the settings, Redis URL included, when imported

    schedule = settings.data_dir / "celerybeat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    start: Callable[[list[str]], int | None] = app.start  # returns the exit code; see cmd_worker
    return int(start(["beat", "--loglevel", args.loglevel, "--schedule", str(schedule)]) or 0)


def cmd_sandbox(args: argparse.Namespace) -> int:
    zone = args.synchroteam_timezone
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            print(f"--synchroteam-timezone: not an IANA time zone name (e.g. Europe/Paris): {zone!r}", file=sys.stderr)
            return 2
    options = {"timezone": zone} if zone else None
    serve(host=args.host, synchroteam_options=options)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return run_stack(receiver_port=args.port)


def register(sub: Any) -> None:
    """Add the process commands to the `fieldrelay` command's subparsers."""
    p = sub.add_parser("receiver", help="serve ServiceTrade webhooks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="uvicorn processes")
    p.set_defaults(func=cmd_receiver)

    p = sub.add_parser("worker", help="run a Celery worker (events and every target queue)")
    p.add_argument("--queues", help="comma-separated queues (default: all)")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--name", help="Celery node name, e.g. synchroteam@%%h")
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--once", action="store_true", help="run the Celery worker in this process, unsupervised")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("beat", help="run the Celery beat scheduler (pollers)")
    p.add_argument("--loglevel", default="INFO")
    p.set_defaults(func=cmd_beat)

    p = sub.add_parser("sandbox", help="serve the three API simulators on their documented ports")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--synchroteam-timezone",
        default=os.environ.get("FIELDRELAY_SYNCHROTEAM_TIMEZONE"),
        help="IANA zone the Synchroteam sandbox writes local dates in (default: FIELDRELAY_SYNCHROTEAM_TIMEZONE, UTC)",
    )
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("run", help="everything on one laptop: embedded Redis, sandboxes, receiver, worker, beat")
    p.add_argument("--port", type=int, default=8000, help="receiver port")
    p.set_defaults(func=cmd_run)
