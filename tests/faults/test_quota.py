"""The daily quota runs out mid-run (a compressed 12 s "day" on both sides): Synchroteam actions pause until
the reset, then resume; nothing is dropped and exactly one alert reaches Sentry."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from tests.faults.conftest import FaultStack, job_sends, webhook
from tests.sentry_server import SentryCapture

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PERIOD = 12.0  # seconds per quota "day", counted from the epoch like UTC midnights
QUOTA = 20
EVENTS = 30  # more than one day's quota, less than two: exactly one exhaustion


def sent_ids(handle: FaultStack) -> set[str]:
    return {s["json"]["myId"] for s in job_sends(handle.requests()) if s["status"] == 200}


def traces(handle: FaultStack) -> list[dict]:
    return [
        orjson.loads(raw)
        for key in handle.redis.scan_iter("fieldrelay:trace:*")
        for raw in handle.redis.lrange(key, 0, -1)
    ]


@pytest.mark.timeout(120)
def test_quota_exhaustion_pauses_then_resumes_with_one_alert(fault_stack):
    with SentryCapture() as sentry:
        handle = fault_stack(
            synchroteam_options={
                "rate_limit": 100_000,
                "window_seconds": 60.0,
                "daily_quota": QUOTA,
                "quota_period": PERIOD,
            },
            extra_env={
                "FIELDRELAY_SYNCHROTEAM_RATE_LIMIT": "100000",
                "FIELDRELAY_SYNCHROTEAM_RATE_WINDOW": "60",
                "FIELDRELAY_SYNCHROTEAM_QUOTA_PERIOD": str(PERIOD),
                "FIELDRELAY_SENTRY_DSN": sentry.dsn,
                "FIELDRELAY_SENTRY_ENVIRONMENT": "faults",
            },
        )
        if time.time() % PERIOD > 4.0:  # leave the first day time enough to use its whole quota
            time.sleep(PERIOD - time.time() % PERIOD + 0.2)
        ids = list(range(900_000, 900_000 + EVENTS))
        assert handle.post(webhook(ids, 1_760_000_000, "quota-1")).status_code == 200
        expected = {f"st-job-{i}" for i in ids}
        # Watched in the request log: reading jobs through the API would spend the quota under test.
        handle.wait_until(lambda: expected <= sent_ids(handle), 3 * PERIOD, "every job sent", every=1.0)
        handle.wait_idle(timeout=30)
        handle.wait_until(lambda: len(sentry.events()) >= 1, 10, "the alert")
        time.sleep(1.0)  # a second alert, if any, would arrive by now
        alerts = sentry.events()
        entries = handle.requests()

    sends = [s for s in job_sends(entries) if s["status"] == 200]
    refused = [s for s in job_sends(entries) if s["status"] == 429]
    steps = traces(handle)
    days = Counter(int(step["at"] // PERIOD) for step in steps if step["step"] == "action.succeeded")
    deferred = Counter(step.get("reason") for step in steps if step["step"] == "action.deferred")
    print(
        f"\nFAULT-FIGURES quota={QUOTA} per {PERIOD:.0f}s events={EVENTS} successes_per_day={sorted(days.items())} "
        f"429s={len(refused)} deferrals={dict(deferred)} alerts={len(alerts)}"
    )

    assert Counter(s["json"]["myId"] for s in sends) == Counter(expected)  # each job sent once, none dropped
    assert set(handle.jobs()) >= expected  # one list call, well within the second day's quota
    assert sorted(days.values()) == [EVENTS - QUOTA, QUOTA]  # the first day's quota used up, the rest after the reset
    assert deferred["quota"] >= 1
    assert handle.redis.hlen("fieldrelay:dlq:entry") == 0
    [alert] = alerts
    assert alert["tags"]["alert"] == "quota"
    assert alert["tags"]["target"] == "synchroteam"
