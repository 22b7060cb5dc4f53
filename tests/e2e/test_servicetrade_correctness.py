"""Real ServiceTrade traffic as the doc describes it, through real processes (sandboxes, receiver, a Celery
worker, a private Redis): empty and missing changesets, the doc's sample verbatim, a timestamp in 2100,
webhook and poll of one change, links across systems, external ids and deleted linked records."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from celery import Celery
from pydantic import SecretStr

from fieldrelay.events import ChangeEvent, EntityRef
from fieldrelay.queues import EVENTS_QUEUE
from fieldrelay.state import PipelineState
from fieldrelay_cli.devstack import SANDBOX_PASSWORD, SANDBOX_USER, Stack
from receiver.webhooks import normalize, parse_message
from tests.e2e.conftest import Pipeline
from tests.stacks import running_stack
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synergist import SynergistClient
from workers.polling.pollers import POLL_TASK
from workers.polling.store import PollStore

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
TOKEN = "correctness-token"
VERBATIM = json.loads((ROOT / "examples" / "webhook-sample-verbatim.json").read_text())
RULES = """
vars:
  closing: [35778, 35776]
  ordering: [35770, 35772, 35780]
  linking: [35774]
  deleting: [35781, 34872]
rules:
  - name: appointment-completed
    mode: parallel
    when:
      source: servicetrade
      entity: appointment
      action: updated
      changed: {status: {from: scheduled, to: completed}}
    then:
      - synchroteam.customer.upsert:
          myId: "appt-{{ event.entity.id }}"
          name: "appointment {{ changes.status.old }} -> {{ changes.status.new }}"

  - name: job-closed
    mode: parallel
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: closed}}}
    if: "event.entity.id in vars.closing"
    then:
      - synchroteam.customer.upsert: {myId: "closed-{{ event.entity.id }}-{{ event.occurred_at }}", name: closed}

  - name: job-completed-once
    mode: parallel
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    if: "event.entity.id in vars.ordering"
    then:
      - synchroteam.customer.upsert: {myId: "ordering-{{ event.entity.id }}-{{ event.id }}", name: once}

  - name: completed-job-activity
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    if: "event.entity.id in vars.linking"
    then:
      - id: activity
        synergist.activity.create:
          activityActivitytypeCode: Notes
          activityClientCode: "1/F667"
          activitySubject: "job {{ event.entity.id }} completed"
      - servicetrade.externalid.set:
          entityType: job
          entityId: "{{ event.entity.id }}"
          systemName: synergist
          value: "{{ steps.activity.activityID }}"

  - name: closed-job-updates-its-activity
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: closed}}}
    if: "event.entity.id in vars.linking"
    then:
      - synergist.activity.update:
          activityID: "{{ linked_id('synergist.activity', rule='completed-job-activity') }}"
          activitySubject: >-
            job {{ event.entity.id }} closed; ServiceTrade says its activity is {{ entity.externalIds.synergist }}

  - name: activity-per-status-fail
    when: {source: servicetrade, entity: job, action: updated, changed: {status: true}}
    if: "event.entity.id == vars.deleting[0]"
    then:
      - synergist.activity.create:
          activityActivitytypeCode: Notes
          activityClientCode: "1/F667"
          activitySubject: "job {{ event.entity.id }} is {{ changes.status.new }}"

  - name: activity-per-status-recreate
    when: {source: servicetrade, entity: job, action: updated, changed: {status: true}}
    if: "event.entity.id == vars.deleting[1]"
    then:
      - synergist.activity.create:
          activityActivitytypeCode: Notes
          activityClientCode: "1/F667"
          activitySubject: "job {{ event.entity.id }} is {{ changes.status.new }}"
        on_missing: recreate
