"""ServiceTrade's documented webhook, delivered three times in shuffled order, makes exactly one Synchroteam job."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import httpx
import pytest

from fieldrelay_cli.devstack import SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER

pytestmark = pytest.mark.e2e

# The doc's sample with job 35769's uri corrected: the doc points it at /invoice/35789.
SAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "webhook-sample.json").read_text())


def shuffled(message: dict, rng: random.Random) -> dict:
    copied = copy.deepcopy(message)
    rng.shuffle(copied["data"])
    return copied


def test_sample_webhook_three_times_makes_one_job(pipeline):
    pipeline.reset_sandboxes()
    rng = random.Random(7)
    deliveries = [shuffled(SAMPLE, rng) for _ in range(3)]
    for message in deliveries:
        assert pipeline.post_webhook(message).status_code == 200

    def job_sends() -> list[dict]:
        return [
            r
            for r in pipeline.requests("synchroteam")
            if r["path"].endswith("/job/send") and (r["json"] or {}).get("myId") == "st-job-35769"
        ]

    pipeline.wait_until(lambda: len(job_sends()) >= 1, what="job/send for st-job-35769")
    pipeline.wait_idle()

    [send] = job_sends()
    assert send["status"] == 200
    assert send["method"] == "POST"
    assert send["auth_identity"] == {"domain": SANDBOX_USER, "key_valid": True}
    assert send["json"]["description"] == "Job 35769"
    assert send["json"]["customer"] == {"myId": "st-company-39"}

    customers = [r for r in pipeline.requests("synchroteam") if r["path"].endswith("/customer/send")]
    assert [c["json"]["myId"] for c in customers] == ["st-company-39"]
    assert customers[0]["json"]["name"] == "Big Bang Burger Bar"

    listed = httpx.get(
        pipeline.url(pipeline.config.synchroteam_port, "/api/v3/job/list"),
        params={"myId": "st-job-35769"},
        auth=(SANDBOX_USER, SANDBOX_SYNCHROTEAM_KEY),
        timeout=10,
    ).json()
    assert listed["recordsTotal"] == 1
    assert listed["data"][0]["customer"]["myId"] == "st-company-39"

    # Only the job whose rule needed it was fetched, once per evaluation and action.
    fetched = [r["path"] for r in pipeline.requests("servicetrade") if r["method"] == "GET"]
    assert set(fetched) == {"/api/job/35769"}
