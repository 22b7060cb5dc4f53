"""`fieldrelay rules check|test`: the rule tooling ops run locally and in their own CI; no side effects."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fieldrelay.events import ChangeEvent
from rules import RuleLoadError, load_rules
from rules.dryrun import explain, run_cases
from workers.actions.registry import action_params


def check(directory: Path) -> int:
    """Print every error as `file:line:col: path: message`; exit 1 if there is any."""
    try:
        ruleset = load_rules(directory, action_params())
    except RuleLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        print(f"{len(exc.errors)} error(s); rules in {directory} not loaded", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"{directory}: {exc.strerror or 'not found'}", file=sys.stderr)
        return 1
    for warning in ruleset.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    files = len({r.file for r in ruleset.rules})
    print(f"{len(ruleset.rules)} rule(s) in {files} file(s) OK")
    return 0


def read_events(path: Path) -> list[ChangeEvent]:
    """A ServiceTrade webhook message (`messageId`, `data`) or one normalized event (or a list of them)."""
    from pydantic import ValidationError

    from receiver.webhooks import WebhookError, parse_message, to_events

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


def dry_run(rules_dir: Path, event_file: Path, entity_file: Path | None) -> int:
    try:
        ruleset = load_rules(rules_dir, action_params())
    except RuleLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    entity = None
    if entity_file is not None:
        try:
            entity = json.loads(entity_file.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{entity_file}: not JSON: {exc}") from None
        # Accept a raw API answer too: ServiceTrade wraps records in {"data": ...}.
        if isinstance(entity, dict) and set(entity) <= {"data", "messages"} and isinstance(entity.get("data"), dict):
            entity = entity["data"]
    else:
        print("(no --entity given: rules that read `entity` see nothing; no API is called)\n")
    for event in read_events(event_file):
        print(explain(ruleset, event, entity))
        print()
    return 0


def test_cases(cases_dir: Path, rules_dir: Path | None) -> int:
    report = run_cases(cases_dir, rules_directory=rules_dir, action_params=action_params())
    print(report)
    return 0 if report.passed else 1


def running_redis_url(settings_redis_url: str | None, data_dir: Path) -> str | None:
    """The configured Redis, or the embedded one a running `fieldrelay run` wrote down; never starts one."""
    if settings_redis_url:
        return settings_redis_url
    url_file = data_dir / "redis" / "url"
    return url_file.read_text().strip() if url_file.exists() else None


def format_trace(event_id: str, event: dict[str, Any] | None, steps: list[dict[str, Any]]) -> str:
    from datetime import UTC, datetime

    lines = []
    if event is not None:
        entity = event["entity"]
        lines.append(f"event {event_id}: {event['source']} {entity['type']} {entity['id']} {event['action']} "
                     f"via {event['via']} at {event['occurred_at']}" +
                     (f" (message {event['message_id']})" if event.get("message_id") else ""))
        if event.get("changes"):
            changes = ", ".join(f"{k}: {v['old']!r} -> {v['new']!r}" for k, v in event["changes"].items())
            lines.append(f"  changes: {changes}")
    else:
        lines.append(f"event {event_id}")
    for step in steps:
        at = datetime.fromtimestamp(step.pop("at"), UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        name = step.pop("step")
        detail = "  ".join(f"{k}={json.dumps(v, default=str)}" for k, v in step.items())
        lines.append(f"  {at}  {name:<17} {detail}")
    return "\n".join(lines)


def explain_event(redis_url: str | None, event_id: str) -> int:
    """Print the stored trace of a real event: received, rules matched or not and why, actions and results."""
    import redis

    from workers.state import PipelineState

    if not redis_url:
        print("no Redis: set FIELDRELAY_REDIS_URL (or start `fieldrelay run`)", file=sys.stderr)
        return 1
    state = PipelineState(redis.Redis.from_url(redis_url))
    steps = state.load_trace(event_id)
    if not steps:
        print(f"no trace for event {event_id} (unknown, or older than the retention)", file=sys.stderr)
        return 1
    print(format_trace(event_id, state.load_event(event_id), steps))
    return 0
