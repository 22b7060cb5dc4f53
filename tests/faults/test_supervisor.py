"""`fieldrelay worker` under SIGKILL: a pool child killed while Celery starts makes Celery give up ("Could not
start worker processes", exit 1), and a Celery main process killed in the middle of a task strands what it
held. The supervisor starts Celery again after both, puts back what the dead one held at once, counts each
restart, and exits only when it is told to."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from fieldrelay.consumers import held_messages
from tests.faults.conftest import FaultStack, unpaced, webhook

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

RECOVERY = 30.0  # the bound: stranded work runs again within 30 s of its worker's death


def celery_main(handle: FaultStack, name: str) -> psutil.Process | None:
    """The Celery process the supervisor runs now, if any."""
    children = psutil.Process(handle.stack.procs[name].pid).children()
    return children[0] if children else None


def acting(handle: FaultStack) -> bool:
    """An action task is held by a live worker (its main process took it, a pool child runs it)."""
    return any(h.task == "fieldrelay.run_action" and h.state == "held" for h in held_messages(handle.redis))


def sends(handle: FaultStack) -> list[dict[str, object]]:
    return [r for r in handle.requests() if r["path"] == "/api/v3/job/send"]


@pytest.mark.timeout(240)
def test_the_supervisor_restarts_celery_after_a_start_up_kill_and_a_mid_task_kill(fault_stack):
    handle = fault_stack(workers=0, **unpaced())
    handle.stack.start_worker("worker1", supervised=True, wait=False)
    log = handle.config.log_dir / "worker1.log"

    # 1. A pool child dies while Celery starts its pool.
    deadline, victim = time.monotonic() + 60, None
    while victim is None and time.monotonic() < deadline:
        try:  # the tree changes under this loop: a process found a moment ago may be gone
            main = celery_main(handle, "worker1")
            pool = main.children() if main is not None else []
        except psutil.NoSuchProcess:
            pool = []
        if pool:
            victim = pool[0].pid
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.005)
    assert victim is not None, "no pool child appeared"
    handle.wait_until(lambda: handle.counter("fieldrelay_worker_restarts_total"), 60, "a restart", every=0.2)
    assert "Could not start worker processes" in log.read_text()
    assert handle.counter("fieldrelay_worker_restarts_total") == {'["exit 1"]': 1}  # Celery's code, propagated

    # 2. The Celery main process dies while its pool child waits on Synchroteam.
    handle.faults("POST", {"latency_ms": 4000, "path_prefix": "/api/v3/job/send", "count": 1})
    assert handle.post(webhook([910_001], 1_760_000_000, "mid-task")).status_code == 200
    handle.wait_until(lambda: acting(handle), 60, "the action in flight")
    time.sleep(1.0)  # inside the 4 s call
    main = celery_main(handle, "worker1")
    assert main is not None
    os.kill(main.pid, signal.SIGKILL)
    killed = time.monotonic()
    # The call in flight still lands (the sandbox finishes it); the redelivered task makes the second one.
    handle.wait_until(lambda: len(sends(handle)) == 2, RECOVERY, "the redelivered task's call", every=0.2)
    recovered = time.monotonic() - killed
    handle.wait_idle(timeout=RECOVERY)
    restarts = handle.counter("fieldrelay_worker_restarts_total")
    restored = handle.counter("fieldrelay_messages_restored_total")
    print(f"\nFAULT-FIGURES supervisor restarts={restarts} restored={restored} recovered_after_kill={recovered:.1f}s")
    assert restarts == {'["exit 1"]': 1, '["SIGKILL"]': 1}
    assert restored.get('["supervisor"]', 0) >= 1  # put back by the supervisor, not by a lease running out
    assert handle.jobs()["st-job-910001"] == 1

    # 3. Only the supervisor's own SIGTERM stops it: Celery shuts down warm, and nothing starts again.
    supervisor = handle.stack.procs["worker1"]
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0
    assert handle.counter("fieldrelay_worker_restarts_total") == restarts
    assert "starting it again" not in log.read_text().rsplit("SIGKILL", 1)[1]
