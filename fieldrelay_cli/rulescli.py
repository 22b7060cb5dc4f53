"""`fieldrelay rules check|test|explain`: the rule tooling ops run locally and in their own CI.

Only `rules test --against-sandbox` calls anything, and only the in-process sandboxes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from fieldrelay.entitystate import EntityVersion
from fieldrelay.events import ChangeEvent
from fieldrelay.limits import MEMORY_BYTES, ResourceLimitError, describe, resource_bounds
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay_cli.common import running_state, settings_or_exit
from fieldrelay_cli.devstack import SANDBOX_PASSWORD, SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER
from receiver.webhooks import WebhookError, parse_message, to_events
from rules import ActionCall, Rule, RuleLoadError, RuleSet, build_context, evaluate, load_rules, render_params
from rules.context import redact
from rules.dryrun import explain, run_cases
from rules.engine import allowed_env
from rules.helpers import use_synchroteam_zone
from sandbox.runner import SandboxRunner
from workers.actions.reference import render_reference
from workers.actions.registry import ACTIONS, ActionContext, Clients, MemoryLinkStore, action_params
from workers.clients import SettingsClients
from workers.execute import uri_note


def rules_env() -> list[str]:
    """FIELDRELAY_RULES_ENV: the environment variables `!secret` and `{{ env.NAME }}` may read."""
    return settings_or_exit().rules_env


def check(directory: Path) -> int:
    """Print every error as `file:line:col: path: message`; exit 1 if there is any."""
    try:
        ruleset = load_rules(directory, action_params(), env_names=rules_env())
    except RuleLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} error(s); rules in {directory} not loaded", file=sys.stderr)
        return 1
    except OSError as exc:  # missing, unreadable, a socket...: a sentence, not a traceback
        print(f"{directory}: {exc.strerror or 'cannot be read'}", file=sys.stderr)
        return 1
    for warning in ruleset.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    files = len({r.file for r in ruleset.rules})
    print(f"{len(ruleset.rules)} rule(s) in {files} file(s) OK")
    return 0


def read_events(path: Path) -> list[ChangeEvent]:
    """A ServiceTrade webhook message (`messageId`, `data`) or one normalized event (or a list of them)."""
    raw = path.read_bytes()
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not JSON: {exc}") from None
    try:
        if isinstance(data, dict) and "data" in data and "messageId" in data:
            return to_events(parse_message(raw))
        items = data if isinstance(data, list) else [data]
        return [ChangeEvent.model_validate(item) for item in items]
    except WebhookError as exc:
        raise SystemExit(f"{path}: not a ServiceTrade webhook message: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SystemExit(f"{path}: not a change event: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def read_record(path: Path) -> Any:
    """A record from a JSON file; a raw ServiceTrade answer (`{"data": {...}}`) is unwrapped."""
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{path}: not JSON: {exc}") from None
    if isinstance(record, dict) and set(record) <= {"data", "messages"} and isinstance(record.get("data"), dict):
        record = record["data"]
    if not isinstance(record, dict):
        raise SystemExit(f"{path}: not a record (a JSON object)")
    return record


def dry_run(
    rules_dir: Path,
    event_file: Path,
    entity_file: Path | None,
    *,
    against_sandbox: bool = False,
    previous_file: Path | None = None,
) -> int:
    """Explain each event's rules; `against_sandbox` also runs the matched actions on the sandboxes.

    `previous_file` is the version of the record fieldrelay saw before the event: fields missing from
    the event's changeset are compared between it and `entity_file`.
    """
    names = rules_env()
    try:
        ruleset = load_rules(rules_dir, action_params(), env_names=names)
    except RuleLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    entity = read_record(entity_file) if entity_file is not None else None
    previous = read_record(previous_file) if previous_file is not None else None
    if entity is None:
        print("(no --entity given: rules that read `entity` see nothing; no API is called)\n")
    env = allowed_env(names)
    events = read_events(event_file)
    if not against_sandbox:
        for event in events:
            print(explain(ruleset, event, entity, env=env, previous=previous))
            if note := uri_note(event):
                print(f"  (note: {note})")
            print()
        return 0
    with SandboxRunner() as sandboxes:
        clients = sandbox_clients(sandboxes.urls)
        try:
            for event in events:
                print(explain(ruleset, event, entity, env=env, previous=previous))
                print("\n".join(run_matched(ruleset, event, entity, clients, env=env, previous=previous)))
                print()
        finally:
            clients.close()
    return 0


def sandbox_clients(urls: Mapping[str, str]) -> SettingsClients:
    """API clients for the sandboxes at `urls`, with the sandboxes' own credentials."""
    return SettingsClients(
        Settings(
            servicetrade_base_url=urls["servicetrade"],
            servicetrade_username=SANDBOX_USER,
            servicetrade_password=SecretStr(SANDBOX_PASSWORD),
            synchroteam_base_url=urls["synchroteam"],
            synchroteam_domain=SANDBOX_USER,
            synchroteam_api_key=SecretStr(SANDBOX_SYNCHROTEAM_KEY),
            synergist_base_url=urls["synergist"],
            synergist_user=SANDBOX_USER,
            synergist_password=SecretStr(SANDBOX_PASSWORD),
            synergist_company="1",
        )
    )


