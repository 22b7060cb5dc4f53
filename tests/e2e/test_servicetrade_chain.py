"""A ServiceTrade sandbox webhook, delivered 3 times shuffled, makes one customer -> site -> job chain in
Synchroteam and one Synergist activity; the same change delivered again makes nothing new."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fieldrelay_cli.devstack import SANDBOX_PASSWORD, SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER
from tests.e2e.conftest import Pipeline
from tests.stacks import running_stack
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synchroteam import SynchroteamClient
from workers.connectors.synergist import SynergistClient
from workers.delayed import DelayedTasks

pytestmark = pytest.mark.e2e

TOKEN = "chain-token"
JOB_ID = 35770  # seeded: scheduled, customer 40 "Salmon Ella's Seafood Shack", location 36
RULES = """
rules:
  - name: completed-job-chain
    when:
      source: servicetrade
      entity: job
      action: updated
      changed:
        status: {to: completed}
    then:
      - id: customer
        synchroteam.customer.upsert:
          myId: "st-company-{{ entity.customer.id }}"
          name: "{{ entity.customer.name }}"
      - id: site
        synchroteam.site.upsert:
          myId: "st-location-{{ entity.location.id }}"
          name: "{{ entity.location.name }}"
          addressCity: "{{ entity.location.address.city }}"
          customer: {myId: "{{ steps.customer.myId }}"}
      - id: job
        synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "{{ entity.description }}"
          customer: {myId: "{{ steps.customer.myId }}"}
          site: {myId: "{{ steps.site.myId }}"}
      - id: activity
        synergist.activity.create:
          activityActivitytypeCode: Notes
          activityClientCode: "1/F667"
          activitySubject: "ServiceTrade job {{ entity.number }} completed"
"""


@pytest.fixture(scope="module")
def stack(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    data = tmp_path_factory.mktemp("chain-stack")
    rules_dir = data / "rules"
    rules_dir.mkdir()
    (rules_dir / "chain.yaml").write_text(RULES)
    with running_stack(redis_server, data, webhook_tokens=TOKEN, rules_dir=rules_dir) as running:
        handle = Pipeline(running, redis_server)
        try:
            yield handle
        finally:
            handle.redis.close()


def settle(stack: Pipeline) -> None:
    """Nothing queued, unacked or waiting in the delayed queue (a paced or deferred action) for a while."""
    delayed = DelayedTasks(stack.redis)
    stack.wait_until(lambda: not delayed.pending(), what="the delayed queue to empty")
    stack.wait_idle()
    assert delayed.pending() == []


def control(stack: Pipeline, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method, stack.url(stack.config.servicetrade_port, f"/_sandbox{path}"), timeout=10, **kwargs
    )
    response.raise_for_status()
    return response.json() if response.content else None


def sends(stack: Pipeline, kind: str) -> list[dict[str, Any]]:
    return [r for r in stack.requests("synchroteam") if r["method"] == "POST" and r["path"] == f"/api/v3/{kind}/send"]


def synergist_writes(stack: Pipeline) -> list[str]:
    return [r["query"]["action"] for r in stack.requests("synergist") if r["query"].get("action")]


def activities(synergist: SynergistClient) -> list[str]:
    """Subjects of the activities on the job's Synergist client (none are seeded)."""
    return [a["activitySubject"] for a in synergist.iter_activities(Client="1/F667")]


