"""A listing that needs more pages than one rate window allows finishes across runs, from where it stopped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from workers.polling.store import PollStore

from .conftest import MakeCapture, Sandboxes, start_sandboxes


@pytest.fixture(scope="module")
def module_sandboxes() -> Iterator[Sandboxes]:
    sandboxes = start_sandboxes(rate_limit=4, window_seconds=60)
    yield sandboxes
    sandboxes.runner.stop()


def next_window(sandboxes: Sandboxes, r: redis.Redis) -> None:
    """The rate window resets: the sandbox's clock moves a minute on and the poller's back-off is over."""
    sandboxes.clocks["synchroteam"].offset += 61
    r.delete(PollStore(r).key("backoff", "synchroteam"))


def test_a_run_cut_by_the_rate_limit_resumes_on_its_page_and_finishes(
    sandboxes: Sandboxes, capture: MakeCapture, redis_client: redis.Redis, tmp_path: Any
) -> None:
    """Seed 000, "Rate Limits": "Request are throttled at a maximum rate of 120 requests every minute" and
    "Pagination" (`page`, `pageSize`). Old: a rate-limited run kept no position, so every run read pages 1..4
    again and a listing of more pages than one window allows never completed."""
    # The sandbox lives ten minutes behind: its rate windows then reset in our past, and a new window is
    # one clock step away instead of a minute's wait.
    sandboxes.clocks["synchroteam"].offset = -600
    state = sandboxes.states["synchroteam"]
    for n in range(10):
        state.create("job", {"myId": f"resume-{n}", "customer": {"id": 35604}})
    config = tmp_path / "pollers.yaml"
    config.write_text("pollers:\n  synchroteam.job: {page_size: 2}\n")
    cap = capture(poll_sources="synchroteam.job", poll_start="all", poll_config=str(config))

    first = cap.poll("synchroteam.job")
    assert first.status == "partial"
    cursor = PollStore(redis_client).cursor("synchroteam.job")
    assert cursor is not None and cursor.resume is not None and cursor.resume["mark"]["page"] >= 2

    runs = [first.status]
    for _ in range(4):
        next_window(sandboxes, redis_client)
        runs.append(cap.poll("synchroteam.job").status)
        if runs[-1] == "ok":
            break
    assert runs[-1] == "ok", runs
    emitted = {e["entity"]["id"] for e in cap.take()}
    assert {f"resume-{n}" for n in range(10)} <= {state.records["job"][i]["myId"] for i in emitted}
    done = PollStore(redis_client).cursor("synchroteam.job")
    assert done is not None and done.resume is None and done.runs == 1
