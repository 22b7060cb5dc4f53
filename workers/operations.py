"""What ops do to a running pipeline: dead letters (list, show, retry, drop), targets (pause, resume,
status), the recent-events index, and the ServiceTrade webhook registration. Plain functions over
`PipelineState`; the CLI (`fieldrelay.cli_ops`) and the console (`receiver.console`) call them.

    OperationError          a request that cannot be done (unknown id or target, expired event)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery import signals

from fieldrelay.celery_messages import task_message
from fieldrelay.queues import ACTION_QUEUES, RUN_ACTION_TASK
from workers.state import PipelineState

if TYPE_CHECKING:
    from workers.connectors.servicetrade import ServiceTradeClient

log = logging.getLogger("fieldrelay.operations")
# (event_id, rule digest, action index, queue), as workers.pipeline.EnqueueAction
Enqueue = Callable[[str, str, int, str], None]
TARGETS = tuple(ACTION_QUEUES)


class OperationError(Exception):
    """The operation cannot be done; the message says why, for a person."""


def redis_enqueue(state: PipelineState) -> Enqueue:
    """Enqueue `fieldrelay.run_action` by writing its Celery message straight to the target's queue."""

    def enqueue(event_id: str, digest: str, index: int, queue: str) -> None:
        state.r.lpush(queue, task_message(RUN_ACTION_TASK, [event_id, digest, index], queue,
                                          argsrepr=repr((event_id, digest, index))))

    return enqueue


def parse_time(text: str | None, now: float | None = None) -> float | None:
    """`15m`, `2h`, `7d` ago; an ISO date or datetime (UTC unless it says); or Unix seconds."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[:-1].isdigit() and text[-1] in units:
        return (now if now is not None else time.time()) - int(text[:-1]) * units[text[-1]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OperationError(f"not a time: {text!r} (use 15m, 2h, 7d, an ISO date or Unix seconds)") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# ---- dead letters ------------------------------------------------------------------------------

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
    return {**entry, "entity_type": entity.get("type"), "entity_id": entity.get("id"),
            "source": event.get("source")}


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
    return {**_with_entity(state, entry), "event": state.load_event(entry["event_id"]),
            "trace": state.load_trace(entry["event_id"])}


def retry_dead_letter(state: PipelineState, dlq_id: str, enqueue: Enqueue | None = None) -> dict[str, Any]:
    """Run the failed step again on its target's queue, with the rule version that matched.

    The step's ledger entry is cleared first (a step that was in fact done runs again; targets
    are idempotent), and the entry leaves the DLQ before the enqueue: the retry may fail again
    at once and dead-letter under the same id.
    """
    entry = state.dead_letter_entry(dlq_id)
    if entry is None:
        raise OperationError(f"no dead letter {dlq_id!r}")
    event_id, digest, index, target = entry["event_id"], entry["rule_digest"], int(entry["index"]), entry["target"]
    if target not in ACTION_QUEUES:
        raise OperationError(f"dead letter {dlq_id} has no known target ({target!r})")
    if state.load_event(event_id) is None or state.load_rule(digest) is None:
        raise OperationError(f"dead letter {dlq_id}: its event or rule version expired from the store; "
                             "replay the event instead")
    state.forget_action(event_id, digest, index)
    state.remove_dead_letter(dlq_id)
    try:
        (enqueue or redis_enqueue(state))(event_id, digest, index, ACTION_QUEUES[target])
    except Exception:
        state.dead_letter({k: v for k, v in entry.items() if k not in ("id", "at")})
        raise
    state.trace(event_id, "dlq.retried", rule=entry.get("rule"), index=index, action=entry.get("action"),
                target=target, dead_letter=dlq_id)
    return entry


def drop_dead_letter(state: PipelineState, dlq_id: str) -> dict[str, Any]:
    entry = state.dead_letter_entry(dlq_id)
    if entry is None or not state.remove_dead_letter(dlq_id):
        raise OperationError(f"no dead letter {dlq_id!r}")
    state.trace(entry["event_id"], "dlq.dropped", rule=entry.get("rule"), index=entry.get("index"),
                action=entry.get("action"), target=entry.get("target"), dead_letter=dlq_id)
    return entry


# ---- targets -----------------------------------------------------------------------------------

def _target(target: str) -> str:
    if target not in ACTION_QUEUES:
        raise OperationError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    return target


def pause_target(state: PipelineState, target: str, reason: str = "") -> None:
    state.pause_target(_target(target), reason=reason or "paused by an operator")


def resume_target(state: PipelineState, target: str) -> bool:
    return state.resume_target(_target(target))


def target_status(state: PipelineState, target: str) -> dict[str, Any]:
    """Paused or not, the rate budget and quota last reported, and any block the rate gate holds."""
    _target(target)
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


def record_rates(state: PipelineState, clients: Any) -> None:
    """Store the rate/quota headers the Synchroteam client saw last (the only API that sends them)."""
    info = getattr(clients.synchroteam, "last_rate", None)
    if info is not None and info is not _last_recorded.get("synchroteam"):
        state.record_rate("synchroteam", info)
        _last_recorded["synchroteam"] = info


_last_recorded: dict[str, Any] = {}


# ---- the recent-events index (kept by fieldrelay.metrics.observe) --------------------------------

@dataclass(frozen=True)
class EventFilter:
    source: str | None = None
    entity: str | None = None
    rule: str | None = None
    outcome: str | None = None  # failed | succeeded | matched | no match | stale | own write
    since: float | None = None
    until: float | None = None


def event_outcome(summary: dict[str, str]) -> str:
    """Failed while any action's latest outcome is a failure (a retry that succeeds clears it)."""
    latest = [v for k, v in summary.items() if k.startswith("s:")]
    if "failed" in latest:
        return "failed"
    if "succeeded" in latest:
        return "succeeded"
    if any(k.startswith("rule:") for k in summary):
        return "matched"
    if summary.get("own_write"):
        return "own write"
    return "stale" if summary.get("stale") else "no match"


