"""Prometheus metrics for the whole pipeline, counted in Redis from the trace steps and read at scrape time.

Every pipeline step goes through `PipelineState.trace`, which calls `observe()` here: the one
instrumentation point. Counts and histogram buckets live in Redis hashes (`fieldrelay:metrics:<name>`),
so every worker process on every host adds to the same numbers, and any receiver's `GET /metrics`
reports them all; workers need no endpoint of their own and no `PROMETHEUS_MULTIPROC_DIR`. Gauges
(queue depth, DLQ size, rate budget) are read from Redis when scraped. The pollers keep their own
counts in the same layout (fieldrelay.poll_metrics); `GET /metrics` serves both.

`observe()` also keeps the console's index of recent events (`fieldrelay:events`, a zset of ids by
time) and each event's summary fields, which the console filters on, in the event's record
(`fieldrelay:evsum:<id>`, a hash that also holds the event and its step results: PipelineState.record_key).
"""

from __future__ import annotations

import bisect
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from fieldrelay.consumers import count_by_state
from fieldrelay.logs import PRE_REDACTED
from fieldrelay.queues import ACTION_QUEUES, ALL_QUEUES
from fieldrelay.redaction import Redactor
from fieldrelay.steps import Step
from fieldrelay.tally import TALLY

log = logging.getLogger("fieldrelay.metrics")
steps_log = logging.getLogger("fieldrelay.trace")  # one JSON line per pipeline step (fieldrelay.logs)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

PREFIX = "fieldrelay"
MAX_INDEXED = 50_000  # recent events the console can list
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


@dataclass(frozen=True)
class Spec:
    kind: str  # counter | histogram
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = LATENCY_BUCKETS


SPECS: dict[str, Spec] = {
    "fieldrelay_events_received_total": Spec(
        "counter", "Change events taken in by the workers.", ("source", "via", "entity", "action")
    ),
    "fieldrelay_duplicates_dropped_total": Spec("counter", "Deliveries of an event already claimed."),
    "fieldrelay_stale_events_skipped_total": Spec("counter", "Events older than the newest change applied."),
    "fieldrelay_rule_matches_total": Spec("counter", "Rules that matched an event.", ("rule",)),
    "fieldrelay_actions_total": Spec("counter", "Actions run to an outcome.", ("target", "action", "outcome")),
    "fieldrelay_retries_total": Spec("counter", "Action attempts that failed and were retried."),
    "fieldrelay_action_deferrals_total": Spec(
        "counter", "Actions put off by the target's gate (rate, blocked, quota, paused).", ("reason",)
    ),
    "fieldrelay_action_duration_seconds": Spec(
        "histogram", "From an action's start to its outcome (last attempt).", ("target", "action")
    ),
    "fieldrelay_event_to_action_seconds": Spec(
        "histogram", "From an event's intake by a worker to each of its actions succeeding."
    ),
    # Counted by the receiver, not from trace steps.
    "fieldrelay_webhooks_rejected_total": Spec(
        "counter", "Webhooks with a valid token answered 400 and kept for replay.", ("reason",)
    ),
    "fieldrelay_auth_failures_total": Spec(
        "counter", "Wrong webhook tokens and console sign-ins, per kind.", ("kind",)
    ),
    "fieldrelay_auth_throttled_total": Spec(
        "counter", "Requests refused because their address failed too often, per kind.", ("kind",)
    ),
    # Kept by fieldrelay.consumers and the worker supervisor, not by trace steps.
    "fieldrelay_messages_restored_total": Spec(
        "counter", "Unacknowledged messages of a dead worker put back on their queue.", ("by",)
    ),
    "fieldrelay_worker_restarts_total": Spec(
        "counter", "Celery worker processes the supervisor started again after an exit it did not ask for.", ("reason",)
    ),
}


class StateLike(Protocol):
    """What `observe` needs of `fieldrelay.state.PipelineState` (fieldrelay does not import workers)."""

    r: redis.Redis
    retention: int
    failure_retention: int
    redactor: Redactor

    def key(self, *parts: str | int) -> str: ...

    def load_event(self, event_id: str) -> dict[str, Any] | None: ...

    def just_saved(self, event_id: str) -> dict[str, Any] | None: ...

    @property
    def unlisted(self) -> dict[str, float] | None: ...


