"""Kill -9 prefork pool children at random while 2,000 events fan out to Synchroteam: nothing is lost,
and every job exists exactly once (a kill between the HTTP call and the ledger write repeats an upsert)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

import httpx
import psutil
import pytest

from tests.faults.conftest import FaultStack, batches, job_sends, unpaced, webhook

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EVENTS = 2000
PER_WEBHOOK = 50
MIN_KILLS = 20
MAX_KILLS = 30  # each kill costs a respawn; more would only stretch the run on a 2-core machine


class Killer(threading.Thread):
    """SIGKILLs a random pool child of the worker's main process every 0.2-0.5 s while work is pending.

    (Every 0.3-0.9 s gave 30 kills when the pipeline took longer; once it did the 2,000 events in 19 s, 21,
    one over the minimum: the kills are paced to the work, not the work to the kills.)"""

    def __init__(self, handle: FaultStack, worker: str, seed: int = 6) -> None:
        super().__init__(name="child-killer", daemon=True)
        self.handle = handle
        self.main = psutil.Process(handle.stack.procs[worker].pid)
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.kills: list[int] = []

    def run(self) -> None:
        while not self.stopping.wait(self.rng.uniform(0.2, 0.5)):
            if len(self.kills) >= MAX_KILLS:
                return
            children = self.main.children()
            if not children or not self.handle.busy():
                continue
            victim = self.rng.choice(children)
            try:
                os.kill(victim.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills.append(victim.pid)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


@pytest.mark.timeout(300)
def test_random_child_kills_lose_nothing_and_duplicate_no_job(fault_stack):
    handle = fault_stack(**unpaced(worker_concurrency=2))
    ids = list(range(500_000, 500_000 + EVENTS))
    killer = Killer(handle, "worker1")
    started = time.monotonic()
    killer.start()
    try:
        with httpx.Client(timeout=10) as client:
            for n, chunk in enumerate(batches(ids, PER_WEBHOOK)):
                assert handle.post(webhook(chunk, 1_760_000_000, f"kill-{n}"), client).status_code == 200
        # Kills go on, spread over the whole run, until the pipeline has been idle for a while.
        handle.wait_idle(timeout=250, quiet=3.0)
    finally:
        killer.stop()
    handle.wait_idle(timeout=60, quiet=2.0)
    elapsed = time.monotonic() - started
    log = (handle.config.log_dir / "worker1.log").read_text(errors="replace")
    interrupted = log.count("Task handler raised error: WorkerLostError")
    # A child killed inside an action leaves that step's lock (fieldrelay/state.py lock_step) to its 120 s lease.
    busy = log.count('"reason":"busy"')

    expected = {f"st-job-{i}" for i in ids}
    jobs = handle.jobs()
    sends = [s for s in job_sends(handle.requests()) if s["status"] == 200]
    per_id = Counter(s["json"]["myId"] for s in sends)
    repeated = {my_id: n for my_id, n in per_id.items() if n > 1}
    print(
        f"\nFAULT-FIGURES kills={len(killer.kills)} tasks_interrupted={interrupted} events={EVENTS} "
        f"sends={len(sends)} "
        f"ids_sent_more_than_once={len(repeated)} extra_sends={sum(n - 1 for n in repeated.values())} "
        f"busy_deferrals={busy} elapsed={elapsed:.1f}s"
    )

    assert len(killer.kills) >= MIN_KILLS
    assert interrupted > 0  # the kills hit tasks mid-flight, not only idle children
    assert expected <= set(jobs), f"missing jobs: {sorted(expected - set(jobs))[:10]}"
    assert {my_id: n for my_id, n in jobs.items() if my_id in expected and n != 1} == {}
    assert set(per_id) == expected
    # A repeat only happens where a child died between Synchroteam's answer and the ledger write.
    assert len(repeated) <= len(killer.kills)