"""


class Handle(Pipeline):
    """The stack, clients of its sandboxes, and the ServiceTrade poller run on demand."""

    def __init__(self, stack: Stack, redis_url: str) -> None:
        super().__init__(stack, redis_url)
        c = stack.config
        self.st = ServiceTradeClient(
            c.base_url(c.servicetrade_port) + "/api", SANDBOX_USER, SecretStr(SANDBOX_PASSWORD)
        )
        self.synergist = SynergistClient(c.base_url(c.synergist_port), SANDBOX_USER, SecretStr(SANDBOX_PASSWORD), "1")
        self.state = PipelineState(self.redis)
        self.hook: Mapping[str, Any] = {}

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.url(self.config.servicetrade_port, f"/_sandbox{path}")
        response = httpx.request(method, url, timeout=10, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def poll(self) -> dict[str, Any]:
        """One `servicetrade.job` poll task on the worker; its report once written."""
        key = "fieldrelay:poll:run:servicetrade.job"
        # A run that starts within 0.8 of the interval (1 s here) of the last one is skipped as the same tick
        # sent twice and writes no report: wait a whole interval from when the last run started in the worker.
        time.sleep(max(0.0, PollStore(self.redis).last_started("servicetrade.job") + 1.1 - time.time()))
        before = self.redis.get(key)
        with Celery("correctness", broker=self.config.redis_url) as sender:
            sender.send_task(POLL_TASK, args=("servicetrade.job",), queue=EVENTS_QUEUE)
        self.wait_until(lambda: self.redis.get(key) not in (None, before), what="a poll report")
        return orjson.loads(self.redis.get(key) or b"{}")

    def events(self, kind: str, entity_id: int) -> list[dict[str, Any]]:
        """Every event the worker took in for one record (saved events), oldest first."""
        found = []
        for key in self.redis.scan_iter("fieldrelay:evsum:*"):
            event = orjson.loads(self.redis.hget(key, "event") or b"{}")
            if event.get("entity", {}).get("type") == kind and event["entity"]["id"] == entity_id:
                found.append({**event, "id": key.decode().rsplit(":", 1)[1]})
        return sorted(found, key=lambda e: e["occurred_at"])

    def delivered_ids(self, kind: str, entity_id: int) -> list[str]:
        """Ids of the events the webhook deliveries of one record make (as the receiver normalizes them)."""
        ids = []
        for delivery in self.control("GET", "/webhook/deliveries"):
            if delivery["outcome"] != "delivered":
                continue
            for event in normalize(parse_message(json.dumps(delivery["message"]).encode())):
                if (event["entity"]["type"], event["entity"]["id"]) == (kind, entity_id):
                    ids.append(ChangeEvent.model_validate(event).id)
        return ids

    def sends(self, prefix: str) -> list[dict[str, Any]]:
        return [
            r["json"]
            for r in self.requests("synchroteam")
            if r["path"].endswith("/customer/send") and str((r["json"] or {}).get("myId", "")).startswith(prefix)
        ]

    def trace(self, event_id: str, step: str) -> list[dict[str, Any]]:
        return [s for s in self.state.load_trace(event_id) if s["step"] == step]

    def close(self) -> None:
        self.st.close()
        self.synergist.close()
        self.redis.close()


@pytest.fixture(scope="module")
def stack(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handle]:
    data = tmp_path_factory.mktemp("correctness-stack")
    rules_dir = data / "rules"
    rules_dir.mkdir()
    shutil.copy(ROOT / "rules" / "examples" / "servicetrade_to_synchroteam.yaml", rules_dir / "examples.yaml")
    (rules_dir / "correctness.yaml").write_text(RULES)
    extra_env = {
        "FIELDRELAY_POLL_SOURCES": "servicetrade.job",
        "FIELDRELAY_POLL_WEBHOOK_GRACE": "0",
        "FIELDRELAY_POLL_OVERLAP": "30",
        "FIELDRELAY_POLL_INTERVAL": "1",
    }
    with running_stack(redis_server, data, webhook_tokens=TOKEN, rules_dir=rules_dir, extra_env=extra_env) as running:
        handle = Handle(running, redis_server)
        try:
            handle.hook = handle.st.create_webhook(f"{handle.receiver}/webhooks/servicetrade/{TOKEN}")
            yield handle
        finally:
            handle.close()


def settled(stack: Handle) -> None:
    stack.wait_idle()


def delivered(stack: Handle, count: int) -> None:
    stack.wait_until(
        lambda: sum(1 for d in stack.control("GET", "/webhook/deliveries") if d["outcome"] == "delivered") >= count,
        what=f"{count} deliveries",
    )


def test_the_docs_sample_verbatim_reads_the_job_not_the_invoice_its_uri_names(stack: Handle):
    httpx.delete(stack.url(stack.config.servicetrade_port, "/_sandbox/requests"), timeout=10)
    assert stack.post_webhook(VERBATIM, token=TOKEN).json() == {"accepted": 4}
    stack.wait_until(lambda: stack.sends("st-company-39"), what="the job rule's first step")
    settled(stack)
    reads = [r["path"] for r in stack.requests("servicetrade") if r["method"] == "GET"]
    assert "/api/job/35769" in reads and not any("/invoice/35789" in p for p in reads)
    job_sends = [r["json"] for r in stack.requests("synchroteam") if r["path"].endswith("/job/send")]
    assert [(s["myId"], s["description"]) for s in job_sends] == [("st-job-35769", "Job 35769")]
    [event] = stack.events("job", 35769)
    [received] = stack.trace(event["id"], "event.received")
    assert received["uri"] == (
        "uri 'https://api.servicetrade.com/api/invoice/35789' names another record than job 35769; "
        "read /job/35769 by type and id"
    )


def test_an_appointment_completed_with_empty_changesets_fires_exactly_once(stack: Handle):
    stack.control("DELETE", "/webhook/deliveries")
    stack.control("PUT", "/webhook/controls", json={"changesets": "documented"})
    try:
        stack.st.update_appointment(755, {"windowStart": 1790000000})  # first sighting: nothing to compare
        delivered(stack, 1)
        settled(stack)
        stack.st.update_appointment(755, {"status": "completed"})
        delivered(stack, 2)
        stack.wait_until(lambda: stack.sends("appt-755"), what="the appointment rule")
        settled(stack)
        stack.st.update_appointment(755, {"windowEnd": 1790003600})  # an unrelated later update
        delivered(stack, 3)
        settled(stack)
    finally:
        stack.control("PUT", "/webhook/controls", json={"changesets": "sample"})
    changesets = [d["message"]["data"][0]["changeset"] for d in stack.control("GET", "/webhook/deliveries")]
    assert changesets == [[], [], []]
    assert stack.sends("appt-755") == [{"myId": "appt-755", "name": "appointment scheduled -> completed"}]
    first, done, later = stack.events("appointment", 755)
    assert "no earlier version known" in stack.trace(first["id"], "rule.skipped")[0]["reason"]
    [hit] = stack.trace(done["id"], "rule.matched")
    assert hit["transitions"]["status"] == {
        "old": "scheduled",
        "new": "completed",
        "old_from": "snapshot",
        "new_from": "current value",
    }
    assert "did not change since" in stack.trace(later["id"], "rule.skipped")[0]["reason"]


def test_a_job_without_changesets_fires_at_most_once_per_value(stack: Handle):
    stack.control("DELETE", "/webhook/deliveries")
    stack.st.update_webhook(stack.hook["id"], include_changesets=False)
    try:
        stack.st.update_job(35778, {"status": "closed"})
        stack.wait_until(lambda: stack.sends("closed-35778"), what="the closed rule")
        settled(stack)
        stack.st.update_job(35778, {"description": "a technician's note"})
        delivered(stack, 2)
        settled(stack)
        assert len(stack.sends("closed-35778")) == 1  # the note does not close it again
        stack.st.update_job(35778, {"status": "completed"})
        delivered(stack, 3)
        settled(stack)
        stack.st.update_job(35778, {"status": "closed"})
        stack.wait_until(lambda: len(stack.sends("closed-35778")) == 2, what="the second real closing")
        settled(stack)
    finally:
        stack.st.update_webhook(stack.hook["id"], include_changesets=True)
    assert all("changeset" not in d["message"]["data"][0] for d in stack.control("GET", "/webhook/deliveries"))
    assert len(stack.sends("closed-35778")) == 2
    assert len(stack.events("job", 35778)) == 4


def test_a_year_2100_item_then_a_genuine_change(stack: Handle):
    emitted = stack.control(
        "POST",
        "/webhook/emit",
        json={"data": [{"action": "updated", "type": "job", "id": 35776, "timestamp": 4102444800, "changeset": []}]},
    )
    [item] = emitted["messages"][0]["data"]
    poisoned = ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=35776, uri=item["entity"]["uri"]),
        occurred_at=0,
        changes={},
        clamped_from=4102444800,
    )
    stack.wait_until(lambda: stack.trace(poisoned.id, "event.received"), what="the 2100 item")
    [received] = stack.trace(poisoned.id, "event.received")
    assert "timestamp 4102444800 was more than 300 s ahead of the receiver's clock" in received["clamped"]
    seen = stack.state.seen_at("servicetrade", "job", 35776)
    assert seen is not None and seen < 4102444800
    settled(stack)
    stack.st.update_job(35776, {"status": "closed"})
    stack.wait_until(lambda: stack.sends("closed-35776"), what="the genuine change")
    settled(stack)
    assert len(stack.sends("closed-35776")) == 1
    assert not [e for e in stack.events("job", 35776) if stack.trace(e["id"], "event.stale")]


def completed_with_a_note(stack: Handle, job_id: int) -> None:
    """A change ServiceTrade reports with a `status` changeset, and a poll sees as status + description."""
    stack.control("PATCH", f"/entities/job/{job_id}", json={"status": "completed", "description": f"done {job_id}"})


def test_webhook_first_then_poll_is_one_event(stack: Handle):
    # The poller's first run, here rather than at start: the doc's sample above is dated 2014, and
    # after this run every seeded job has a stored version of 2025, against which the sample is stale.
    assert stack.poll()["status"] == "ok"
    completed_with_a_note(stack, 35770)
    stack.wait_until(lambda: stack.sends("ordering-35770"), what="the webhook's run")
    settled(stack)
    stack.poll()
    settled(stack)
    assert [e["via"] for e in stack.events("job", 35770)] == ["webhook"]
    assert len(stack.sends("ordering-35770")) == 1


def one_event_and_its_twin(stack: Handle, job_id: int) -> tuple[str, dict[str, Any]]:
    """The poll's event and the webhook's: one ran, the other is its duplicate by version."""
    [polled] = [e["id"] for e in stack.events("job", job_id) if e["via"] == "poll"] or [
        dup["same_version_as"] for i in stack.delivered_ids("job", job_id) for dup in stack.trace(i, "event.duplicate")
    ]
    [hooked] = stack.delivered_ids("job", job_id)
    twins = [(i, stack.trace(i, "event.duplicate")) for i in (polled, hooked)]
    [(duplicate, [trace])] = [(i, t) for i, t in twins if t]
    return duplicate, trace


def test_poll_first_with_the_webhook_close_behind_is_one_event(stack: Handle):
    stack.control("DELETE", "/webhook/deliveries")
    stack.control("PUT", "/webhook/controls", json={"hold": True})
    try:
        completed_with_a_note(stack, 35772)
        assert stack.poll()["missed_webhooks"] >= 1
    finally:
        stack.control("PUT", "/webhook/controls", json={"hold": False})
    stack.control("POST", "/webhook/flush")  # the webhook lands while the poll's event may still run
    delivered(stack, 1)
    stack.wait_until(lambda: stack.sends("ordering-35772"), what="the run")
    settled(stack)
    _, trace = one_event_and_its_twin(stack, 35772)
    assert "same field values" in trace["detail"]  # whichever came second
    assert len(stack.sends("ordering-35772")) == 1


def test_a_late_webhook_after_the_polls_event_ran_is_one_event(stack: Handle):
    # First a change the webhook path decides by reading the job: a whole stored version, so the poll
    # below diffs against it (a complete changeset) instead of seeing the job for the first time.
    stack.control("PATCH", "/entities/job/35780", json={"description": "before"})
    stack.wait_until(lambda: stack.events("job", 35780), what="the first change")
    settled(stack)
    stack.control("DELETE", "/webhook/deliveries")
    stack.control("PUT", "/webhook/controls", json={"hold": True})
    try:
        completed_with_a_note(stack, 35780)
        assert stack.poll()["missed_webhooks"] >= 1
        stack.wait_until(lambda: stack.sends("ordering-35780"), what="the poll event's run")
        settled(stack)
    finally:
        stack.control("PUT", "/webhook/controls", json={"hold": False})
    stack.control("POST", "/webhook/flush")
    delivered(stack, 1)
    [hooked] = stack.delivered_ids("job", 35780)
    stack.wait_until(lambda: stack.trace(hooked, "event.duplicate"), what="the late webhook")
    settled(stack)
    [polled] = [e for e in stack.events("job", 35780) if e["via"] == "poll"]
    [dup] = stack.trace(hooked, "event.duplicate")
    assert dup["same_version_as"] == polled["id"]
    delivery = stack.control("GET", "/webhook/deliveries")[0]["message"]["data"][0]
    # Two ids for one change: the webhook's changeset names `status`, the poller's diff names every field.
    assert [c["field"] for c in delivery["changeset"]] == ["status"]
    assert sorted(polled["changes"]) == ["description", "status"]
    assert len(stack.sends("ordering-35780")) == 1


def test_a_second_rule_finds_the_first_rules_activity_and_the_external_id(stack: Handle):
    stack.st.update_job(35774, {"status": "completed"})
    stack.wait_until(lambda: stack.st.external_ids("job", 35774).get("synergist"), what="the external id")
    settled(stack)
    activity_id = int(stack.st.external_ids("job", 35774)["synergist"])
    assert stack.st.get_entity("job", 35774)["externalIds"] == {"synergist": str(activity_id)}
    stack.st.update_job(35774, {"status": "closed"})
    expected = f"job 35774 closed; ServiceTrade says its activity is {activity_id}"
    stack.wait_until(
        lambda: stack.synergist.activity(activity_id).get("activitySubject") == expected, what="the update"
    )
    settled(stack)
    writes = [r["query"].get("action") for r in stack.requests("synergist") if r["query"].get("action")]
    assert writes.count("create") == 1  # the second rule updated the first rule's activity


def test_a_deleted_linked_record_under_both_policies(stack: Handle):
    fail_job, recreate_job = 35781, 34872
    for job in (fail_job, recreate_job):
        stack.st.update_job(job, {"status": "scheduled"})
    first = {}
    for job in (fail_job, recreate_job):
        link = f"fieldrelay:link:synergist.activity.create:servicetrade:job:{job}:activity-per-status-"
        link += "fail" if job == fail_job else "recreate"
        key = link + ":synergist.activity.create#0"
        linked = lambda key=key: stack.redis.get(key) is not None  # noqa: E731
        stack.wait_until(linked, what=f"job {job}'s activity")
        first[job] = int(stack.redis.get(key) or 0)
    settled(stack)
    for activity in first.values():
        stack.synergist.delete_activity(activity)  # someone deletes them in Synergist

    for job in (fail_job, recreate_job):
        stack.st.update_job(job, {"status": "completed"})
    stack.wait_until(lambda: stack.state.dlq_size() >= 1, what="the dead letter")
    recreated_key = (
        f"fieldrelay:link:synergist.activity.create:servicetrade:job:{recreate_job}:activity-per-status-recreate"
        ":synergist.activity.create#0"
    )
    stack.wait_until(lambda: int(stack.redis.get(recreated_key) or 0) != first[recreate_job], what="the new one")
    settled(stack)
    [letter] = [d for d in stack.state.dead_letters() if d["rule"] == "activity-per-status-fail"]
    assert letter["error"].startswith(
        f"LinkedRecordMissing: the synergist.activity {first[fail_job]} that this step created earlier"
    )
    assert "With `on_missing: recreate` on the step" in letter["error"]
    assert not [d for d in stack.state.dead_letters() if d["rule"] == "activity-per-status-recreate"]
    new = int(stack.redis.get(recreated_key) or 0)
    assert stack.synergist.activity(new)["activitySubject"] == f"job {recreate_job} is completed"