def run_matched(
    ruleset: RuleSet,
    event: ChangeEvent,
    entity: Mapping[str, Any] | None,
    clients: Clients,
    *,
    env: Mapping[str, str],
    previous: Mapping[str, Any] | None = None,
) -> list[str]:
    """Run each matched rule's `then` in order, as a worker would, and report every action's result.

    Step results feed later steps (`steps.<id>`); when a step fails, the rule's `on_failure` runs.
    Secret values are replaced by `***` in what is reported.
    """
    record = dict(entity) if entity is not None else None
    links = MemoryLinkStore()  # one run: a create followed by an update of the same record links up
    lines = ["against the sandboxes:"]
    stored = EntityVersion(dict(previous)) if previous is not None else None
    for verdict in evaluate(ruleset, event, lambda: record, env=env, previous=stored):
        if not verdict.matched:
            continue
        rule = verdict.rule
        steps: dict[str, Any] = {}
        failure: dict[str, Any] | None = None
        for index, call in enumerate(rule.then):
            ok, result = _run_call(rule, index, call, event, record, steps, {}, clients, links, env)
            lines.append(_result_line(rule.name, f"then[{index}]", call, ok, result, env))
            if not ok:
                failure = {"index": index, "action": call.name, "error": result}
                break
            if call.id:
                steps[call.id] = result
        for offset, call in enumerate(rule.on_failure if failure else ()):
            index = len(rule.then) + offset
            ok, result = _run_call(rule, index, call, event, record, steps, {"failure": failure}, clients, links, env)
            lines.append(_result_line(rule.name, f"on_failure[{offset}]", call, ok, result, env))
    if len(lines) == 1:
        lines.append("  (no rule matched; nothing was called)")
    return lines


def _run_call(
    rule: Rule,
    index: int,
    call: ActionCall,
    event: ChangeEvent,
    record: dict[str, Any] | None,
    steps: dict[str, Any],
    extra: dict[str, Any],
    clients: Clients,
    links: MemoryLinkStore,
    env: Mapping[str, str],
) -> tuple[bool, Any]:
    """(True, result) or (False, why); never raises for a failed call."""
    spec = ACTIONS[call.name]
    context = build_context(event, record, steps, rule.vars, None, env)
    context.update(extra)
    try:
        params = spec.params.model_validate(render_params(call, context))
        key = f"{event.source}:{event.entity.type}:{event.entity.id}:{rule.name}:{call.id or index}"
        return True, spec.run(clients, params, ActionContext(event.id, rule.name, index, key, links))
    except ValidationError as exc:
        return False, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    except Exception as exc:  # the sandbox answered with an error, or a template failed: report it
        return False, f"{type(exc).__name__}: {exc}"


def _result_line(rule: str, where: str, call: ActionCall, ok: bool, result: Any, env: Mapping[str, str]) -> str:
    body = json.dumps(result, ensure_ascii=False, default=str) if ok else f"failed: {result}"
    return redact(f"  {rule} {where} {call.name}  {'ok' if ok else 'FAILED'}\n    {body}", {"env": env})


def test_cases(cases_dir: Path, rules_dir: Path | None) -> int:
    report = run_cases(cases_dir, rules_directory=rules_dir, action_params=action_params(), env_names=rules_env())
    print(report)
    return 0 if report.passed else 1


