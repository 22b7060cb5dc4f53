"""Synchroteam's documented 120 requests per window, with the window compressed to 6 s, shared by 4 worker
processes draining a backlog of 600 actions: no 429 at all, and at least 95% of the limit delivered.

The window was 3 s (40 requests a second); on this 2-core machine under a second `make test` the pipeline
itself then fell short (37.9 a second, 94.8%) while the gate had budget to spare. At 20 a second the test
measures the gate, not how much CPU the machine has left."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import FaultStack, batches, job_sends, webhook
from workers.delayed import KEY as DELAYED_KEY

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

LIMIT, WINDOW = 120, 6.0  # the documented 120 per minute, 10x faster
ACTIONS = 600
SYNCHROTEAM_QUEUE = "actions.synchroteam"


def events_work(handle: FaultStack) -> int:
    """Messages waiting on the events queue, held unacked by a worker, or due later from the delayed queue."""
    pipe = handle.redis.pipeline(transaction=False)
    pipe.llen("events")
    pipe.hlen("unacked")
    pipe.zcard(DELAYED_KEY)
    return sum(pipe.execute())


def delivered(handle: FaultStack) -> tuple[float, int, int]:
    """(when, successful job sends, 429s) from the sandbox's request log; `when` is mid-request."""
    before = time.monotonic()
    entries = handle.requests()
    when = (before + time.monotonic()) / 2
    return when, sum(1 for e in job_sends(entries) if e["status"] == 200), sum(e["status"] == 429 for e in entries)


@pytest.mark.timeout(200)
def test_four_processes_use_the_shared_limit_fully_without_a_429(fault_stack):
    handle = fault_stack(
        workers=0,
        worker_concurrency=2,
        synchroteam_options={"rate_limit": LIMIT, "window_seconds": WINDOW, "daily_quota": 1_000_000},
        extra_env={"FIELDRELAY_SYNCHROTEAM_RATE_LIMIT": str(LIMIT), "FIELDRELAY_SYNCHROTEAM_RATE_WINDOW": str(WINDOW)},
    )
    # The backlog: events are evaluated by a worker that does not take actions, then it stops.
    handle.stack.start_worker(name="events", queues="events")
    ids = list(range(800_000, 800_000 + ACTIONS))
    with httpx.Client(timeout=10) as client:
        for n, chunk in enumerate(batches(ids, 50)):
            assert handle.post(webhook(chunk, 1_760_000_000, f"rate-{n}"), client).status_code == 200
    handle.wait_until(lambda: handle.redis.llen(SYNCHROTEAM_QUEUE) == ACTIONS, 120, "the backlog of actions")
    # Stopped only once it holds nothing: a task still in its hands (or due from the delayed queue) would
    # go back to the events queue, which nobody consumes after this, and the run would never go idle.
    handle.wait_until(lambda: not events_work(handle), 60, "the events worker to finish what it holds")
    handle.stack.stop("events")

    # Two workers of two processes each drain it.
    handle.stack.start_worker(name="actions1", queues=SYNCHROTEAM_QUEUE)
    handle.stack.start_worker(name="actions2", queues=SYNCHROTEAM_QUEUE)
    samples = [delivered(handle)]
    while samples[-1][1] < ACTIONS:
        time.sleep(1.0)
        samples.append(delivered(handle))
        assert samples[-1][0] - samples[0][0] < 120, f"only {samples[-1][1]} of {ACTIONS} delivered in 120 s"
    handle.wait_idle(timeout=30)
    _, sent, too_many = delivered(handle)

    limit_per_second = LIMIT / WINDOW
    # Steady state: from the first sample past 10% of the backlog to the last one below 90%.
    start = next(s for s in samples if s[1] >= ACTIONS * 0.1)
    end = [s for s in samples if s[1] <= ACTIONS * 0.9][-1]
    steady = (end[1] - start[1]) / (end[0] - start[0])
    first = next(s for s in samples if s[1] > 0)
    whole = (ACTIONS - first[1]) / (samples[-1][0] - first[0])
    print(
        f"\nFAULT-FIGURES limit={limit_per_second:.1f}/s steady={steady:.2f}/s ({steady / limit_per_second:.1%}) "
        f"whole_run={whole:.2f}/s ({whole / limit_per_second:.1%}) sends={sent} 429s={too_many}"
    )

    assert too_many == 0
    assert sent == ACTIONS
    assert set(handle.jobs()) >= {f"st-job-{i}" for i in ids}
    assert steady >= 0.95 * limit_per_second