class BatchLike(Protocol):
    """What `observe` needs of `fieldrelay.batch.WriteBatch`: a pipeline, the times this step recorded, and
    what to do once its writes are in, while a guarded write may still refuse them (`guarded`)."""

    pipe: Any
    known: dict[str, float]
    after: list[Callable[[], None]]

    @property
    def guarded(self) -> bool: ...


def target_of(action: str) -> str:
    """Actions are named `<target>.<object>.<verb>` (`http.request` for any HTTP endpoint)."""
    return action.split(".", 1)[0] if action else "unknown"


def metric_key(name: str) -> str:
    return f"{PREFIX}:metrics:{name}"


def _labels(name: str, values: Mapping[str, Any]) -> str:
    return orjson.dumps([str(values.get(label, "")) for label in SPECS[name].labels]).decode()


def counter_field(name: str, labels: Mapping[str, Any]) -> str:
    """The hash field of a counter's series: for writers outside the trace (the receiver), `HINCRBY
    metric_key(name) counter_field(name, labels) 1`."""
    return _labels(name, labels)


class Counts(Protocol):
    """Where a recorder's counter increments and index trims go: `fieldrelay.tally.Tally`, or `_PipeCounts`."""

    def hincrby(self, key: str, field: str, amount: int = 1) -> Any: ...

    def hincrbyfloat(self, key: str, field: str, amount: float) -> Any: ...

    def trim(self, key: str, keep: int, below: float) -> Any: ...

    def then(self, do: Callable[[], None]) -> Any: ...


class _Later:
    """Counter increments and trims made in the process's tally once the step's writes are in."""

    def __init__(self, after: list[Callable[[], None]]) -> None:
        self.after = after

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        self.after.append(functools.partial(TALLY.hincrby, key, field, amount))

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self.after.append(functools.partial(TALLY.hincrbyfloat, key, field, amount))

    def trim(self, key: str, keep: int, below: float) -> None:
        self.after.append(functools.partial(TALLY.trim, key, keep, below))

    def then(self, do: Callable[[], None]) -> None:
        self.after.append(do)


