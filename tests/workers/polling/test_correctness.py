"""Nothing missed, nothing repeated: crashes, equal timestamps, clock skew, concurrent runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
import redis

from fieldrelay.events import ChangeEvent
from fieldrelay.state import PipelineState
from workers.connectors.synchroteam import SynchroteamClient
from workers.polling.lease import Lease

from .conftest import MakeCapture, Sandboxes, sandbox_values

# A poll run in its own process, killed (os._exit) at `point` after its events were enqueued.
KILLED_RUN = """
import json, os, sys
import redis
from fieldrelay.settings import load_settings
from workers.polling.pollers import PollContext
from workers.polling.store import PollStore

settings = load_settings(**json.loads(sys.argv[1]))
r = redis.Redis.from_url(settings.redis_url)
setattr(PollStore, sys.argv[3], lambda *args, **kwargs: os._exit(9))
ctx = PollContext(settings, r, enqueue=lambda event: r.rpush("test:enqueued", json.dumps(event)))
ctx.poller(sys.argv[2]).run()
"""


def patch_job(sandboxes: Sandboxes, job_id: int, **fields: object) -> None:
    httpx.patch(
        sandboxes.control("servicetrade", f"/entities/job/{job_id}"), json=fields, timeout=10
    ).raise_for_status()


@pytest.mark.parametrize("point", ["save_snapshots", "save_cursor"])
def test_poller_killed_after_enqueue_reemits_nothing_new(
    sandboxes: Sandboxes, capture: MakeCapture, redis_url: str, redis_client: redis.Redis, point: str
):
    cap = capture(poll_sources="servicetrade.job", poll_lease=1)
    cap.poll("servicetrade.job")
    patch_job(sandboxes, 35770, status="completed")
    patch_job(sandboxes, 35771, status="canceled")
    values = sandbox_values(sandboxes, redis_url, poll_sources="servicetrade.job", poll_lease=1)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, json.dumps(values), "servicetrade.job", point],
        capture_output=True,
        timeout=60,
    )
    assert killed.returncode == 9, killed.stderr.decode()
    first = [json.loads(raw) for raw in redis_client.lrange("test:enqueued", 0, -1)]
    assert {e["entity"]["id"] for e in first} == {35770, 35771}
    state = PipelineState(redis_client)
    assert all(state.claim_event(ChangeEvent.model_validate(e).id, "killed-run") for e in first)

    assert cap.poll("servicetrade.job").status == "locked"  # the dead run's lease is still on
    time.sleep(1.1)
    assert cap.poll("servicetrade.job").status == "ok"
    again = cap.take()
    if point == "save_snapshots":
        # Snapshots were not written: the same changes come again, with the same ids, and the
        # worker's claim drops them as duplicates.
        assert sorted(ChangeEvent.model_validate(e).id for e in again) == sorted(
            ChangeEvent.model_validate(e).id for e in first
        )
        assert not any(state.claim_event(ChangeEvent.model_validate(e).id, "rerun") for e in again)
    else:
        assert again == []  # snapshots were written: the re-read window is unchanged
    cap.poll("servicetrade.job")
    assert cap.take() == []


@pytest.mark.parametrize("system", ["servicetrade", "synchroteam"])
def test_equal_timestamps_across_a_page_boundary_lose_nothing(
    sandboxes: Sandboxes, capture: MakeCapture, system: str, synchroteam_client: SynchroteamClient
):
    # Every change in the same second, two records per page, and no overlap to hide behind.
    sandboxes.clocks[system].frozen = float(int(time.time()))
    cap = capture(poll_sources=f"{system}.job", poll_overlap=0)
    spec = cap.context.specs[f"{system}.job"]
    spec.options.update({"filters": {"limit": 2}} if system == "servicetrade" else {"page_size": 2})
    cap.poll(spec.name)
    cap.take()
    # The changes below must land in the very second the first run left its cursor at. ServiceTrade's
    # poller reads the server's (frozen) clock, Synchroteam's reads ours: when our clock crossed a second
    # between the freeze and that run, the cursor sat a second past the changes and nothing paged.
    cursor = cap.context.store.cursor(spec.name)
    assert cursor is not None
    sandboxes.clocks[system].frozen = float(cursor.position)
    sync = synchroteam_client

    def create(n: int) -> Any:  # a ServiceTrade job id (int) or a Synchroteam one (str)
        if system == "servicetrade":
            return httpx.post(
                sandboxes.control("servicetrade", "/entities/job"),
                json={"status": "new", "type": "repair", "description": f"same second {n}"},
                timeout=10,
            ).json()["id"]
        return sync.upsert_job({"myId": f"same-second-{n}", "customer": {"id": 35604}})["id"]

    made = [create(n) for n in range(3)]
    report = cap.poll(spec.name)
    assert report.requests >= 3  # it did page
    made += [create(n) for n in range(3, 5)]  # same second as the cursor, after the run
    cap.poll(spec.name)
    events = cap.take()
    assert sorted(e["entity"]["id"] for e in events) == sorted(made)
    assert {e["action"] for e in events} == {"created"}


@pytest.mark.parametrize("skew", [-20, 20])
def test_clock_skew_within_the_overlap_loses_nothing(
    sandboxes: Sandboxes, capture: MakeCapture, skew: int, synchroteam_client: SynchroteamClient
):
    for clock in sandboxes.clocks.values():
        clock.offset = skew
    names = ("servicetrade.job", "synchroteam.job", "synchroteam.customer")
    cap = capture(poll_sources=",".join(names), poll_overlap=30)
    for name in names:
        cap.poll(name)
    cap.take()
    sync = synchroteam_client
    patch_job(sandboxes, 35772, status="completed")
    sync.upsert_job({"id": "265_160719144323649", "description": "skewed"})
    sync.upsert_customer({"id": 35605, "contactPhone": "555-0123"})
    for name in names:
        cap.poll(name)
    events = sorted((e["source"], e["entity"]["type"], str(e["entity"]["id"])) for e in cap.take())
    assert events == [
        ("servicetrade", "job", "35772"),
        ("synchroteam", "customer", "35605"),
        ("synchroteam", "job", "265_160719144323649"),
    ]
    for name in names:
        cap.poll(name)
    assert cap.take() == []


def test_overlap_shorter_than_the_skew_is_what_loses_changes(
    sandboxes: Sandboxes, capture: MakeCapture, synchroteam_client: SynchroteamClient
):
    # The control case: customers carry no modification time, so their cursor is our clock.
    sandboxes.clocks["synchroteam"].offset = -20
    cap = capture(poll_sources="synchroteam.customer", poll_overlap=5)
    cap.poll("synchroteam.customer")
    sync = synchroteam_client
    sync.upsert_customer({"id": 35605, "contactPhone": "555-0124"})
    cap.poll("synchroteam.customer")
    assert cap.take() == []


def test_concurrent_runs_poll_once(sandboxes: Sandboxes, capture: MakeCapture):
    caps = [capture(poll_sources="servicetrade.job") for _ in range(2)]  # two processes' worth of state
    caps[0].poll("servicetrade.job")
    patch_job(sandboxes, 35773, status="completed")
    httpx.post(
        sandboxes.control("servicetrade", "/faults"),
        json={"latency_ms": 300, "count": 4, "path_prefix": "/api/job"},
        timeout=10,
    ).raise_for_status()
    reports: list[object] = []
    threads = [threading.Thread(target=lambda c=c: reports.append(c.poll("servicetrade.job"))) for c in caps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # The loser finds the lock held, or (if it came late) a run that just started.
    assert sorted(r.status for r in reports) in (["locked", "ok"], ["ok", "recent"])  # type: ignore[attr-defined]
    assert [e["entity"]["id"] for c in caps for e in c.take()] == [35773]


def test_a_stuck_pollers_lease_expires(sandboxes: Sandboxes, capture: MakeCapture, redis_client: redis.Redis):
    cap = capture(poll_sources="servicetrade.job")
    stuck = Lease(redis_client, cap.context.store.key("lock", "servicetrade.job"), seconds=0.5)
    assert stuck.acquire()  # and never released: its process hangs
    assert cap.poll("servicetrade.job").status == "locked"
    time.sleep(0.6)
    assert cap.poll("servicetrade.job").status == "ok"
    assert not stuck.extend()  # the stuck run learns it lost the lease


def test_a_5xx_fails_the_run_and_the_next_one_catches_up(sandboxes: Sandboxes, capture: MakeCapture):
    cap = capture(poll_sources="servicetrade.job")
    cap.poll("servicetrade.job")
    patch_job(sandboxes, 35774, status="completed")
    httpx.post(
        sandboxes.control("servicetrade", "/faults"),
        json={"status": 503, "count": 1, "path_prefix": "/api/job"},
        timeout=10,
    ).raise_for_status()
    failed = cap.poll("servicetrade.job")
    assert failed.status == "failed" and "503" in failed.error and cap.take() == []
    assert [e["entity"]["id"] for e in (cap.poll("servicetrade.job"), cap.take())[1]] == [35774]
