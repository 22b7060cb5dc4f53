"""`fieldrelay receiver|worker|beat|sandbox|run`: the long-running processes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn

from fieldrelay.logs import logging_config, setup_logging
from fieldrelay.queues import ALL_QUEUES
from fieldrelay.settings import Settings
from fieldrelay_cli.common import settings_or_exit, with_redis
from fieldrelay_cli.devstack import run_stack
from fieldrelay_cli.supervise import supervise
from rules import RuleLoadError, load_rules
from sandbox.server import serve
from workers.actions.registry import action_params
from workers.polling.config import PollConfigError, load_pollers


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


def pollers_or_exit(settings: Settings) -> None:
    """The poller settings (FIELDRELAY_POLL_SOURCES, FIELDRELAY_POLL_CONFIG) are checked before anything starts."""
    try:
        load_pollers(settings)
    except PollConfigError as exc:
        sys.exit(f"invalid configuration:\n{exc}")


def rules_or_exit(settings: Settings) -> None:
    """A worker does not start on a rule set that does not load: it would have nothing good to keep."""
    try:
        load_rules(settings.rules_dir, action_params(), env_names=settings.rules_env)
    except RuleLoadError as exc:
        sys.exit(f"rules in {settings.rules_dir} do not load:\n" + "\n".join(str(e) for e in exc.errors))
    except OSError as exc:
        sys.exit(f"rules in {settings.rules_dir} cannot be read: {exc}")


def cmd_worker(args: argparse.Namespace) -> int:
    settings = with_redis(settings_or_exit())
    pollers_or_exit(settings)
    rules_or_exit(settings)
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
    code = app.start(argv)  # not worker_main, which drops the worker's exit code
    return int(code or 0)


def _worker_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--loglevel", args.loglevel]
    for option in ("queues", "concurrency", "name"):
        if getattr(args, option):
            flags += [f"--{option}", str(getattr(args, option))]
    return flags


def cmd_beat(args: argparse.Namespace) -> int:
    settings = with_redis(settings_or_exit())
    pollers_or_exit(settings)
    setup_logging(settings)
    from workers.celery_app import app  # the app reads the settings, Redis URL included, when imported

    schedule = settings.data_dir / "celerybeat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    code = app.start(["beat", "--loglevel", args.loglevel, "--schedule", str(schedule)])
    return int(code or 0)


def cmd_sandbox(args: argparse.Namespace) -> int:
    serve(host=args.host)
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
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("run", help="everything on one laptop: embedded Redis, sandboxes, receiver, worker, beat")
    p.add_argument("--port", type=int, default=8000, help="receiver port")
    p.set_defaults(func=cmd_run)