def test_three_shuffled_deliveries_make_one_chain_and_a_repeat_makes_nothing(stack: Pipeline):
    stack.reset_sandboxes()
    servicetrade = ServiceTradeClient(
        stack.config.base_url(stack.config.servicetrade_port) + "/api", SANDBOX_USER, SecretStr(SANDBOX_PASSWORD)
    )
    synchroteam = SynchroteamClient(
        stack.config.base_url(stack.config.synchroteam_port), SANDBOX_USER, SecretStr(SANDBOX_SYNCHROTEAM_KEY)
    )
    synergist = SynergistClient(
        stack.config.base_url(stack.config.synergist_port), SANDBOX_USER, SecretStr(SANDBOX_PASSWORD), "1"
    )
    try:
        hook = servicetrade.create_webhook(
            hook_url=f"{stack.receiver}/webhooks/servicetrade/{TOKEN}", include_changesets=True
        )
        assert [h["id"] for h in servicetrade.list_webhooks() if h["confirmed"]] == [hook["id"]]
        control(stack, "PUT", "/webhook/controls", json={"duplicates": 3, "shuffle": True, "seed": 7})

        servicetrade.update_job(JOB_ID, {"status": "completed"})

        stack.wait_until(lambda: len(control(stack, "GET", "/webhook/deliveries")) >= 3, what="3 deliveries")
        stack.wait_until(lambda: "create" in synergist_writes(stack), timeout=60, what="the Synergist activity")
        settle(stack)

        deliveries = control(stack, "GET", "/webhook/deliveries")
        assert [(d["attempt"], d["outcome"], d["status"]) for d in deliveries] == [(1, "delivered", 200)] * 3
        assert len({d["messageId"] for d in deliveries}) == 1
        [item] = deliveries[0]["message"]["data"]
        assert item["changeset"] == [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}]

        # One send per step: the three deliveries carry one change, so one event runs the rule once.
        assert [s["json"]["myId"] for s in sends(stack, "customer")] == ["st-company-40"]
        assert [s["json"]["myId"] for s in sends(stack, "site")] == ["st-location-36"]
        assert [s["json"] for s in sends(stack, "job")] == [
            {
                "myId": f"st-job-{JOB_ID}",
                "description": "Walk-in cooler alarm sounding.",
                "customer": {"myId": "st-company-40"},
                "site": {"myId": "st-location-36"},
            }
        ]
        assert synergist_writes(stack) == ["create"]
        assert activities(synergist) == ["ServiceTrade job 112202 completed"]

        # customer/list and site/list document no myId filter: list them all and pick.
        customers = [c for c in synchroteam.iter_list("customer") if c["myId"] == "st-company-40"]
        sites: list[Mapping[str, Any]] = [s for s in synchroteam.iter_list("site") if s["myId"] == "st-location-36"]
        jobs: list[Mapping[str, Any]] = list(synchroteam.iter_list("job", myId=f"st-job-{JOB_ID}"))
        assert [c["id"] for c in customers] == [35605]  # the seeded customer with that myId, updated
        assert [(s["name"], s["customer"]["myId"]) for s in sites] == [("Salmon Ella's Seafood Shack", "st-company-40")]
        assert [(j["customer"]["myId"], j["site"]["myId"]) for j in jobs] == [("st-company-40", "st-location-36")]

        # The same change again, in a new message with three deliveries: claimed already, nothing new.
        control(stack, "DELETE", "/webhook/deliveries")
        emitted = control(
            stack,
            "POST",
            "/webhook/emit",
            json={
                "data": [
                    {
                        "action": "updated",
                        "type": "job",
                        "id": JOB_ID,
                        "timestamp": item["timestamp"],
                        "changeset": item["changeset"],
                    }
                ]
            },
        )
        assert len(emitted["messages"]) == 1
        stack.wait_until(lambda: len(control(stack, "GET", "/webhook/deliveries")) >= 3, what="3 more deliveries")
        settle(stack)

        again = control(stack, "GET", "/webhook/deliveries")
        assert [(d["outcome"], d["status"]) for d in again] == [("delivered", 200)] * 3
        assert (len(sends(stack, "customer")), len(sends(stack, "site")), len(sends(stack, "job"))) == (1, 1, 1)
        assert synergist_writes(stack) == ["create"]
        assert activities(synergist) == ["ServiceTrade job 112202 completed"]
        assert len(list(synchroteam.iter_list("job", myId=f"st-job-{JOB_ID}"))) == 1
    finally:
        servicetrade.close()
        synchroteam.close()
        synergist.close()
