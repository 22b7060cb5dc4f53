"""The `fieldrelay` command: run the receiver, workers, beat and sandboxes, and check or test rules."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fieldrelay import cli_ops
from fieldrelay.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.exit(f"invalid configuration:\n{exc}")


def _with_redis(settings: Settings) -> Settings:
    """Resolve the Redis URL (starting the embedded server if none is set) and export it to children."""
    from fieldrelay.embedded_redis import ensure_redis

    url, server = ensure_redis(settings.data_dir, settings.redis_url)
    if server is not None:
        import atexit

        atexit.register(server.stop)
        print(f"embedded Redis at {url} (data in {server.data_dir})", file=sys.stderr)
    os.environ["FIELDRELAY_REDIS_URL"] = url
    return settings.model_copy(update={"redis_url": url})


def cmd_receiver(args: argparse.Namespace) -> int:
    import uvicorn

    from fieldrelay.logs import logging_config

    settings = _with_redis(_settings())
    uvicorn.run("receiver.asgi:app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="info", access_log=False, log_config=logging_config(settings))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _with_redis(_settings())
    from fieldrelay.queues import ALL_QUEUES

    argv = ["worker", "--loglevel", args.loglevel, "-Q", args.queues or ",".join(ALL_QUEUES),
            "--concurrency", str(args.concurrency or settings.worker_concurrency)]
    if args.name:
        argv += ["-n", args.name]
    if args.once:
        from workers.celery_app import app

        app.worker_main(argv)
        return 0
    from fieldrelay.supervise import supervise

    # The Celery worker runs as a child this process starts again if it dies (see fieldrelay.supervise).
    return supervise([sys.executable, "-m", "fieldrelay.cli", "worker", "--once", *_worker_flags(args)],
                     name="worker")


def _worker_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--loglevel", args.loglevel]
    for option in ("queues", "concurrency", "name"):
        if getattr(args, option):
            flags += [f"--{option}", str(getattr(args, option))]
    return flags


def cmd_beat(args: argparse.Namespace) -> int:
    settings = _with_redis(_settings())
    from fieldrelay.logs import setup_logging
    from workers.celery_app import app

    setup_logging(settings)
    schedule = settings.data_dir / "celerybeat-schedule"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", args.loglevel, "--schedule", str(schedule)])
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from sandbox.server import serve

    serve(host=args.host)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from fieldrelay.devstack import run_stack

    return run_stack(receiver_port=args.port)


def cmd_rules_check(args: argparse.Namespace) -> int:
    from fieldrelay.rulescli import check

    return check(Path(args.dir) if args.dir else _settings().rules_dir)


def cmd_rules_test(args: argparse.Namespace) -> int:
    from fieldrelay.rulescli import dry_run, test_cases

    if args.cases:
        return test_cases(Path(args.cases), Path(args.rules) if args.rules else None)
    if not args.event:
        sys.exit("rules test: give --event FILE (dry run) or a directory of test cases")
    rules_dir = Path(args.rules) if args.rules else _settings().rules_dir
    return dry_run(rules_dir, Path(args.event), Path(args.entity) if args.entity else None,
                   against_sandbox=args.against_sandbox)


def cmd_actions_reference(args: argparse.Namespace) -> int:
    from workers.actions.reference import render_reference

    print(render_reference())
    return 0


def cmd_rules_explain(args: argparse.Namespace) -> int:
    from fieldrelay.rulescli import explain_event, running_redis_url

    settings = _settings()
    return explain_event(running_redis_url(settings.redis_url, settings.data_dir), args.event_id)


def cmd_replay(args: argparse.Namespace) -> int:
    import redis

    from fieldrelay.rulescli import running_redis_url
    from rules import RuleLoadError, load_rules
    from workers.actions.registry import action_params
    from workers.operations import EventFilter, OperationError, parse_time
    from workers.replay import ReplayError, replay, select
    from workers.state import PipelineState

    settings = _settings()
    url = running_redis_url(settings.redis_url, settings.data_dir)
    if not url:
        sys.exit("no Redis: set FIELDRELAY_REDIS_URL (or start `fieldrelay run`)")
    state = PipelineState(redis.Redis.from_url(url))
    try:
        selection = None
        if args.entity or args.source or args.since or args.until:
            selection = EventFilter(source=args.source, entity=args.entity,
                                    since=parse_time(args.since), until=parse_time(args.until))
        ids = select(state, args.event_ids, selection, args.limit)
        rules = load_rules(settings.rules_dir, action_params()) if args.dry_run else None
    except (ReplayError, OperationError) as exc:
        sys.exit(str(exc))
    except RuleLoadError as exc:
        sys.exit("\n".join(str(e) for e in exc.errors))
    report = replay(state, ids, dry_run_rules=rules, force=args.force)
    for text in report.dry_runs:
        print(text + "\n")
    for event_id in report.missing:
        print(f"not stored (expired or unknown): {event_id}", file=sys.stderr)
    if not args.dry_run:
        print(f"{len(report.replayed)} event(s) enqueued for the current rules"
              + ("; their done actions will run again (--force)" if args.force else
                 "; actions already done for the same rule version are skipped"))
    return 1 if report.missing and not (report.replayed or report.dry_runs) else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldrelay", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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

    rules = sub.add_parser("rules", help="check and dry-run rule files").add_subparsers(
        dest="rules_command", required=True
    )
    p = rules.add_parser("check", help="validate every rule file; errors as file:line:col: path: message")
    p.add_argument("dir", nargs="?")
    p.set_defaults(func=cmd_rules_check)
    p = rules.add_parser("test", help="dry run an event, or run a directory of YAML test cases")
    p.add_argument("cases", nargs="?", help="directory of test-case YAML files (rules default to its parent)")
    p.add_argument("--event", help="a ServiceTrade webhook message or a normalized event (JSON)")
    p.add_argument("--entity", help="the entity JSON the rules see as `entity` (no API call is made)")
    p.add_argument("--rules", help="rules directory (default FIELDRELAY_RULES_DIR)")
    p.add_argument("--against-sandbox", action="store_true",
                   help="also run the matched rules' actions against in-process sandboxes and print each result")
    p.set_defaults(func=cmd_rules_test)
    p = rules.add_parser("explain", help="the stored trace of a real event: what each rule did and why")
    p.add_argument("event_id")
    p.set_defaults(func=cmd_rules_explain)
    p = sub.add_parser("replay", help="re-run stored events through the current rules")
    p.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    p.add_argument("--entity", help="TYPE:ID, TYPE or ID")
    p.add_argument("--source", choices=["servicetrade", "synchroteam", "synergist"])
    p.add_argument("--since", help="15m, 2h, 7d, an ISO time or Unix seconds")
    p.add_argument("--until")
    p.add_argument("--limit", type=int, default=1000, help="at most this many selected events")
    p.add_argument("--dry-run", action="store_true", help="print what the current rules would do; change nothing")
    p.add_argument("--force", action="store_true", help="run actions again even if done for this rule version")
    p.set_defaults(func=cmd_replay)

    actions = sub.add_parser("actions", help="the actions rules can call").add_subparsers(
        dest="actions_command", required=True
    )
    p = actions.add_parser("reference", help="Markdown reference of every action and its parameters")
    p.set_defaults(func=cmd_actions_reference)
    cli_ops.register(sub)  # dlq, target, webhooks
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
