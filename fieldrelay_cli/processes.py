"""`fieldrelay receiver|worker|beat|sandbox|run`: the long-running processes."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
import redis
import uvicorn

from fieldrelay.consumers import CONSUMER_ENV, Leases, lease_key, new_consumer_id, record_restart, restore_orphans
from fieldrelay.logs import logging_config, setup_logging
from fieldrelay.queues import ALL_QUEUES
from fieldrelay.settings import Settings
from fieldrelay.targets import session_overrun, target_limits
from fieldrelay_cli.common import settings_or_exit, with_redis
from fieldrelay_cli.devrun import RunOptions, run_stack
from fieldrelay_cli.ports import PortTakenError, check_ports
from fieldrelay_cli.supervise import Exit, supervise
from rules import RuleLoadError, load_rules
from sandbox.server import serve
from workers.actions.registry import action_params
from workers.polling.config import PollConfigError, load_pollers

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("fieldrelay_cli.worker")


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
    overrun = session_overrun(target_limits(settings), args.concurrency or settings.worker_concurrency)
    if overrun:
        sys.exit(f"invalid configuration: {overrun}")
    settings = with_redis(settings)
    pollers_or_exit(settings)
    rules_or_exit(settings)
    if not args.once:
        # The Celery worker runs as a child that fieldrelay.supervise starts again when it dies. `-P`
        # keeps the working directory off sys.path: an ops repository's own `rules/` folder must
        # not shadow the installed package. Each child is named as a consumer here, so that what it
        # held can be put back the moment it dies (fieldrelay/consumers.py).
        consumers: dict[int, str] = {}

        def child_env(generation: int) -> dict[str, str]:
            consumers[generation] = f"{new_consumer_id()}:{generation}"
            return {CONSUMER_ENV: consumers[generation]}

        return supervise(
            [sys.executable, "-P", "-m", "fieldrelay_cli", "worker", "--once", *_worker_flags(args)],
            name="worker",
            child_env=child_env,
            on_exit=lambda ended: _worker_exited(settings, consumers.pop(ended.generation), ended),
            got_going=lambda generation: _took_lease(settings, consumers[generation]),
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
    # fieldrelay uses neither remote control's gossip nor mingle's start-up sync: without them a
    # restarted worker consumes sooner and no worker adds their traffic to Redis.
    argv += ["--without-gossip", "--without-mingle"]
    return run_celery(app, argv)


def run_celery(app: Celery, argv: list[str]) -> int:
    """Celery's command line on `argv`, returning its exit code.

    Not `app.start()` or `worker_main`: in Celery 5.7 with click 8 both drop it. The worker ends with
    `ctx.exit(worker.exitcode)`, which click's `main(standalone_mode=False)` turns into a return value
    that `app.start()` does not return: an "Unrecoverable error" (exit code 1) came out as 0.
    """
    from celery.bin.celery import celery  # Celery's command line: loaded only by the commands that run it

    command: Any = celery
    command.params[0].default = app  # what app.start() does, so `-A` is not needed
    try:
        code = command.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    finally:
        command.params[0].default = None
    return int(code or 0)


def _took_lease(settings: Settings, consumer: str) -> bool:
    """Whether the Celery process got to consuming (its lease is taken before its first message): one killed
    after that is started again at once, one that never got that far is backed off, like a crash loop."""
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5, socket_connect_timeout=5)
    try:
        return bool(client.exists(lease_key(consumer)))
    finally:
        client.close()


def _worker_exited(settings: Settings, consumer: str, ended: Exit) -> None:
    """The Celery process and its pool are gone: put back at once what it held, and count the restart."""
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=5, socket_connect_timeout=5)
    try:
        Leases(client).release(consumer)
        restore_orphans(client, consumer=consumer, by="supervisor")
        if ended.restarting and not ended.asked:
            record_restart(client, ended.reason)
    except redis.RedisError as exc:  # its lease lapses by itself, and live workers put its messages back
        log.warning("could not put back what the worker held: %s", type(exc).__name__)
    finally:
        client.close()


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
    return run_celery(app, ["--quiet", "beat", "--loglevel", args.loglevel, "--schedule", str(schedule)])


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
