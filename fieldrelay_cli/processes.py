"""`fieldrelay receiver|worker|beat|sandbox|run`: the long-running processes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import uvicorn

from fieldrelay.logs import logging_config, setup_logging
from fieldrelay.queues import ALL_QUEUES
from fieldrelay.settings import Settings
from fieldrelay_cli.common import settings_or_exit, with_redis
from fieldrelay_cli.devrun import RunOptions, run_stack
from fieldrelay_cli.ports import PortTakenError, check_ports
from fieldrelay_cli.supervise import supervise
from rules import RuleLoadError, load_rules
from sandbox.server import serve
from workers.actions.registry import action_params
from workers.polling.config import PollConfigError, load_pollers


def cmd_receiver(args: argparse.Namespace) -> int:
    settings = settings_or_exit()
    setup_logging(settings)
    port = args.port or settings.receiver_port
    try:
        check_ports(args.host, {"receiver": (port, "--port or FIELDRELAY_RECEIVER_PORT")})
    except PortTakenError as exc:
        sys.exit(f"fieldrelay receiver: {exc}")
    settings = with_redis(settings)
    uvicorn.run(
        "fieldrelay_cli.asgi:app",
        factory=True,
        host=args.host,
        port=port,
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
    settings = settings_or_exit()
    setup_logging(settings)
    settings = with_redis(settings)
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
        "--quiet",  # no banner on stdout: workers/signals.py logs what it says as one line
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
    settings = settings_or_exit()
    pollers_or_exit(settings)
    setup_logging(settings)
    settings = with_redis(settings)
    from workers.celery_app import app  # the app reads the settings, Redis URL included, when imported

    schedule = settings.data_dir / "celerybeat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    start: Callable[[list[str]], int | None] = app.start  # returns the exit code; see cmd_worker
    return int(start(["--quiet", "beat", "--loglevel", args.loglevel, "--schedule", str(schedule)]) or 0)


def cmd_sandbox(args: argparse.Namespace) -> int:
    settings = settings_or_exit()
    setup_logging(settings)
    zone = args.synchroteam_timezone or settings.synchroteam_timezone
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"--synchroteam-timezone: not an IANA time zone name (e.g. Europe/Paris): {zone!r}", file=sys.stderr)
        return 2
    ports = {
        "servicetrade": args.servicetrade_port or settings.sandbox_servicetrade_port,
        "synchroteam": args.synchroteam_port or settings.sandbox_synchroteam_port,
        "synergist": args.synergist_port or settings.sandbox_synergist_port,
    }
    try:
        check_ports(
            args.host,
            {
                f"{name} sandbox": (port, f"--{name}-port or FIELDRELAY_SANDBOX_{name.upper()}_PORT")
                for name, port in ports.items()
            },
        )
    except PortTakenError as exc:
        sys.exit(f"fieldrelay sandbox: {exc}")
    serve(
        host=args.host,
        servicetrade_port=ports["servicetrade"],
        synchroteam_port=ports["synchroteam"],
        synergist_port=ports["synergist"],
        synchroteam_options={"timezone": zone},
        log_config=None,
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    options = RunOptions(
        keep=args.keep,
        host=args.host,
        receiver_port=args.port,
        servicetrade_port=args.servicetrade_port,
        synchroteam_port=args.synchroteam_port,
        synergist_port=args.synergist_port,
    )
    return run_stack(settings_or_exit(dev_mode=True), options)  # the dev stack: its demo tokens are short


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (1-65535): {text!r}")
    return int(text)


def _sandbox_port_options(p: argparse.ArgumentParser) -> None:
    for name, setting in (("servicetrade", 8781), ("synchroteam", 8782), ("synergist", 8783)):
        p.add_argument(
            f"--{name}-port",
            type=_port,
            help=f"{name} sandbox port (default: FIELDRELAY_SANDBOX_{name.upper()}_PORT, else {setting})",
        )


def register(sub: Any) -> None:
    """Add the process commands to the `fieldrelay` command's subparsers."""
    p = sub.add_parser("receiver", help="serve ServiceTrade webhooks")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, help="default: FIELDRELAY_RECEIVER_PORT, else 8000")
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

    p = sub.add_parser("sandbox", help="serve the three API simulators (ports 8781-8783 unless told)")
    p.add_argument("--host", default="127.0.0.1")
    _sandbox_port_options(p)
    p.add_argument(
        "--synchroteam-timezone",
        help="IANA zone the Synchroteam sandbox writes local dates in (default: FIELDRELAY_SYNCHROTEAM_TIMEZONE, UTC)",
    )
    p.set_defaults(func=cmd_sandbox)

    p = sub.add_parser("run", help="everything on one laptop: embedded Redis, sandboxes, receiver, worker, beat")
    p.add_argument("--host", default="127.0.0.1", help="where every part listens")
    p.add_argument("--port", type=_port, help="receiver port (default: FIELDRELAY_RECEIVER_PORT, else 8000)")
    _sandbox_port_options(p)
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the last run's Redis data (events, traces, dead letters) instead of starting clean",
    )
    p.set_defaults(func=cmd_run)
