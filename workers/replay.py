"""Replay stored events through the current rules: to recover after a fix, or to see what rules would do now."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fieldrelay.celery_messages import task_message
from fieldrelay.events import ChangeEvent
from fieldrelay.queries import EventFilter, list_events
from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from rules import RuleSet
from rules.dryrun import explain


class ReplayError(Exception):
    """Nothing to replay, or a selection that names no stored event; the message says which."""


@dataclass
class ReplayReport:
    replayed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dry_runs: list[str] = field(default_factory=list)


def select(state: PipelineState, ids: Sequence[str], selection: EventFilter | None, limit: int) -> list[str]:
    """Event ids to replay, oldest first: the ids given, plus those the selection finds in the event index."""
    chosen = list(ids)
    if selection is not None:
        found = list_events(state, selection, limit=limit)
        chosen += [e["id"] for e in sorted(found, key=lambda e: e["at"]) if e["id"] not in chosen]
    if not chosen:
        raise ReplayError("no events selected: give event ids, or --entity/--source/--since/--until")
    return chosen


def forget_ledger(state: PipelineState, event_id: str) -> int:
    """Forget which of the event's actions were done, so a replay runs them again (`--force`)."""
    return state.forget_results(event_id)


def replay(
    state: PipelineState,
    event_ids: Iterable[str],
    *,
    dry_run_rules: RuleSet | None = None,
    force: bool = False,
) -> ReplayReport:
    """Re-run stored events through the current rules.

    With `dry_run_rules`, print what those rules would do (no side effects, no entity fetch).
    Otherwise enqueue each event again, past the duplicate and stale checks. Actions the
    ledger records as done for the same rule version are not repeated unless `force`.
    """
    report = ReplayReport()
    for event_id in event_ids:
        raw = state.load_event(event_id)
        if raw is None:
            report.missing.append(event_id)
            continue
        event = ChangeEvent.model_validate(raw)
        if dry_run_rules is not None:
            report.dry_runs.append(explain(dry_run_rules, event, None))
            continue
        if force:
            forget_ledger(state, event_id)
        message = task_message(PROCESS_EVENT_TASK, [raw, True], EVENTS_QUEUE, argsrepr=f"replay {event_id}")
        state.r.lpush(EVENTS_QUEUE, message)
        state.trace(event_id, Step.REPLAY_REQUESTED, force=force)
        report.replayed.append(event_id)
    return report


def summary(report: ReplayReport) -> dict[str, Any]:
    return {"replayed": len(report.replayed), "missing": report.missing}
