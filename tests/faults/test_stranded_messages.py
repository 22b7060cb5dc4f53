"""Two workers, as on two hosts, with nobody to supervise them: the live one never takes what the busy one
holds, however long it holds it; once the busy one's Celery main process is killed, its lease runs out and
the live one puts back what it held, well within the 30 s the issue allows."""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest

from fieldrelay.consumers import LEASE, held_messages
from fieldrelay.metrics import render
from tests.faults.conftest import FaultStack, unpaced, webhook

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RECOVERY = 30.0
CALL_MS = 14_000  # longer than a lease: held that long by a live worker, it must still not be taken


def busy_worker(handle: FaultStack) -> tuple[str, str]:
    """(worker name, consumer) of the worker whose pool runs the action."""
    [held] = [h for h in held_messages(handle.redis) if h.task == "fieldrelay.run_action"]
    assert held.state == "held" and held.consumer is not None
    pid = int(held.consumer.split(":")[1])
    name = next(n for n, p in handle.stack.procs.items() if p.pid == pid)
    return name, held.consumer


@pytest.mark.timeout(240)
def test_a_live_workers_message_is_never_taken_and_a_dead_ones_comes_back_after_its_lease(fault_stack):
    handle = fault_stack(workers=2, **unpaced(extra_env={"FIELDRELAY_HTTP_TIMEOUT": "30"}))
    handle.faults("POST", {"latency_ms": CALL_MS, "path_prefix": "/api/v3/job/send", "count": 1})
    assert handle.post(webhook([920_001], 1_760_000_000, "long")).status_code == 200
    handle.wait_until(lambda: any(h.task == "fieldrelay.run_action" for h in held_messages(handle.redis)), 60, "it")
    name, consumer = busy_worker(handle)

    time.sleep(LEASE + 2)  # both workers swept several times meanwhile; the call is still in flight
    assert [h.state for h in held_messages(handle.redis) if h.consumer == consumer] == ["held"]
    assert not [r for r in handle.requests() if r["path"] == "/api/v3/job/send" and r.get("status")]

    os.kill(handle.stack.procs[name].pid, signal.SIGKILL)  # the Celery main process; its pool dies with it
    killed = time.monotonic()
    handle.wait_until(
        lambda: len([r for r in handle.requests() if r["path"] == "/api/v3/job/send"]) >= 2,
        RECOVERY,
        "the other worker's run of the stranded action",
        every=0.2,
    )
    recovered = time.monotonic() - killed
    handle.wait_idle(timeout=RECOVERY)
    scrape = render(handle.redis).decode()
    print(f"\nFAULT-FIGURES lease_recovery={recovered:.1f}s lease={LEASE:.0f}s")
    assert recovered < RECOVERY
    assert 'fieldrelay_messages_restored_total{by="worker"} 1.0' in scrape
    assert 'fieldrelay_unacked_messages{state="orphaned"} 0.0' in scrape
    assert handle.jobs()["st-job-920001"] == 1
    assert not psutil.pid_exists(handle.stack.procs[name].pid) or handle.stack.procs[name].poll() is not None
    with httpx.Client(timeout=10) as client:  # the console's overview shows nothing stranded any more
        page = client.get(
            f"{handle.receiver}/console/", headers={"Authorization": f"Bearer {handle.config.console_token}"}
        )
        assert page.status_code == 200 and "Nothing is stranded" in page.text
