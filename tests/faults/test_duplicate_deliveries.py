"""ServiceTrade delivers every message 3 times, shuffled, for a series of changes to the same jobs:
one effect per change, stale changes skipped with a reason, and Synchroteam ends on the newest state."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fieldrelay_cli.devstack import SANDBOX_PASSWORD, SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER
from tests.faults.conftest import CUSTOMER, TOKEN, FaultStack, job_sends
from workers.connectors.servicetrade import ServiceTradeClient

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

JOBS = (35770, 35771, 35772)  # seeded, all `scheduled`
IN_ORDER = ("completed", "canceled", "new", "scheduled")  # one round at a time: every change has its effect
HELD = ("bidding", "invoiced", "closed")  # held, then delivered all at once, shuffled across changes
# The description carries the entity's status as read when acting, then the change that triggered it.
RULES = """
rules:
  - name: job-status-to-synchroteam
    when: {source: servicetrade, entity: job, action: updated, changed: {status: true}}
    then:
      - synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "{{ entity.status }}|{{ changes.status.new }}"
          customer: {myId: "CUSTOMER"}
""".replace("CUSTOMER", CUSTOMER)


def control(handle: FaultStack, method: str, path: str, **kwargs: Any) -> Any:
    base = handle.config.base_url(handle.config.servicetrade_port)
    response = httpx.request(method, f"{base}/_sandbox{path}", timeout=10, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def change_round(handle: FaultStack, status: str) -> None:
    """Set every job's status in the next whole second, so each round has its own entity timestamp."""
    time.sleep(1.0 - time.time() % 1.0 + 0.02)
    for job in JOBS:
        control(handle, "PATCH", f"/entities/job/{job}", json={"status": status})


def delivered(handle: FaultStack) -> int:
    return sum(1 for d in control(handle, "GET", "/webhook/deliveries") if d["outcome"] == "delivered")


def trace_steps(handle: FaultStack) -> Counter[str]:
    steps: Counter[str] = Counter()
    for key in handle.redis.scan_iter("fieldrelay:trace:*"):
        steps.update(
            f"{step}"
            for step in (
                (entry.decode() if isinstance(entry, bytes) else entry).split('"step":"', 1)[1].split('"', 1)[0]
                for entry in handle.redis.lrange(key, 0, -1)
            )
        )
    return steps


@pytest.mark.timeout(150)
def test_triple_shuffled_deliveries_make_one_effect_per_change_and_end_on_the_newest(fault_stack):
    handle = fault_stack(RULES)
    servicetrade = ServiceTradeClient(
        handle.config.base_url(handle.config.servicetrade_port) + "/api", SANDBOX_USER, SecretStr(SANDBOX_PASSWORD)
    )
    try:
        servicetrade.create_webhook(
            hook_url=f"{handle.receiver}/webhooks/servicetrade/{TOKEN}", include_changesets=True
        )
    finally:
        servicetrade.close()
    control(handle, "PUT", "/webhook/controls", json={"duplicates": 3, "shuffle": True, "seed": 11})

    for n, status in enumerate(IN_ORDER, start=1):
        change_round(handle, status)
        handle.wait_until(lambda n=n: delivered(handle) >= 3 * len(JOBS) * n, 30, f"round {n}'s deliveries")
        handle.wait_idle(timeout=30, quiet=0.5)

    control(handle, "PUT", "/webhook/controls", json={"hold": True})
    for status in HELD:
        change_round(handle, status)
    control(handle, "PUT", "/webhook/controls", json={"hold": False})
    assert control(handle, "POST", "/webhook/flush")["released"] == len(JOBS) * len(HELD)
    total = 3 * len(JOBS) * (len(IN_ORDER) + len(HELD))
    handle.wait_until(lambda: delivered(handle) >= total, 30, "the held deliveries")
    handle.wait_idle(timeout=30)

    sends = [s for s in job_sends(handle.requests()) if s["status"] == 200]
    effects = Counter((s["json"]["myId"], s["json"]["description"].split("|")[1]) for s in sends)
    steps = trace_steps(handle)
    changes = len(JOBS) * (len(IN_ORDER) + len(HELD))
    print(
        f"\nFAULT-FIGURES deliveries={delivered(handle)} changes={changes} effects={len(sends)} "
        f"duplicates_dropped={steps['event.duplicate']} stale_skipped={steps['event.stale']}"
    )

    assert delivered(handle) == total  # every copy of every message reached the receiver and got 200
    assert max(effects.values()) == 1  # no change had two effects
    for job in JOBS:  # in order: exactly one effect per change, in the order of the changes
        mine = [s["json"]["description"] for s in sends if s["json"]["myId"] == f"st-job-{job}"]
        assert mine[: len(IN_ORDER)] == [f"{status}|{status}" for status in IN_ORDER]
    # Shuffled across changes: a change that arrives after a newer one is skipped as stale, with its reason.
    held_effects = sum(1 for (_, change) in effects if change in HELD)
    assert held_effects + steps["event.stale"] == len(JOBS) * len(HELD)
    assert steps["event.duplicate"] == total - changes  # two of every three copies were dropped
    final = {job["myId"]: job["description"].split("|")[0] for job in synchroteam_jobs(handle)}
    assert final == {f"st-job-{job}": HELD[-1] for job in JOBS}


def synchroteam_jobs(handle: FaultStack) -> list[dict[str, Any]]:
    body = httpx.get(
        f"{handle.synchroteam}/api/v3/job/list",
        params={"pageSize": 100},
        auth=(SANDBOX_USER, SANDBOX_SYNCHROTEAM_KEY),
        timeout=10,
    ).json()
    return [job for job in body["data"] if str(job.get("myId", "")).startswith("st-job-35")]
