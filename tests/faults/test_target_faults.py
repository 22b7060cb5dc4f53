"""Injected 5xx, dropped connections and latency past the HTTP timeout are retried to success; a failure
that outlasts retrying (a permanent 4xx here) is dead-lettered with one alert, and `fieldrelay dlq retry`
completes it once the fault is gone."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.faults.conftest import FaultStack, job_sends, unpaced, webhook
from tests.sentry_server import SentryCapture

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SEND = "/api/v3/job/send"
FIELDRELAY = Path(sys.executable).parent / "fieldrelay"  # the console script, as ops run it


def steps_of(handle: FaultStack, name: str) -> list[dict]:
    return [
        entry
        for key in handle.redis.scan_iter("fieldrelay:trace:*")
        for entry in map(orjson.loads, handle.redis.lrange(key, 0, -1))
        if entry["step"] == name
    ]


@pytest.mark.timeout(120)
def test_transient_faults_are_retried_until_they_succeed(fault_stack):
    handle = fault_stack(**unpaced(extra_env={"FIELDRELAY_HTTP_TIMEOUT": "1"}))
    # The first matching fault applies and counts down: a 503, then a cut connection, then 1.5 s of latency
    # (past the 1 s timeout: the sandbox applies that write after the client gave up on it).
    handle.faults(
        "POST",
        [
            {"status": 503, "count": 1, "path_prefix": SEND},
            {"drop_connection": True, "count": 1, "path_prefix": SEND},
            {"latency_ms": 1500, "count": 1, "path_prefix": SEND},
        ],
    )
    ids = [910_001, 910_002, 910_003]
    assert handle.post(webhook(ids, 1_760_000_000, "faults-1")).status_code == 200
    expected = {f"st-job-{i}" for i in ids}
    handle.wait_until(lambda: expected <= set(handle.jobs()), 60, "every job")
    handle.wait_idle(timeout=60)

    sends = job_sends(handle.requests())
    retries = steps_of(handle, "action.retry")
    print(
        f"\nFAULT-FIGURES job_sends={[s['status'] for s in sends]} retries={len(retries)} "
        f"errors={sorted(r['error'].split(': ', 1)[-1][:40] for r in retries)}"
    )

    assert {i: n for i, n in handle.jobs().items() if i in expected and n != 1} == {}
    assert len(retries) == 3  # one per injected fault, no more
    kinds = sorted(("503" in r["error"], "RemoteProtocolError" in r["error"], "timeout" in r["error"]) for r in retries)
    assert kinds == [(False, False, True), (False, True, False), (True, False, False)]
    assert len(steps_of(handle, "action.succeeded")) == len(ids)
    assert handle.faults_left() == []
    assert handle.redis.hlen("fieldrelay:dlq:entry") == 0
    assert Counter(s["status"] for s in sends)[503] == 1


@pytest.mark.timeout(120)
def test_failure_for_good_is_dead_lettered_alerted_and_completed_by_dlq_retry(fault_stack):
    with SentryCapture() as sentry:
        handle = fault_stack(
            **unpaced(extra_env={"FIELDRELAY_SENTRY_DSN": sentry.dsn, "FIELDRELAY_SENTRY_ENVIRONMENT": "faults"})
        )
        handle.faults(
            "POST",
            {
                "status": 400,
                "path_prefix": SEND,
                "body": {"error": "Bad Request", "message": "sandbox refuses every job"},
            },
        )
        assert handle.post(webhook([920_001], 1_760_000_000, "dlq-1")).status_code == 200
        handle.wait_until(
            lambda: handle.redis.hlen("fieldrelay:dlq:entry") == 1 and len(sentry.events()) == 1,
            60,
            "the dead letter and its alert",
        )
        [dead] = [orjson.loads(v) for v in handle.redis.hvals("fieldrelay:dlq:entry")]
        [alert] = sentry.events()

        handle.faults("DELETE")
        retried = subprocess.run(
            [str(FIELDRELAY), "dlq", "retry", "--all", "--target", "synchroteam"],
            env=handle.config.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        handle.wait_until(lambda: "st-job-920001" in handle.jobs(), 60, "the retried job")
        handle.wait_idle(timeout=30)
        alerts_after = len(sentry.events())

    print(
        f"\nFAULT-FIGURES dead_letter_attempts={dead['attempts']} alerts={alerts_after} "
        f"dlq_retry={retried.stdout.strip()!r}"
    )
    assert retried.returncode == 0, retried.stderr
    assert dead["target"] == "synchroteam" and dead["attempts"] == 1 and "400" in dead["error"]
    assert alert["tags"]["target"] == "synchroteam" and alert["tags"]["event_id"] == dead["event_id"]
    assert alerts_after == 1  # the replay succeeded: no second alert
    assert handle.jobs()["st-job-920001"] == 1
    assert handle.redis.hlen("fieldrelay:dlq:entry") == 0
    steps = [
        entry["step"] for entry in map(orjson.loads, handle.redis.lrange(f"fieldrelay:trace:{dead['event_id']}", 0, -1))
    ]
    assert steps[-3:] == ["dlq.retried", "action.started", "action.succeeded"]


@pytest.mark.timeout(120)
def test_a_5xx_that_outlasts_the_retries_is_dead_lettered_then_completed_by_dlq_retry(fault_stack):
    with SentryCapture() as sentry:
        handle = fault_stack(
            **unpaced(
                extra_env={
                    "FIELDRELAY_SENTRY_DSN": sentry.dsn,
                    "FIELDRELAY_SENTRY_ENVIRONMENT": "faults",
                    "FIELDRELAY_ACTION_MAX_RETRIES": "2",
                    "FIELDRELAY_RETRY_MAX_BACKOFF": "0.5",
                }
            )
        )
        handle.faults("POST", {"status": 503, "path_prefix": SEND})  # no count: until removed
        assert handle.post(webhook([930_001], 1_760_000_000, "dlq-5xx")).status_code == 200
        handle.wait_until(
            lambda: handle.redis.hlen("fieldrelay:dlq:entry") == 1 and len(sentry.events()) == 1,
            60,
            "the dead letter and its alert",
        )
        [dead] = [orjson.loads(v) for v in handle.redis.hvals("fieldrelay:dlq:entry")]
        retries = steps_of(handle, "action.retry")

        handle.faults("DELETE")
        retried = subprocess.run(
            [str(FIELDRELAY), "dlq", "retry", "--all"],
            env=handle.config.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        handle.wait_until(lambda: "st-job-930001" in handle.jobs(), 60, "the retried job")
        handle.wait_idle(timeout=30)
        alerts_after = len(sentry.events())

    print(f"\nFAULT-FIGURES 5xx_attempts={dead['attempts']} retries={len(retries)} alerts={alerts_after}")
    assert retried.returncode == 0, retried.stderr
    assert dead["attempts"] == 3 and "503" in dead["error"]  # the first try and 2 retries
    assert [r["attempt"] for r in retries] == [1, 2]
    assert all(r["seconds"] <= 0.5 for r in retries)  # capped backoff
    assert alerts_after == 1
    assert handle.jobs()["st-job-930001"] == 1