def format_trace(event_id: str, event: dict[str, Any] | None, steps: list[dict[str, Any]]) -> str:
    lines = []
    if event is not None:
        entity = event["entity"]
        lines.append(
            f"event {event_id}: {event['source']} {entity['type']} {entity['id']} {event['action']} "
            f"via {event['via']} at {event['occurred_at']}"
            + (f" (message {event['message_id']})" if event.get("message_id") else "")
        )
        if event.get("changes"):
            changes = ", ".join(f"{k}: {v['old']!r} -> {v['new']!r}" for k, v in event["changes"].items())
            lines.append(f"  changes: {changes}")
        for name, d in (event.get("derived") or {}).items():  # worked out against the version seen before
            old = "?" if d.get("old_from") == "no earlier version known" else repr(d.get("old"))
            lines.append(f"  compared: {name}: {old} ({d.get('old_from')}) -> {d.get('new')!r} ({d.get('new_from')})")
    else:
        lines.append(f"event {event_id}")
    for step in steps:
        at = datetime.fromtimestamp(step.pop("at"), UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        name = step.pop("step")
        detail = "  ".join(f"{k}={json.dumps(v, default=str)}" for k, v in step.items())
        lines.append(f"  {at}  {name:<17} {detail}")
    return "\n".join(lines)


def explain_event(state: PipelineState, event_id: str) -> int:
    """Print the stored trace of a real event: received, rules matched or not and why, actions and results."""
    steps = state.load_trace(event_id)
    if not steps:
        print(f"no trace for event {event_id} (unknown, or older than the retention)", file=sys.stderr)
        return 1
    print(format_trace(event_id, state.load_event(event_id), steps))
    return 0


def bounded(command: str, run: Callable[[], int], memory: int = MEMORY_BYTES) -> int:
    """Run a rules command under CPU and memory bounds: a bomb in a rule file ends it with a sentence."""
    try:
        with resource_bounds(memory=memory):
            return run()
    except (MemoryError, ResourceLimitError) as exc:
        print(f"rules {command}: {describe(exc)}", file=sys.stderr)
        return 1


def cmd_rules_check(args: argparse.Namespace) -> int:
    directory = Path(args.dir) if args.dir else settings_or_exit().rules_dir
    return bounded("check", lambda: check(directory))


def cmd_rules_test(args: argparse.Namespace) -> int:
    # The in-process sandboxes run server threads, each with its own arena: more address space.
    memory = 4 * MEMORY_BYTES if args.against_sandbox else 2 * MEMORY_BYTES
    return bounded("test", lambda: _rules_test(args), memory)


def _rules_test(args: argparse.Namespace) -> int:
    use_synchroteam_zone(settings_or_exit().synchroteam_timezone)  # Synchroteam dates as the worker renders them
    if args.cases:
        return test_cases(Path(args.cases), Path(args.rules) if args.rules else None)
    if not args.event:
        sys.exit("rules test: give --event FILE (dry run) or a directory of test cases")
    rules_dir = Path(args.rules) if args.rules else settings_or_exit().rules_dir
    return dry_run(
        rules_dir,
        Path(args.event),
        Path(args.entity) if args.entity else None,
        against_sandbox=args.against_sandbox,
        previous_file=Path(args.previous) if args.previous else None,
    )


def cmd_rules_explain(args: argparse.Namespace) -> int:
    return explain_event(running_state(settings_or_exit()), args.event_id)


def cmd_actions_reference(args: argparse.Namespace) -> int:
    print(render_reference())
    return 0


def register(sub: Any) -> None:
    """Add `rules` and `actions` to the `fieldrelay` command's subparsers."""
    rules = sub.add_parser("rules", help="check and dry-run rule files").add_subparsers(
        dest="rules_command", required=True
    )
    p = rules.add_parser("check", help="validate every rule file; errors as file:line:col: path: message")
    p.add_argument("dir", nargs="?", help="a rules directory (default FIELDRELAY_RULES_DIR) or one rule file")
    p.set_defaults(func=cmd_rules_check)
    p = rules.add_parser("test", help="dry run an event, or run a directory of YAML test cases")
    p.add_argument("cases", nargs="?", help="directory of test-case YAML files (rules default to its parent)")
    p.add_argument("--event", help="a ServiceTrade webhook message or a normalized event (JSON)")
    p.add_argument("--entity", help="the entity JSON the rules see as `entity` (no API call is made)")
    p.add_argument(
        "--previous",
        help="the record as fieldrelay saw it before the event (JSON): fields missing from the changeset are "
        "compared with it; without it, no earlier version is known",
    )
    p.add_argument("--rules", help="rules directory (default FIELDRELAY_RULES_DIR)")
    p.add_argument(
        "--against-sandbox",
        action="store_true",
        help="also run the matched rules' actions against in-process sandboxes and print each result",
    )
    p.set_defaults(func=cmd_rules_test)
    p = rules.add_parser("explain", help="the stored trace of a real event: what each rule did and why")
    p.add_argument("event_id")
    p.set_defaults(func=cmd_rules_explain)

    actions = sub.add_parser("actions", help="the actions rules can call").add_subparsers(
        dest="actions_command", required=True
    )
    p = actions.add_parser("reference", help="Markdown reference of every action and its parameters")
    p.set_defaults(func=cmd_actions_reference)
