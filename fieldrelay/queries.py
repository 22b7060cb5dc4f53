"""Read-only queries over the pipeline's state, for the people operating it: recent events and their
traces, dead letters, and each target's status. The console and the command line read through here.

    OperationError          a request that cannot be done (unknown id or target, a time that is not one)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fieldrelay.consumers import held_messages
from fieldrelay.metrics import SPECS, metric_key
from fieldrelay.queues import ACTION_QUEUES, ALL_QUEUES
from fieldrelay.state import PipelineState

TARGETS = tuple(ACTION_QUEUES)
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z


class OperationError(Exception):
    """The operation cannot be done; the message says why, for a person."""


def parse_time(text: str | None, now: float | None = None) -> float | None:
    """`15m`, `2h`, `7d` ago; an ISO date or datetime (UTC unless it says); or Unix seconds."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    problem = OperationError(f"not a time: {text[:60]!r} (use 15m, 2h, 7d, an ISO date or Unix seconds)")
    seconds: float
    if text[:-1].isdigit() and text[-1] in units and len(text) <= 12:
        seconds = (now if now is not None else time.time()) - int(text[:-1]) * units[text[-1]]
    else:
        try:
            seconds = float(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                seconds = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
            except (ValueError, OverflowError):
                raise problem from None
    # Times past the year 9999 either way are typing mistakes, not selections.
    if not math.isfinite(seconds) or not -LAST_SECOND <= seconds <= LAST_SECOND:
        raise problem
    return seconds


@dataclass(frozen=True)
class Selection:
    """Which dead letters: every given criterion must hold. `entity` is `type:id`, `type` or `id`."""

    rule: str | None = None
    target: str | None = None
    entity: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        at = float(entry.get("at") or 0)
        return (
            (self.rule is None or entry.get("rule") == self.rule)
            and (self.target is None or entry.get("target") == self.target)
            and (self.entity is None or entity_matches(self.entity, entry.get("entity_type"), entry.get("entity_id")))
            and (self.since is None or at >= self.since)
            and (self.until is None or at <= self.until)
        )


def entity_matches(wanted: str, entity_type: Any, entity_id: Any) -> bool:
    kind, _, ident = wanted.partition(":")
    if ident:
        return kind == str(entity_type) and ident == str(entity_id)
    return wanted in (str(entity_type), str(entity_id))


def _with_entity(state: PipelineState, entry: dict[str, Any]) -> dict[str, Any]:
    event = state.load_event(entry["event_id"]) or {}
    entity = event.get("entity") or {}
    return {**entry, "entity_type": entity.get("type"), "entity_id": entity.get("id"), "source": event.get("source")}


def list_dead_letters(state: PipelineState, selection: Selection | None = None) -> list[dict[str, Any]]:
    """Dead letters, newest first, each with the entity it came from (`entity_type`, `entity_id`)."""
    selection = selection or Selection()
    entries = [_with_entity(state, e) for e in reversed(state.dead_letters())]
    return [e for e in entries if selection.matches(e)]


def show_dead_letter(state: PipelineState, dlq_id: str) -> dict[str, Any]:
    """One dead letter with its event and the event's whole trace."""
    entry = state.dead_letter_entry(dlq_id)
    if entry is None:
        raise OperationError(f"no dead letter {dlq_id!r}")
    return {
        **_with_entity(state, entry),
        "event": state.load_event(entry["event_id"]),
        "trace": state.load_trace(entry["event_id"]),
    }


def check_target(target: str) -> str:
    if target not in ACTION_QUEUES:
        raise OperationError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    return target


def target_status(state: PipelineState, target: str) -> dict[str, Any]:
    """Paused or not, the rate budget and quota last reported, and any block the rate gate holds."""
    check_target(target)
    rate = state.target_rate(target)
    now = time.time()
    blocks = {}
    for key in state.r.scan_iter(match=f"fieldrelay:gate:{target}:*", count=100):
        name = key.decode() if isinstance(key, bytes) else key
        kind = name.rsplit(":", 1)[-1]
        if kind in ("blocked", "quota"):
            raw = state.r.get(name)
            if raw is not None and int(raw) / 1000 > now:
                blocks[kind] = int(raw) / 1000  # epoch seconds the block lasts until
    return {
        "target": target,
        "queue": ACTION_QUEUES[target],
        "queued": int(state.r.llen(ACTION_QUEUES[target])),
        "paused": state.target_paused(target),
        "pause": state.pause_info(target),
        "rate": rate,
        "blocked_until": blocks.get("blocked"),
        "quota_paused_until": blocks.get("quota"),
    }


def target_statuses(state: PipelineState) -> list[dict[str, Any]]:
    return [target_status(state, t) for t in TARGETS]


@dataclass(frozen=True)
class EventFilter:
    source: str | None = None
    entity: str | None = None
    rule: str | None = None
    outcome: str | None = None  # failed | succeeded | matched | no match | stale | own write | processing
    since: float | None = None
    until: float | None = None


def event_outcome(summary: dict[str, str]) -> str:
    """Failed while any action's latest outcome is a failure (a retry that succeeds clears it), or
    while the event itself could not be evaluated. "no match" only once the rules ran to a verdict:
    an event received but not (yet) evaluated is "processing", never "no match"."""
    latest = [v for k, v in summary.items() if k.startswith("s:")]
    if "failed" in latest or summary.get("event_failed"):
        return "failed"
    if "succeeded" in latest:
        return "succeeded"
    if any(k.startswith("rule:") for k in summary):
        return "matched"
    if summary.get("own_write"):
        return "own write"
    if summary.get("stale"):
        return "stale"
    return "no match" if summary.get("evaluated") else "processing"


def _summary(event_id: str, raw: dict[Any, Any]) -> dict[str, Any]:
    fields = {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }
    rules = sorted(k.removeprefix("rule:") for k in fields if k.startswith("rule:"))
    return {
        "id": event_id,
        "at": float(fields.get("at", 0)),
        "source": fields.get("source", ""),
        "via": fields.get("via", ""),
        "entity_type": fields.get("entity", ""),
        "entity_id": fields.get("entity_id", ""),
        "action": fields.get("action", ""),
        "rules": rules,
        "outcome": event_outcome(fields),
        "duplicates": int(fields.get("duplicates", 0)),
        # Steps by their latest outcome (a dead letter retried with success counts as succeeded).
        "succeeded": sum(1 for k, v in fields.items() if k.startswith("s:") and v == "succeeded"),
        "failed": sum(1 for k, v in fields.items() if k.startswith("s:") and v == "failed"),
    }


def list_events(
    state: PipelineState, selection: EventFilter | None = None, limit: int = 100, scan: int = 5000
) -> list[dict[str, Any]]:
    """Recent events, newest first, that pass `selection` (among the newest `scan` in the time window)."""
    f = selection or EventFilter()
    ids = state.r.zrevrangebyscore(
        state.key("events"),
        f.until if f.until is not None else "+inf",
        f.since if f.since is not None else "-inf",
        start=0,
        num=scan,
    )
    out: list[dict[str, Any]] = []
    names: list[str] = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
    for chunk in _chunks(names, 200):
        for event_id, raw in zip(chunk, state.summaries(chunk), strict=True):
            if not raw:
                continue
            summary = _summary(event_id, raw)
            if (
                (f.source and summary["source"] != f.source)
                or (f.entity and not entity_matches(f.entity, summary["entity_type"], summary["entity_id"]))
                or (f.rule and f.rule not in summary["rules"])
                or (f.outcome and summary["outcome"] != f.outcome)
            ):
                continue
            out.append(summary)
            if len(out) >= limit:
                return out
    return out


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def event_detail(state: PipelineState, event_id: str) -> dict[str, Any] | None:
    """An event, its summary, its whole trace and its dead letters; None when none of it is kept."""
    event, trace = state.load_event(event_id), state.load_trace(event_id)
    if event is None and not trace:
        return None
    [raw] = state.summaries([event_id])
    return {
        "id": event_id,
        "event": event,
        "trace": trace,
        "summary": _summary(event_id, raw) if raw else None,
        "dead_letters": [_with_entity(state, d) for d in state.dead_letters() if d.get("event_id") == event_id],
    }


def overview(state: PipelineState, now: float | None = None) -> dict[str, Any]:
    """The console's front page: totals since the counters began, the last hour per minute, queue depths."""
    now = time.time() if now is None else now
    minute = int(now // 60) * 60
    pipe = state.r.pipeline(transaction=False)
    totals_of = (
        "fieldrelay_events_received_total",
        "fieldrelay_actions_total",
        "fieldrelay_retries_total",
        "fieldrelay_duplicates_dropped_total",
        "fieldrelay_rule_matches_total",
    )
    for name in totals_of:
        pipe.hgetall(metric_key(name))
    for i in range(59, -1, -1):
        start = minute - i * 60
        pipe.zcount(state.key("events"), start, start + 59.999)
        pipe.zcount(state.key("dlq"), start, start + 59.999)
    for queue in ALL_QUEUES:
        pipe.llen(queue)
    results = pipe.execute()
    received, actions, retries, duplicates, matches = results[:5]
    counts = results[5:125]
    outcome_at = SPECS["fieldrelay_actions_total"].labels.index("outcome")
    outcomes = {"succeeded": 0, "failed": 0}
    for labels, value in actions.items():
        outcomes[json.loads(labels)[outcome_at]] += int(value)
    events, failures = counts[0::2], counts[1::2]
    return {
        "totals": {
            "received": _total(received),
            "matches": _total(matches),
            "retries": _total(retries),
            "duplicates": _total(duplicates),
            **outcomes,
        },
        "minutes": [(minute - (59 - i) * 60, e, f) for i, (e, f) in enumerate(zip(events, failures, strict=True))],
        "depths": dict(zip(ALL_QUEUES, results[125:], strict=True)),
        "dlq_size": state.dlq_size(),
        "targets": target_statuses(state),
        **unacked_work(state, now),
    }


def unacked_work(state: PipelineState, now: float | None = None) -> dict[str, Any]:
    """Messages workers took and have not acknowledged: how many live workers hold, and each one stranded
    (its worker dead: `orphaned`, put back within seconds; or `untracked`: back after the visibility timeout)."""
    now = time.time() if now is None else now
    held = held_messages(state.r)
    stranded = [
        {
            "state": h.state,
            "task": h.task,
            "args": h.args,
            "queue": h.queue,
            "consumer": h.consumer,
            "age": h.age(now),
        }
        for h in held
        if h.state != "held"
    ]
    return {"held": sum(1 for h in held if h.state == "held"), "stranded": stranded}


def _total(counter: dict[Any, Any]) -> int:
    return sum(int(v) for v in counter.values())
