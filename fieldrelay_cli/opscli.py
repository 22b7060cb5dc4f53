"""`fieldrelay dlq|target|webhooks|replay`: the operations commands (fieldrelay.queries and
fieldrelay.operations do the work; the console offers the same)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from fieldrelay import operations, queries
from fieldrelay.queries import EventFilter, OperationError, Selection, parse_time
from fieldrelay.queues import ACTION_QUEUES
from fieldrelay.state import PipelineState
from fieldrelay_cli.common import pipeline_state, running_state, settings_or_exit
from receiver import rejected
from rules import RuleLoadError, load_rules
from workers.actions.registry import action_params
from workers.connectors.errors import ConnectorError
from workers.connectors.servicetrade import ServiceTradeClient
from workers.replay import ReplayError, replay, select
from workers.webhooks import register_webhook, set_webhook_enabled


def _state() -> PipelineState:
    return pipeline_state(settings_or_exit())


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at)) if at else "-"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        rule=args.rule,
        target=args.target,
        entity=args.entity,
        since=parse_time(args.since),
        until=parse_time(args.until),
    )


def _selected(state: PipelineState, args: argparse.Namespace) -> list[str]:
    """The ids given, or with --all every dead letter the selection matches."""
    if args.ids and args.all:
        sys.exit("give dead-letter ids or --all with a selection, not both")
    if args.ids:
        return list(args.ids)
    if not args.all:
        sys.exit("give dead-letter ids, or --all (with --rule/--target/--entity/--since/--until to narrow it)")
    return [e["id"] for e in queries.list_dead_letters(state, _selection(args))]


def cmd_dlq_list(args: argparse.Namespace) -> int:
    entries = queries.list_dead_letters(_state(), _selection(args))
    if args.json:
        _print_json(entries)
        return 0
    for e in entries:
        print(
            f"{e['id']}  {_when(e.get('at'))}  {e.get('target')}  {e.get('rule')}  "
            f"{e.get('action')}  {e.get('entity_type')}:{e.get('entity_id')}  attempts={e.get('attempts')}"
        )
        print(f"    {e.get('error')}")
    print(f"{len(entries)} dead letter(s)", file=sys.stderr)
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    try:
        _print_json(queries.show_dead_letter(_state(), args.id))
    except OperationError as exc:
        sys.exit(str(exc))
    return 0


def _each(args: argparse.Namespace, verb: str) -> int:
    state = _state()
    action = operations.retry_dead_letter if verb == "retry" else operations.drop_dead_letter
    failures = 0
    for dlq_id in _selected(state, args):
        try:
            entry = action(state, dlq_id)
        except OperationError as exc:
            print(f"{dlq_id}: {exc}", file=sys.stderr)
            failures += 1
            continue
        done = "re-enqueued on " + operations.retry_queue(entry) if verb == "retry" else "dropped"
        print(f"{dlq_id}: {done} ({entry.get('rule')} step {entry.get('index')} {entry.get('action')})")
    return 1 if failures else 0


def cmd_dlq_retry(args: argparse.Namespace) -> int:
    return _each(args, "retry")


def cmd_dlq_drop(args: argparse.Namespace) -> int:
    return _each(args, "drop")


def _status_line(s: dict[str, Any]) -> str:
    def num(value: float | None) -> str:
        return "?" if value is None else f"{value:g}"

    rate = s["rate"]
    line = f"{s['target']:<13} {'PAUSED' if s['paused'] else 'running':<8} queued={s['queued']}"
    if not rate:
        return line + "  rate: not reported yet"
    return (
        f"{line}  rate left={num(rate.get('remaining'))}/{num(rate.get('limit'))}  "
        f"quota left={num(rate.get('quota_remaining'))}  (seen {_when(rate.get('seen_at'))})"
    )


def cmd_target(args: argparse.Namespace) -> int:
    state = _state()
    try:
        if args.target_command == "pause":
            operations.pause_target(state, args.name, args.reason or "")
            print(f"{args.name}: paused (its actions wait in {ACTION_QUEUES[args.name]})")
        elif args.target_command == "resume":
            was = operations.resume_target(state, args.name)
            print(f"{args.name}: resumed" if was else f"{args.name}: was not paused")
        else:
            names = [args.name] if args.name else list(queries.TARGETS)
            statuses = [queries.target_status(state, n) for n in names]
            if args.json:
                _print_json(statuses)
            else:
                for status in statuses:
                    print(_status_line(status))
    except OperationError as exc:
        sys.exit(str(exc))
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    s = settings_or_exit()
    client = ServiceTradeClient(
        s.servicetrade_base_url, s.servicetrade_username, s.servicetrade_password, timeout=s.http_timeout
    )
    try:
        if args.webhooks_command == "register":
            hook, created = register_webhook(client, args.url)
            print(
                f"{'registered' if created else 'already registered'}: webhook {hook['id']} -> {hook['hookUrl']} "
                f"(enabled={hook.get('enabled')}, includeChangesets={hook.get('includeChangesets')})"
            )
        elif args.webhooks_command == "list":
            for hook in client.list_webhooks():
                print(
                    f"{hook['id']}  {'enabled ' if hook.get('enabled') else 'disabled'}  "
                    f"changesets={'on' if hook.get('includeChangesets') else 'off'}  {hook.get('hookUrl')}"
                )
        else:
            hook = set_webhook_enabled(client, args.hook, args.webhooks_command == "enable")
            print(f"webhook {hook['id']} {'enabled' if hook.get('enabled') else 'disabled'}: {hook.get('hookUrl')}")
    except (OperationError, ConnectorError) as exc:
        sys.exit(f"webhooks {args.webhooks_command}: {exc}")
    finally:
        client.close()
    return 0


def cmd_webhooks_rejected_replay(args: argparse.Namespace) -> int:
    """`webhooks rejected replay ID`: validate a kept body again and enqueue its events."""
    settings = settings_or_exit()
    state = running_state(settings)
    try:
        count = rejected.replay_rejected(state.r, args.id, max_skew=settings.clock_skew)
    except rejected.RejectedError as exc:
        sys.exit(str(exc))
    print(f"rejected webhook {args.id}: {count} event(s) enqueued")
    return 0


def cmd_webhooks_rejected(args: argparse.Namespace) -> int:
    """`webhooks rejected [--json]`: the kept 400s, newest first."""
    state = running_state(settings_or_exit())
    entries = [state.redactor.scrub(e) for e in rejected.list_rejected(state.r)]
    if args.json:
        _print_json(entries)
        return 0
    for e in entries:
        print(f"{e['id']}  {_when(e.get('at'))}  messageId={e.get('message_id') or '-'}  {e.get('bytes')} bytes")
        print(f"    {e.get('reason')}")
    print(f"{len(entries)} rejected webhook(s) kept", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    settings = settings_or_exit()
    state = running_state(settings)
    try:
        selection = None
        if args.entity or args.source or args.since or args.until:
            selection = EventFilter(
                source=args.source, entity=args.entity, since=parse_time(args.since), until=parse_time(args.until)
            )
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
        print(
            f"{len(report.replayed)} event(s) enqueued for the current rules"
            + (
                "; their done actions will run again (--force)"
                if args.force
                else "; actions already done for the same rule version are skipped"
            )
        )
    return 1 if report.missing and not (report.replayed or report.dry_runs) else 0


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rule", help="rule name")
    p.add_argument("--target", help="synchroteam | synergist | servicetrade | http")
    p.add_argument("--entity", help="TYPE:ID, TYPE or ID of the source entity")
    p.add_argument("--since", help="15m, 2h, 7d ago, an ISO time, or Unix seconds")
    p.add_argument("--until", help="same forms as --since")


def register(sub: Any) -> None:
    """Add `replay`, `dlq`, `target` and `webhooks` to the `fieldrelay` command's subparsers."""
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

    dlq = sub.add_parser("dlq", help="dead letters: list, show, retry, drop").add_subparsers(
        dest="dlq_command", required=True
    )
    p = dlq.add_parser("list", help="dead letters, newest first")
    _selection_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dlq_list)
    p = dlq.add_parser("show", help="one dead letter with its event and trace (JSON)")
    p.add_argument("id")
    p.set_defaults(func=cmd_dlq_show)
    for verb, func, text in (
        ("retry", cmd_dlq_retry, "run the failed step again on its target queue"),
        ("drop", cmd_dlq_drop, "discard dead letters"),
    ):
        p = dlq.add_parser(verb, help=text)
        p.add_argument("ids", nargs="*", metavar="ID")
        p.add_argument("--all", action="store_true", help="every dead letter the selection matches")
        _selection_args(p)
        p.set_defaults(func=func)

    target = sub.add_parser("target", help="pause, resume or show a target").add_subparsers(
        dest="target_command", required=True
    )
    p = target.add_parser("pause", help="hold the target's actions in its queue until resumed")
    p.add_argument("name")
    p.add_argument("--reason")
    p.set_defaults(func=cmd_target)
    p = target.add_parser("resume", help="let the target's actions run again")
    p.add_argument("name")
    p.set_defaults(func=cmd_target)
    p = target.add_parser("status", help="paused or not, queue, rate budget and quota last seen")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_target)

    hooks = sub.add_parser("webhooks", help="the ServiceTrade webhook that feeds the receiver").add_subparsers(
        dest="webhooks_command", required=True
    )
    p = hooks.add_parser("register", help="create it (changesets on), or reuse the one with this URL")
    p.add_argument("--url", required=True, help="https://<receiver>/webhooks/servicetrade/<token>")
    p.set_defaults(func=cmd_webhooks)
    p = hooks.add_parser("list", help="every webhook registered in ServiceTrade")
    p.set_defaults(func=cmd_webhooks)
    for verb in ("enable", "disable"):
        p = hooks.add_parser(verb, help=f"{verb} a webhook by URL or id")
        p.add_argument("hook", metavar="URL_OR_ID")
        p.set_defaults(func=cmd_webhooks)
    p = hooks.add_parser(
        "rejected", help="webhooks answered 400 and kept: list them, or `replay ID` one once it is fixed"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_webhooks_rejected)
    replay = p.add_subparsers(dest="rejected_command", required=False).add_parser(
        "replay", help="validate a kept body again and enqueue its events"
    )
    replay.add_argument("id", metavar="ID")
    replay.set_defaults(func=cmd_webhooks_rejected_replay)
