"""A 429 storm slows polling down without losing a change; every request is counted."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from fieldrelay.poll_metrics import PollMetrics
from workers.polling.pollers import PollContext

from .conftest import MakeCapture, Sandboxes, sandbox_settings, start_sandboxes


@pytest.fixture
def tight_sandboxes() -> Iterator[Sandboxes]:
    # Three requests per second, for the pollers of two entity types together.
    sandboxes = start_sandboxes(rate_limit=3, window_seconds=1.0)
    yield sandboxes
    sandboxes.runner.stop()


def test_a_429_storm_slows_polling_without_losing_changes(tight_sandboxes: Sandboxes, redis_url: str):
    settings = sandbox_settings(tight_sandboxes, redis_url, poll_sources="synchroteam.job,synchroteam.customer")
    events: list[dict] = []
    ctx = PollContext(settings, redis.Redis.from_url(redis_url), enqueue=events.append)
    try:
        check_storm(ctx, events, tight_sandboxes)
    finally:
        assert ctx.clients is not None
        ctx.clients.close()
        ctx.redis.close()


def check_storm(ctx: PollContext, events: list[dict], tight_sandboxes: Sandboxes) -> None:
    for spec in ctx.specs.values():
        # Small pages, and no share of the window held back for the actions: the pollers hit real 429s.
        spec.options.update(page_size=2, reserve=0)
    names = list(ctx.specs)
    store = tight_sandboxes.states["synchroteam"]

    def poll_until_caught_up(deadline: float) -> list[str]:
        statuses: list[str] = []
        done: set[str] = set()
        while done != set(names) and time.monotonic() < deadline:
            for name in names:
                status = ctx.poller(name).run().status
                statuses.append(status)
                if status == "ok":
                    done.add(name)
            time.sleep(0.05)
        assert done == set(names), statuses
        return statuses

    poll_until_caught_up(time.monotonic() + 10)
    events.clear()
    jobs = list(store.records["job"].values())[:3]
    for n, job in enumerate(jobs):  # changed in the sandbox's own state: no budget spent on the writes
        store.update(job, {"description": f"storm {n}"})
    customer = store.records["customer"][35604]
    store.update(customer, {"contactPhone": "555-0142"})
    statuses = poll_until_caught_up(time.monotonic() + 15)

    assert "partial" in statuses or "backoff" in statuses  # the storm was felt
    assert sorted(str(e["entity"]["id"]) for e in events if e["entity"]["type"] == "job") == sorted(
        str(j["id"]) for j in jobs
    )
    assert [e["entity"]["id"] for e in events if e["entity"]["type"] == "customer"] == [35604]
    metrics = PollMetrics(ctx.redis)
    assert metrics.value("fieldrelay_poll_rate_limited_total", source="synchroteam") >= 1
    requests = metrics.value("fieldrelay_poll_requests_total", source="synchroteam")
    assert requests >= len(statuses) - statuses.count("backoff") - statuses.count("locked")
    report = ctx.store.report("synchroteam.job")
    assert report is not None and report["requests"] >= 1
    assert set(report["budget"]) == {"rate_remaining", "quota_remaining"}


def test_injected_429s_on_servicetrade_delay_the_change_but_keep_it(sandboxes: Sandboxes, capture: MakeCapture):
    cap = capture(poll_sources="servicetrade.job")
    cap.poll("servicetrade.job")
    httpx.patch(
        sandboxes.control("servicetrade", "/entities/job/35775"), json={"status": "completed"}, timeout=10
    ).raise_for_status()
    httpx.post(
        sandboxes.control("servicetrade", "/faults"),
        json={"status": 429, "count": 2, "path_prefix": "/api/job"},
        timeout=10,
    ).raise_for_status()
    statuses: list[str] = []
    deadline = time.monotonic() + 10
    while "ok" not in statuses and time.monotonic() < deadline:
        statuses.append(cap.poll("servicetrade.job").status)
        time.sleep(0.01)
    assert [s for s in statuses if s != "backoff"] == ["partial", "partial", "ok"]
    assert [e["entity"]["id"] for e in cap.take()] == [35775]
    assert PollMetrics(cap.context.redis).value("fieldrelay_poll_rate_limited_total", source="servicetrade") == 2