def _summary(event_id: str, raw: dict[Any, Any]) -> dict[str, Any]:
    fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in raw.items()}
    rules = sorted(k.removeprefix("rule:") for k in fields if k.startswith("rule:"))
    return {
        "id": event_id, "at": float(fields.get("at", 0)), "source": fields.get("source", ""),
        "via": fields.get("via", ""), "entity_type": fields.get("entity", ""),
        "entity_id": fields.get("entity_id", ""), "action": fields.get("action", ""),
        "rules": rules, "outcome": event_outcome(fields), "duplicates": int(fields.get("duplicates", 0)),
        "succeeded": int(fields.get("succeeded", 0)), "failed": int(fields.get("failed", 0)),
    }


def list_events(state: PipelineState, selection: EventFilter | None = None, limit: int = 100,
                scan: int = 5000) -> list[dict[str, Any]]:
    """Recent events, newest first, that pass `selection` (among the newest `scan` in the time window)."""
    f = selection or EventFilter()
    ids = state.r.zrevrangebyscore(state.key("events"), f.until if f.until is not None else "+inf",
                                   f.since if f.since is not None else "-inf", start=0, num=scan)
    out: list[dict[str, Any]] = []
    names: list[str] = [i.decode() if isinstance(i, bytes) else str(i) for i in ids]
    for chunk in _chunks(names, 200):
        pipe = state.r.pipeline(transaction=False)
        for event_id in chunk:
            pipe.hgetall(state.key("evsum", event_id))
        for event_id, raw in zip(chunk, pipe.execute(), strict=True):
            if not raw:
                continue
            summary = _summary(event_id, raw)
            if ((f.source and summary["source"] != f.source)
                    or (f.entity and not entity_matches(f.entity, summary["entity_type"], summary["entity_id"]))
                    or (f.rule and f.rule not in summary["rules"])
                    or (f.outcome and summary["outcome"] != f.outcome)):
                continue
            out.append(summary)
            if len(out) >= limit:
                return out
    return out


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def event_detail(state: PipelineState, event_id: str) -> dict[str, Any] | None:
    """An event, its summary, its whole trace and its dead letters; None when none of it is kept."""
    event, trace = state.load_event(event_id), state.load_trace(event_id)
    if event is None and not trace:
        return None
    raw = state.r.hgetall(state.key("evsum", event_id))
    return {"id": event_id, "event": event, "trace": trace,
            "summary": _summary(event_id, raw) if raw else None,
            "dead_letters": [_with_entity(state, d) for d in state.dead_letters() if d.get("event_id") == event_id]}


# ---- ServiceTrade webhook registration ---------------------------------------------------------

def register_webhook(client: ServiceTradeClient, url: str) -> tuple[dict[str, Any], bool]:
    """The webhook for `url`, enabled and with changesets; created only if none has that URL.

    Returns the hook and whether it was created. Running it again changes nothing.
    """
    for hook in client.list_webhooks():
        if hook.get("hookUrl") == url:
            if not hook.get("enabled") or not hook.get("includeChangesets"):
                hook = client.update_webhook(hook["id"], enabled=True, include_changesets=True)
            return hook, False
    return client.create_webhook(url, enabled=True, include_changesets=True), True


def set_webhook_enabled(client: ServiceTradeClient, url_or_id: str, enabled: bool) -> dict[str, Any]:
    for hook in client.list_webhooks():
        if url_or_id in (hook.get("hookUrl"), str(hook.get("id"))):
            return client.update_webhook(hook["id"], enabled=enabled)
    raise OperationError(f"no ServiceTrade webhook with URL or id {url_or_id!r}")


# ---- Celery signals (connected when workers.celery_app imports this module) ----------------------

def _settings() -> Any:
    from workers.celery_app import app

    return app.conf.fieldrelay_settings


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    """JSON logs in the worker and beat; connecting this also stops Celery configuring its own."""
    from fieldrelay.logs import setup_logging

    setup_logging(_settings())


@signals.beat_init.connect
def _beat_sentry(**_: Any) -> None:
    """Sentry in beat too: its Celery integration adds Crons monitor headers to every scheduled task."""
    from fieldrelay.observability import init_sentry

    init_sentry(_settings(), "beat")


@signals.task_postrun.connect
def _record_rates(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "name", None) != RUN_ACTION_TASK:
        return
    from workers.tasks import runtime

    try:
        rt = runtime()
        record_rates(rt.state, rt.clients)
    except Exception as exc:  # status for the console must never fail a task
        log.warning("could not record target rates: %s", type(exc).__name__)
