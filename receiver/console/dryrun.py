"""The console's dry-run form, run in a child process with CPU, memory and time bounds.

A pasted event or a rule can be made to take gigabytes or minutes (docs/security.md); the receiver
answers webhooks in the same process, so the dry run runs elsewhere. The child gets the rules the
console shows (the last good set, as `Rule.to_json()`), the pasted texts on stdin, and writes the
report to stdout. `python -m receiver.console.dryrun` is the child.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import orjson
from pydantic import ValidationError

from fieldrelay.events import ChangeEvent
from fieldrelay.limits import ResourceLimitError, describe, resource_bounds
from receiver.webhooks import WebhookError, parse_message, to_events
from rules import RuleSet, rule_from_json
from rules.dryrun import explain
from rules.helpers import use_synchroteam_zone

TIMEOUT = 20.0
MEMORY = 512 * 1024 * 1024  # on top of what the child needs to start
CPU = 10


def run_bounded(ruleset: RuleSet, event_text: str, entity_text: str, synchroteam_zone: str = "UTC") -> str:
    """The dry-run report from a bounded child process, or a sentence saying why there is none.

    `synchroteam_zone` is FIELDRELAY_SYNCHROTEAM_TIMEZONE: the Synchroteam date helpers render in it, as
    in the worker, so the dry run shows the times the worker would send.
    """
    payload = orjson.dumps(
        {
            "rules": [rule.to_json() for rule in ruleset.rules],
            "digest": ruleset.digest,
            "event": event_text,
            "entity": entity_text,
            "synchroteam_zone": synchroteam_zone,
        }
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "receiver.console.dryrun"],
            input=payload,
            capture_output=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"the dry run was stopped after {TIMEOUT:g} s: a rule or the event takes too long to evaluate"
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"the dry run failed: {lines[-1] if lines else f'exit code {proc.returncode}'}"
    return proc.stdout.decode("utf-8", "replace")


def report(ruleset: RuleSet, event_text: str, entity_text: str) -> str:
    """`rules.dryrun.explain` for a webhook message or a normalized event (JSON), as text."""
    try:
        data = json.loads(event_text)
    except ValueError as exc:
        return f"event: not JSON: {exc}"
    except RecursionError:
        return "event: nested too deeply"
    entity: Any = None
    if entity_text.strip():
        try:
            entity = json.loads(entity_text)
        except ValueError as exc:
            return f"entity: not JSON: {exc}"
        except RecursionError:
            return "entity: nested too deeply"
        wrapped = isinstance(entity, dict) and set(entity) <= {"data", "messages"}
        if wrapped and isinstance(entity.get("data"), dict):
            entity = entity["data"]  # a raw API answer: ServiceTrade wraps records in {"data": ...}
        if not isinstance(entity, dict):
            return "entity: a JSON object is expected"
    try:
        if isinstance(data, dict) and "messageId" in data and "data" in data:
            events = to_events(parse_message(event_text.encode()))
        else:
            events = [ChangeEvent.model_validate(item) for item in (data if isinstance(data, list) else [data])]
    except WebhookError as exc:
        return f"event: not a ServiceTrade webhook message: {exc}"
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"event: not a change event: {'.'.join(map(str, first['loc']))}: {first['msg']}"
    head = "" if entity is not None else "(no entity given: rules that read `entity` see nothing)\n\n"
    return head + "\n\n".join(explain(ruleset, event, entity) for event in events)


def main() -> int:
    request = orjson.loads(sys.stdin.buffer.read())
    use_synchroteam_zone(request.get("synchroteam_zone", "UTC"))
    with resource_bounds(memory=MEMORY, cpu=CPU):
        try:
            ruleset = RuleSet([rule_from_json(r) for r in request["rules"]], [], request["digest"])
            text = report(ruleset, request["event"], request["entity"])
        except (MemoryError, ResourceLimitError) as exc:
            text = f"the dry run was {describe(exc, CPU)}"
        except RecursionError:
            text = "the dry run was stopped: the event is nested too deeply"
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
