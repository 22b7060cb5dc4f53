"""Polling metrics, counted in Redis hashes so every beat/worker process adds to the same numbers.

The layout is `fieldrelay.metrics`'s: one hash per metric (`fieldrelay:metrics:<name>`), one field per
label set (a JSON list of the label values in declared order). `PollCollector` turns them into
Prometheus families for `GET /metrics`; the lag gauge is computed when scraped, from the time up to
which each poller's last complete run has collected every change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import orjson
import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "fieldrelay"
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fieldrelay_poll_events_total": ("Change events a poller enqueued.", ("source", "entity")),
    "fieldrelay_missed_webhooks_caught_total": (
        "ServiceTrade changes newer than any webhook delivered for the record: caught by polling.",
        ("entity",),
    ),
    "fieldrelay_poll_requests_total": ("API requests made by the pollers (shares the API's budget).", ("source",)),
    "fieldrelay_poll_rate_limited_total": ("Poll runs cut short by a 429 (they resume after the reset).", ("source",)),
}
LAG = "fieldrelay_poll_lag_seconds"
FRESH_KEY = f"{PREFIX}:poll:fresh"  # poller name -> Unix seconds up to which every change was collected


def metric_key(name: str) -> str:
    return f"{PREFIX}:metrics:{name}"


def label_field(name: str, labels: Mapping[str, str]) -> str:
    return orjson.dumps([str(labels.get(label, "")) for label in COUNTERS[name][1]]).decode()


class PollMetrics:
    """Counter increments and the freshness mark, written by the poll runner.

    >>> PollMetrics(r).add("fieldrelay_poll_events_total", 2, source="synchroteam", entity="job")  # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def add(self, name: str, amount: int = 1, **labels: str) -> None:
        if amount:
            self.r.hincrby(metric_key(name), label_field(name, labels), amount)

    def value(self, name: str, **labels: str) -> int:
        raw = self.r.hget(metric_key(name), label_field(name, labels))
        return int(raw) if raw is not None else 0

    def mark_fresh(self, poller: str, until: int) -> None:
        self.r.hset(FRESH_KEY, poller, until)

    def lag(self, poller: str, now: float | None = None) -> float | None:
        raw = self.r.hget(FRESH_KEY, poller)
        return None if raw is None else max(0.0, (now or time.time()) - float(raw))


class PollCollector(Collector):
    """Prometheus collector over the Redis counts: `REGISTRY.register(PollCollector(r))`."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    def collect(self) -> Iterator[Metric]:
        for name, (help_text, labels) in COUNTERS.items():
            family = CounterMetricFamily(name.removesuffix("_total"), help_text, labels=list(labels))
            for field, value in sorted(self.r.hgetall(metric_key(name)).items()):
                family.add_metric([str(v) for v in orjson.loads(field)], float(value))
            yield family
        lag = GaugeMetricFamily(
            LAG, "Seconds since the newest moment a poller has fully collected.", labels=["source", "entity"]
        )
        now = time.time()
        for poller, until in sorted(self.r.hgetall(FRESH_KEY).items()):
            source, _, entity = (poller.decode() if isinstance(poller, bytes) else poller).partition(".")
            lag.add_metric([source, entity], max(0.0, now - float(until)))
        yield lag
