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