class _PipeCounts:
    """Counters written with the other writes of one pipeline (a trace entry outside a worker's step)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        self.pipe.hincrby(key, field, amount)

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        self.pipe.hincrbyfloat(key, field, amount)

    def trim(self, key: str, keep: int, below: float) -> None:
        self.pipe.zremrangebyrank(key, 0, -keep - 1)
        self.pipe.zremrangebyscore(key, 0, below)

    def then(self, do: Callable[[], None]) -> None:
        do()


def _inc(counts: Counts, name: str, labels: Mapping[str, Any] | None = None, amount: int = 1) -> None:
    counts.hincrby(metric_key(name), _labels(name, labels or {}), amount)


def _observe_seconds(counts: Counts, name: str, value: float, labels: Mapping[str, Any] | None = None) -> None:
    spec, field = SPECS[name], _labels(name, labels or {})
    bucket = bisect.bisect_left(spec.buckets, value)  # le is inclusive
    counts.hincrby(metric_key(name), f"{field}|{bucket}", 1)
    counts.hincrbyfloat(metric_key(name), f"{field}|sum", max(0.0, value))


def observe(state: StateLike, event_id: str, entry: Mapping[str, Any], batch: BatchLike | None = None) -> None:
    """Log and count one trace entry (into `batch`, sent with the step's other writes, when there is one);
    never raises, since metrics must not fail the step they describe."""
    if batch is not None and batch.guarded:  # its writes may yet be refused: logged once they are in
        batch.after.append(functools.partial(log_step, state, event_id, entry))
    else:
        log_step(state, event_id, entry)
    record(state, event_id, entry, batch)


def log_step(state: StateLike, event_id: str, entry: Mapping[str, Any]) -> None:
    """The trace entry's line in the step log (`fieldrelay.trace`)."""
    detail = {(f"{k}_" if k in _RESERVED else k): v for k, v in entry.items() if k not in ("at", "step")}
    # `entry` was redacted for the trace already (PipelineState.trace): the formatter need not search it again.
    steps_log.info(
        str(entry.get("step")), extra={"event_id": event_id, **detail, PRE_REDACTED: state.redactor.sameness}
    )


def record(state: StateLike, event_id: str, entry: Mapping[str, Any], batch: BatchLike | None = None) -> None:
    """Count the trace entry and update the console's summary (into `batch`, when there is one)."""
    try:
        _observe(state, event_id, entry, batch)
    except Exception as exc:  # Redis trouble here already fails the trace write next to it
        log.warning("metrics not recorded for %s: %s", entry.get("step"), type(exc).__name__)


@dataclass(frozen=True)
class _Seen:
    """One trace entry as a recorder reads it."""

    state: StateLike
    event_id: str
    entry: Mapping[str, Any]
    at: float
    known: dict[str, float]  # summary fields this step set, by name: read here instead of from Redis
    counts: Counts  # where counters go: the process's tally (a worker's step), else the step's pipeline

    @property
    def summary(self) -> str:
        return self.state.key("evsum", self.event_id)

    @property
    def started_field(self) -> str:
        return f"t:{self.entry.get('rule', '')}:{self.entry.get('index', '')}"


Recorder = Callable[[Any, _Seen], None]


def _intake(pipe: Any, seen: _Seen) -> None:
    """The event reached the rules (or was our own write): count it and index it for the console."""
    state, entry = seen.state, seen.entry
    event = state.just_saved(seen.event_id) or state.load_event(seen.event_id) or {}
    entity = event.get("entity") or {}
    labels = {
        "source": event.get("source", ""),
        "via": event.get("via", entry.get("via", "")),
        "entity": entity.get("type", ""),
        "action": event.get("action", ""),
    }
    if entry.get("step") == Step.RECEIVED:
        _inc(seen.counts, "fieldrelay_events_received_total", labels)
    else:
        pipe.hset(seen.summary, "own_write", 1)
    fields = {k: str(v) for k, v in labels.items()}
    fields.update(at=str(seen.at), entity_id=str(entity.get("id", "")), message_id=event.get("message_id") or "")
    pipe.hset(seen.summary, mapping=fields)
    seen.known[f"{seen.event_id}|at"] = seen.at
    pipe.expire(seen.summary, state.retention)
    index_key = state.key("events")
    unlisted = state.unlisted
    if unlisted is None:
        pipe.zadd(index_key, {seen.event_id: seen.at})
    else:  # one ZADD for every event of the task, before its message is acknowledged (workers/tasks.py)
        seen.counts.then(functools.partial(unlisted.__setitem__, seen.event_id, seen.at))
    seen.counts.trim(index_key, MAX_INDEXED, seen.at - state.failure_retention)


def _duplicate(pipe: Any, seen: _Seen) -> None:
    _inc(seen.counts, "fieldrelay_duplicates_dropped_total")
    pipe.hincrby(seen.summary, "duplicates", 1)


def _stale(pipe: Any, seen: _Seen) -> None:
    # Skipped before its record is saved: listed by id and time only, its trace says why.
    _inc(seen.counts, "fieldrelay_stale_events_skipped_total")
    pipe.hset(seen.summary, "stale", 1)
    pipe.hsetnx(seen.summary, "at", seen.at)
    pipe.expire(seen.summary, seen.state.retention)
    pipe.zadd(seen.state.key("events"), {seen.event_id: seen.at}, nx=True)


def _event_failed(pipe: Any, seen: _Seen) -> None:
    pipe.hset(seen.summary, "event_failed", 1)
    pipe.hsetnx(seen.summary, "at", seen.at)
    pipe.expire(seen.summary, seen.state.failure_retention)
    pipe.zadd(seen.state.key("events"), {seen.event_id: seen.at}, nx=True)


def _evaluated(pipe: Any, seen: _Seen) -> None:
    """The rules ran to a verdict: only now may an event without a match be listed as "no match"."""
    pipe.hset(seen.summary, "evaluated", 1)


def _deferred(pipe: Any, seen: _Seen) -> None:
    _inc(seen.counts, "fieldrelay_action_deferrals_total", {"reason": seen.entry.get("reason", "")})


def _matched(pipe: Any, seen: _Seen) -> None:
    rule = seen.entry.get("rule", "")
    _inc(seen.counts, "fieldrelay_rule_matches_total", {"rule": rule})
    pipe.hset(seen.summary, f"rule:{rule}", 1)


def _started(pipe: Any, seen: _Seen) -> None:
    # Kept in the process, not in Redis: a step's outcome is recorded by the task that started it (in its
    # own step, or in the failure path right after), and a restarted step starts its clock again.
    if len(_STARTED) >= STARTS_KEPT:
        _STARTED.clear()
    _STARTED[f"{seen.event_id}|{seen.started_field}"] = seen.at


# When this process started each action call it has not recorded the outcome of: (event id|rule:index) -> time.
_STARTED: dict[str, float] = {}
STARTS_KEPT = 4096


def _retry(pipe: Any, seen: _Seen) -> None:
    _inc(seen.counts, "fieldrelay_retries_total")


def _outcome(pipe: Any, seen: _Seen) -> None:
    """An action's outcome: count it, time it, and keep each step's latest outcome for the console."""
    entry, step = seen.entry, entry_step(seen.entry)
    rule, index, action = entry.get("rule", ""), entry.get("index", ""), str(entry.get("action", ""))
    outcome = "succeeded" if step == Step.ACTION_SUCCEEDED else "failed"
    target = str(entry.get("target") or target_of(action))
    _inc(seen.counts, "fieldrelay_actions_total", {"target": target, "action": action, "outcome": outcome})
    started = _STARTED.pop(f"{seen.event_id}|{seen.started_field}", None)
    received: float | bytes | str | None = seen.known.get(f"{seen.event_id}|at")
    if received is None:  # received by another task, maybe in another process: the record has it
        received = seen.state.r.hget(seen.summary, "at")
    if started is not None:
        _observe_seconds(
            seen.counts,
            "fieldrelay_action_duration_seconds",
            seen.at - float(started),
            {"target": target, "action": action},
        )
    if outcome == "succeeded" and received is not None:
        _observe_seconds(seen.counts, "fieldrelay_event_to_action_seconds", seen.at - float(received))
    if step != Step.ON_FAILURE_FAILED:  # the step's latest outcome: a retried dead letter can recover
        pipe.hset(seen.summary, f"s:{rule}:{index}", outcome)
    if outcome == "failed":
        pipe.expire(seen.summary, seen.state.failure_retention)


def _nothing(pipe: Any, seen: _Seen) -> None:
    """Shown in the trace and the step log only: no counter, no summary field."""


# Every step, and what it adds to the metrics and the console's event summary (tests/fieldrelay/test_steps.py
# fails when a step is missing here).
RECORDERS: dict[Step, Recorder] = {
    Step.RECEIVED: _intake,
    Step.OWN_WRITE: _intake,
    Step.DUPLICATE: _duplicate,
    Step.STALE: _stale,
    Step.REPLAY_REQUESTED: _nothing,
    Step.REPLAYED: _nothing,
    Step.EVENT_RETRY: _nothing,
    Step.EVENT_FAILED: _event_failed,
    Step.NO_RULES: _evaluated,
    Step.RULE_MATCHED: _matched,
    Step.RULE_SKIPPED: _evaluated,
    Step.RUN_STARTED: _nothing,
    Step.RUN_DEBOUNCED: _nothing,
    Step.RUN_WAITING: _nothing,
    Step.ACTION_STARTED: _started,
    Step.ACTION_DEFERRED: _deferred,
    Step.ACTION_RETRY: _retry,
    Step.ACTION_SUCCEEDED: _outcome,
    Step.ACTION_FAILED: _outcome,
    Step.ON_FAILURE_FAILED: _outcome,
    Step.DLQ_RETRIED: _nothing,
    Step.DLQ_DROPPED: _nothing,
}


def entry_step(entry: Mapping[str, Any]) -> Step | None:
    try:
        return Step(str(entry.get("step", "")))
    except ValueError:
        return None


def _observe(state: StateLike, event_id: str, entry: Mapping[str, Any], batch: BatchLike | None) -> None:
    step = entry_step(entry)
    recorder = RECORDERS.get(step) if step is not None else None
    if recorder is None or recorder is _nothing:
        return
    at = float(entry.get("at") or time.time())
    if batch is not None:
        TALLY.bind(state.r)
        counts: Counts = _Later(batch.after) if batch.guarded else TALLY
        recorder(batch.pipe, _Seen(state, event_id, entry, at, batch.known, counts))
        return
    pipe = state.r.pipeline(transaction=False)
    recorder(pipe, _Seen(state, event_id, entry, at, {}, _PipeCounts(pipe)))
    pipe.execute()


class RedisCollector(Collector):
    """Reads the counters `observe` keeps, and the gauges, from Redis at every scrape."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def collect(self) -> Iterator[Metric]:
        pipe = self.r.pipeline(transaction=False)
        for name in SPECS:
            pipe.hgetall(metric_key(name))
        pipe.zcard(f"{PREFIX}:dlq")
        for queue in ALL_QUEUES:
            pipe.llen(queue)
        for target in ACTION_QUEUES:
            pipe.hgetall(f"{PREFIX}:rate:{target}")
            pipe.exists(f"{PREFIX}:paused:{target}")
        results = iter(pipe.execute())

        for name, spec in SPECS.items():
            raw = {_str(k): _str(v) for k, v in next(results).items()}
            if spec.kind == "counter":
                yield _counter(name, spec, raw)
            else:
                yield _histogram(name, spec, raw)

        yield _gauge("fieldrelay_dlq_size", "Actions in the dead-letter store.", [((), next(results))])
        depth = GaugeMetricFamily("fieldrelay_queue_depth", "Messages waiting in each Celery queue.", labels=["queue"])
        for queue in ALL_QUEUES:
            depth.add_metric([queue], next(results))
        yield depth
        unacked = GaugeMetricFamily(
            "fieldrelay_unacked_messages",
            "Messages delivered to a worker and not yet acknowledged: held by a live worker, orphaned by a dead "
            "one (put back within seconds), or untracked (left to the visibility timeout).",
            labels=["state"],
        )
        for state, count in count_by_state(self.r).items():
            unacked.add_metric([state], float(count))
        yield unacked
        rate = GaugeMetricFamily(
            "fieldrelay_target_rate_remaining",
            "Requests left in the target's rate window, as it last reported.",
            labels=["target"],
        )
        quota = GaugeMetricFamily(
            "fieldrelay_target_quota_remaining",
            "Requests left in the target's daily quota, as it last reported.",
            labels=["target"],
        )
        paused = GaugeMetricFamily("fieldrelay_target_paused", "1 while the target is paused.", labels=["target"])
        for target in ACTION_QUEUES:
            info = {_str(k): _str(v) for k, v in next(results).items()}
            if "remaining" in info:
                rate.add_metric([target], float(info["remaining"]))
            if "quota_remaining" in info:
                quota.add_metric([target], float(info["quota_remaining"]))
            paused.add_metric([target], float(bool(next(results))))
        yield rate
        yield quota
        yield paused


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _gauge(name: str, help: str, samples: list[tuple[tuple[str, ...], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help, labels=[])
    for labels, value in samples:
        family.add_metric(list(labels), float(value))
    return family


def _counter(name: str, spec: Spec, raw: dict[str, str]) -> CounterMetricFamily:
    family = CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=list(spec.labels))
    if not spec.labels and not raw:
        family.add_metric([], 0.0)
    for labels, value in sorted(raw.items()):
        family.add_metric(orjson.loads(labels), float(value))
    return family


def _histogram(name: str, spec: Spec, raw: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, spec.help, labels=list(spec.labels))
    series: dict[str, dict[str, str]] = {}
    for field, value in raw.items():
        labels, _, part = field.rpartition("|")
        series.setdefault(labels, {})[part] = value
    for labels, parts in sorted(series.items()):
        counts = [int(parts.get(str(i), 0)) for i in range(len(spec.buckets) + 1)]
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, spec.buckets), "+Inf"], counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        family.add_metric(orjson.loads(labels), buckets, float(parts.get("sum", 0.0)))
    return family


def render(client: redis.Redis, *more: Collector) -> bytes:
    """The Prometheus text exposition of everything above, and of `more` collectors (the pollers')."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in (RedisCollector(client), *more):
        registry.register(collector)
    return generate_latest(registry)
