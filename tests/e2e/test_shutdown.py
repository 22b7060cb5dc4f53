"""SIGTERM to a worker in the middle of an action: it finishes or hands the work back; nothing is lost."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from fieldrelay_cli.devstack import SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER

pytestmark = pytest.mark.e2e

SAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "webhook-sample.json").read_text())


def jobs(pipeline) -> int:
    listed = httpx.get(
        pipeline.url(pipeline.config.synchroteam_port, "/api/v3/job/list"),
        params={"myId": "st-job-35769"},
        auth=(SANDBOX_USER, SANDBOX_SYNCHROTEAM_KEY),
        timeout=10,
    )
    return int(listed.json()["recordsTotal"])


@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_sigterm_mid_action_loses_nothing(pipeline, sig):
    pipeline.reset_sandboxes()
    pipeline.redis.flushdb()
    stm = pipeline.url(pipeline.config.synchroteam_port, "/_sandbox/faults")
    httpx.post(stm, json={"latency_ms": 3000, "path_prefix": "/api/v3/job/send", "count": 1}, timeout=10)
    assert pipeline.post_webhook(SAMPLE).status_code == 200
    # Wait until the slow job/send is in flight (its action task is unacked), then stop the worker.
    pipeline.wait_until(
        lambda: (
            pipeline.redis.hlen("unacked") > 0
            and any(r["path"].endswith("/customer/send") for r in pipeline.requests("synchroteam"))
        ),
        what="job/send in flight",
    )
    time.sleep(0.5)
    worker = pipeline.stack.procs["worker"]
    worker.send_signal(sig)
    worker.wait(30)
    assert worker.returncode is not None

    pipeline.stack.procs.pop("worker")
    pipeline.stack.start_worker()  # a fresh worker picks up whatever was handed back
    pipeline.wait_until(lambda: jobs(pipeline) == 1, what="the job in Synchroteam")
    pipeline.wait_idle()
    assert jobs(pipeline) == 1
    httpx.delete(stm, timeout=10)
