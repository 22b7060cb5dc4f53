"""The pipeline's logic against a real Redis, with the HTTP APIs answered by httpx.MockTransport."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.targets import next_reset, target_limits
from rules import rule_from_json
from workers import lifecycle, pipeline
from workers.actions.registry import action_params
from workers.admission import Deferred
from workers.clients import SettingsClients
from workers.connectors.errors import Unavailable
from workers.echo import EchoGuard
from workers.execute import PipelineError, fetch_entity, idempotency_key
from workers.gate import TargetGate
from workers.rulebook import RuleBook
from workers.runs import RunCoordinator
from workers.runtime import Runtime

RULES = """
rules:
  - name: mirror
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    if: "entity.type == 'repair'"
    then:
      - id: customer
        synchroteam.customer.upsert: {myId: "st-company-{{ entity.customer.id }}", name: "{{ entity.customer.name }}"}
      - synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "{{ entity.description }}"
          customer: {myId: "{{ steps.customer.myId }}"}
"""

JOB = {
    "id": 35769,
    "type": "repair",
    "status": "completed",
    "description": "Fix the hood",
    "customer": {"id": 39, "name": "Big Bang Burger Bar"},
}


class FakeAPIs:
    """ServiceTrade and Synchroteam as seen over HTTP; records what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.servicetrade_status = 200
        self.gets = 0
        self.synchroteam_answer: httpx.Response | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/auth":
            return httpx.Response(
                200,
                json={"data": {"authenticated": True, "authToken": "sess"}},
                headers={"set-cookie": "PHPSESSID=sess"},
            )
        if path.startswith("/api/job/") and request.method == "PUT":
            job_id = int(path.rsplit("/", 1)[1])
            return httpx.Response(200, json={"data": {"id": job_id, **json.loads(request.content)}})
        if path.startswith("/api/job/"):
            self.gets += 1
            if self.servicetrade_status != 200:
                return httpx.Response(self.servicetrade_status, json={"messages": {"error": ["down"]}})
            return httpx.Response(200, json={"data": JOB})
        if path.endswith("/send") and self.synchroteam_answer is not None:
            return self.synchroteam_answer
        if path.endswith("/send"):
            body = json.loads(request.content)
            self.sent.append((path, body))
            return httpx.Response(200, json={"id": 1, **body})
        return httpx.Response(404, json={"error": "Not Found", "message": path})


@pytest.fixture
def apis() -> FakeAPIs:
    return FakeAPIs()


@pytest.fixture
def runtime(redis_client: redis.Redis, tmp_path: Path, apis: FakeAPIs):
    (tmp_path / "rules.yaml").write_text(RULES)
    settings = Settings(
        servicetrade_base_url="http://st.test/api",
        synchroteam_base_url="http://stm.test",
        servicetrade_username="u",
        servicetrade_password="p",
        synchroteam_domain="d",
        synchroteam_api_key="k",
    )
    enqueued: list[tuple[str, str, int, str]] = []
    scheduled: list[tuple[str, list, str, float]] = []
    rt = Runtime(
        state=PipelineState(redis_client),
        clients=SettingsClients(settings, transport=httpx.MockTransport(apis)),
        rulebook=RuleBook(tmp_path, action_params()),
        enqueue_action=lambda *args: enqueued.append(args),
        gate=TargetGate(redis_client, target_limits(settings)),
        targets=target_limits(settings),
        runs=RunCoordinator(redis_client),
        echoes=EchoGuard(redis_client),
        schedule=lambda *args: scheduled.append(args),
    )
    rt.scheduled = scheduled  # type: ignore[attr-defined]
    rt.enqueued = enqueued  # type: ignore[attr-defined]
    return rt


def completed(job_id: int = 35769, changes: bool = True) -> ChangeEvent:
    return ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=job_id, uri=f"https://api.servicetrade.com/api/job/{job_id}"),
        occurred_at=1401833052,
        changes={"status": FieldChange(old="scheduled", new="completed")} if changes else None,
    )


def test_matched_rule_starts_its_first_action_on_the_target_queue(runtime):
    event = completed()
    verdicts = pipeline.process_event(event, "task-1", runtime)
    assert [(v.rule.name, v.matched) for v in verdicts] == [("mirror", True)]
    [(event_id, digest, index, queue)] = runtime.enqueued
    assert (event_id, index, queue) == (event.id, 0, "actions.synchroteam")
    assert runtime.state.load_rule(digest)["spec"]["name"] == "mirror"


def test_a_duplicate_delivery_is_skipped_but_a_redelivery_of_the_claimer_proceeds(runtime):
    event = completed()
    pipeline.process_event(event, "task-1", runtime)
    assert pipeline.process_event(event, "task-2", runtime) == []
    assert len(pipeline.process_event(event, "task-1", runtime)) == 1
    steps = [s["step"] for s in runtime.state.load_trace(event.id)]
    assert "event.duplicate" in steps


def test_actions_run_in_order_with_step_results_and_are_not_repeated(runtime, apis):
    event = completed()
    pipeline.process_event(event, "task-1", runtime)
    _, digest, _, _ = runtime.enqueued.pop()
    pipeline.run_action(event.id, digest, 0, runtime)
    assert runtime.enqueued.pop()[2] == 1
    pipeline.run_action(event.id, digest, 1, runtime)
    assert runtime.enqueued == []  # last step
    assert [p for p, _ in apis.sent] == ["/api/v3/customer/send", "/api/v3/job/send"]
    assert apis.sent[1][1] == {
        "myId": "st-job-35769",
        "description": "Fix the hood",
        "customer": {"myId": "st-company-39"},
    }

    pipeline.run_action(event.id, digest, 0, runtime)  # a redelivered task
    assert len(apis.sent) == 2  # the ledger says done: not sent again
    assert runtime.enqueued.pop()[2] == 1  # but the chain still continues


def test_entity_fetch_failure_raises_for_retry_and_enqueues_nothing(runtime, apis):
    apis.servicetrade_status = 503
    with pytest.raises(Unavailable):
        pipeline.process_event(completed(), "task-1", runtime)
    assert runtime.enqueued == []
    apis.servicetrade_status = 200
    assert pipeline.process_event(completed(), "task-1", runtime)[0].matched  # the retry (same task id)


def test_the_entity_is_not_fetched_when_no_candidate_rule_needs_it(runtime, apis):
    event = ChangeEvent(
        source="servicetrade", via="webhook", action="created", entity=EntityRef(type="invoice", id=1), occurred_at=1
    )
    assert pipeline.process_event(event, "t", runtime) == []
    assert apis.gets == 0
    [none] = [s for s in runtime.state.load_trace(event.id) if s["step"] == "rules.none"]
    assert none["detail"] == "no rule can match this servicetrade invoice created (1 rules loaded)"


def test_invalid_rendered_parameters_fail_permanently_with_the_field(runtime, tmp_path):
    (tmp_path / "rules.yaml").write_text(
        RULES.replace('myId: "st-job-{{ event.entity.id }}"', 'myId: "{{ entity.customer }}"')
    )
    runtime.rulebook = RuleBook(tmp_path, action_params())
    event = completed()
    pipeline.process_event(event, "task-1", runtime)
    _, digest, _, _ = runtime.enqueued.pop()
    pipeline.run_action(event.id, digest, 0, runtime)
    with pytest.raises(PipelineError, match=r"synchroteam\.job\.upsert parameters: myId"):
        pipeline.run_action(event.id, digest, 1, runtime)


def test_processing_marks_the_entity_seen_and_never_moves_backwards(runtime):
    pipeline.process_event(completed(), "task-1", runtime)
    assert runtime.state.seen_at("servicetrade", "job", 35769) == 1401833052
    runtime.state.mark_seen("servicetrade", "job", 35769, 1000)
    assert runtime.state.seen_at("servicetrade", "job", 35769) == 1401833052


def first_action(runtime) -> tuple[str, str]:
    event = completed()
    pipeline.process_event(event, "task-1", runtime)
    _, digest, _, _ = runtime.enqueued.pop()
    return event.id, digest


def test_a_429_defers_without_failing_and_blocks_the_target_until_reset(runtime, apis):
    import time

    reset = int(time.time()) + 30
    apis.synchroteam_answer = httpx.Response(
        429,
        json={"error": "Too Many Requests", "message": "You have gone above your rate limit"},
        headers={"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
    )
    event_id, digest = first_action(runtime)
    with pytest.raises(Deferred) as deferred:
        pipeline.run_action(event_id, digest, 0, runtime)
    assert deferred.value.reason == "blocked" and 25 < deferred.value.seconds <= 31
    wait = runtime.gate.acquire("synchroteam")
    assert wait is not None and wait.reason == "blocked"  # every worker now waits, not just this one
    assert runtime.state.action_done(event_id, digest, 0) is None


def test_an_exhausted_quota_pauses_the_target_and_alerts_once(runtime, apis):
    alerts: list[tuple[str, dict]] = []
    runtime.alert = lambda message, tags: alerts.append((message, tags))
    apis.synchroteam_answer = httpx.Response(
        429,
        json={"error": "Too Many Requests", "message": "You have gone above your daily quota"},
        headers={"X-Quota-Limit": "10000", "X-Quota-Remaining": "0"},
    )
    event_id, digest = first_action(runtime)
    for _ in range(3):
        with pytest.raises(Deferred) as deferred:
            pipeline.run_action(event_id, digest, 0, runtime)
        assert deferred.value.reason in ("quota",)
    assert deferred.value.seconds == pytest.approx(next_reset(time.time()) - time.time(), abs=5)
    assert [tags for _, tags in alerts] == [{"target": "synchroteam", "alert": "quota"}]


def test_mode_latest_turns_a_burst_of_20_updates_into_one_run_on_the_newest(runtime, apis, tmp_path):
    (tmp_path / "rules.yaml").write_text("""
rules:
  - name: latest-job
    mode: latest
    when: {source: servicetrade, entity: job, action: updated}
    then:
      - synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "change at {{ event.occurred_at }}"
          customer: {myId: "st-company-39"}
""")
    runtime.rulebook = RuleBook(tmp_path, action_params())
    burst = [
        ChangeEvent(
            source="servicetrade",
            via="webhook",
            action="updated",
            entity=EntityRef(type="job", id=35769),
            occurred_at=1_700_000_000 + n,
            changes={"description": FieldChange(old=n, new=n + 1)},
        )
        for n in range(20)
    ]
    for n, event in enumerate(burst):
        pipeline.process_event(event, f"task-{n}", runtime)
    assert runtime.enqueued == []
    [(task, (run_key, digest), _, delay)] = runtime.scheduled
    assert task == "fieldrelay.next_run" and delay >= 1.0

    lifecycle.next_run(run_key, digest, "", runtime)  # the debounce falls due
    [(event_id, digest, index, _)] = runtime.enqueued
    assert event_id == burst[-1].id
    pipeline.run_action(event_id, digest, index, runtime)
    assert [body["description"] for _, body in apis.sent] == ["change at 1700000019"]


def test_an_event_older_than_the_newest_applied_is_skipped_as_stale(runtime):
    newer = completed()
    older = ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=newer.entity,
        occurred_at=newer.occurred_at - 60,
        changes={"status": FieldChange(old="new", new="scheduled")},
    )
    assert pipeline.process_event(newer, "t1", runtime)
    assert pipeline.process_event(older, "t2", runtime) == []
    [stale] = [s for s in runtime.state.load_trace(older.id) if s["step"] == "event.stale"]
    assert stale["newest_applied"] == newer.occurred_at
    same_second = ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=newer.entity,
        occurred_at=newer.occurred_at,
        changes={"description": FieldChange(old="a", new="b")},
    )
    pipeline.process_event(same_second, "t3", runtime)
    assert not [s for s in runtime.state.load_trace(same_second.id) if s["step"] == "event.stale"]


def test_a_rule_writing_back_to_its_source_does_not_trigger_itself(runtime, apis, tmp_path):
    import time

    (tmp_path / "rules.yaml").write_text("""
rules:
  - name: stamp-po
    mode: parallel
    when: {source: servicetrade, entity: job, action: updated}
    then:
      - servicetrade.job.update: {jobId: "{{ event.entity.id }}", customerPo: "FR-{{ event.entity.id }}"}
""")
    runtime.rulebook = RuleBook(tmp_path, action_params())
    now = int(time.time())
    human = ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=5),
        occurred_at=now,
        changes={"status": FieldChange(old="new", new="scheduled")},
    )
    pipeline.process_event(human, "t1", runtime)
    event_id, digest, index, _ = runtime.enqueued.pop()
    pipeline.run_action(event_id, digest, index, runtime)

    echo = ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=5),
        occurred_at=now + 1,
        changes={"customerPo": FieldChange(old=None, new="FR-5")},
    )
    assert pipeline.process_event(echo, "t2", runtime) == []
    assert runtime.enqueued == []
    assert "event.own_write" in [s["step"] for s in runtime.state.load_trace(echo.id)]


def test_a_replay_passes_the_duplicate_and_stale_checks(runtime):
    event = completed()
    pipeline.process_event(event, "task-1", runtime)
    runtime.enqueued.clear()
    runtime.state.mark_seen("servicetrade", "job", 35769, event.occurred_at + 100)  # a newer change since
    assert pipeline.process_event(event, "task-2", runtime) == []
    assert pipeline.process_event(event, "replay-1", runtime, replay=True)[0].matched
    assert "event.replayed" in [s["step"] for s in runtime.state.load_trace(event.id)]


def test_entities_of_polled_systems_are_fetched_from_their_own_api():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.url.path}?{request.url.query.decode()}")
        if request.url.path == "/api/v3/job/details":
            return httpx.Response(200, json={"id": "265_1", "status": "completed"})
        if request.url.path == "/jsonapi/activities.json":
            return httpx.Response(
                200, json={"success": True, "errorcode": 0, "data": [{"activityID": 6712, "activitySubject": "Visit"}]}
            )
        return httpx.Response(404, json={"error": "Not Found", "message": "no"})

    settings = Settings(
        synchroteam_base_url="http://stm.test",
        synchroteam_domain="d",
        synchroteam_api_key="k",
        synergist_base_url="http://syn.test",
        synergist_user="u",
        synergist_password="p",
    )
    clients = SettingsClients(settings, transport=httpx.MockTransport(handler))
    job = ChangeEvent(
        source="synchroteam", via="poll", action="updated", entity=EntityRef(type="job", id="265_1"), occurred_at=1
    )
    assert fetch_entity(job, clients) == {"id": "265_1", "status": "completed"}
    activity = ChangeEvent(
        source="synergist", via="poll", action="created", entity=EntityRef(type="activity", id=6712), occurred_at=1
    )
    record = fetch_entity(activity, clients)
    assert record is not None and record.get("activitySubject") == "Visit"
    gone = job.model_copy(update={"entity": EntityRef(type="customer", id=9)})
    assert fetch_entity(gone, clients) is None  # 404: the record is gone
    assert seen[0] == "/api/v3/job/details?id=265_1"


def test_a_step_already_running_elsewhere_defers_instead_of_racing(runtime):
    event_id, digest = first_action(runtime)
    rule = rule_from_json(runtime.state.load_rule(digest))
    key = idempotency_key(completed(), rule, 0, rule.then[0])
    held = runtime.state.lock_step(key)
    with pytest.raises(Deferred) as deferred:
        pipeline.run_action(event_id, digest, 0, runtime)
    assert deferred.value.reason == "busy"
    runtime.state.unlock_step(key, held)
    pipeline.run_action(event_id, digest, 0, runtime)  # and runs once it is free
    assert runtime.state.lock_step(key) is not None  # released after the call


def test_idempotency_keys_survive_an_inserted_step(runtime, tmp_path):
    from rules import load_rules

    def keys(yaml: str) -> dict[str, str]:
        (tmp_path / "rules.yaml").write_text(yaml)
        rule = load_rules(tmp_path, action_params()).rules[0]
        return {c.name: idempotency_key(completed(), rule, i, c) for i, c in enumerate(rule.then)}

    head = "rules:\n  - name: r\n    when: {source: servicetrade, entity: job}\n    then:\n"
    log = "      - synergist.activity.create: {activityActivitytypeCode: A, activityClientCode: C}\n"
    comment = "      - servicetrade.job.comment: {jobId: 1, content: x}\n"
    before = keys(head + log)
    after = keys(head + comment + log)
    assert before["synergist.activity.create"] == after["synergist.activity.create"]
    assert before["synergist.activity.create"].endswith(":r:synergist.activity.create#0")


def test_links_expire_after_their_ttl(redis_client):
    links = PipelineState(redis_client).link_store()
    links.set("k", "6712")
    assert links.get("k") == "6712"
    assert 0 < redis_client.ttl("fieldrelay:link:k") <= links.ttl


def test_a_secret_reaches_the_target_but_never_the_stored_rule_or_the_trace(runtime, apis, tmp_path, redis_client):
    from fieldrelay.redaction import Redactor

    secret = "s3cr3t-dispatch-token"
    (tmp_path / "rules.yaml").write_text("""
rules:
  - name: notify
    when: {source: servicetrade, entity: job, action: updated}
    then:
      - http.request:
          url: "http://hooks.test/canceled"
          headers: {Authorization: !secret DISPATCH_TOKEN}
          json: {job: "{{ event.entity.id }}"}
""")
    runtime.rulebook = RuleBook(tmp_path, action_params(), env_names=["DISPATCH_TOKEN"])
    runtime.env = {"DISPATCH_TOKEN": secret}
    runtime.state = PipelineState(redis_client, redactor=Redactor([secret]))
    sent: list[httpx.Request] = []
    original = apis.__call__

    def capture(request: httpx.Request) -> httpx.Response:
        if request.url.host == "hooks.test":
            sent.append(request)
            return httpx.Response(200, json={"ok": True})
        return original(request)

    runtime.clients = SettingsClients(Settings(), transport=httpx.MockTransport(capture))
    event_id, digest = first_action(runtime)
    pipeline.run_action(event_id, digest, 0, runtime)
    assert sent[0].headers["authorization"] == secret
    assert secret not in json.dumps(runtime.state.load_rule(digest))
    assert secret not in json.dumps(runtime.state.load_trace(event_id))


def test_a_redelivered_task_takes_back_its_own_step_lock(runtime, apis):
    event_id, digest = first_action(runtime)
    rule = rule_from_json(runtime.state.load_rule(digest))
    key = idempotency_key(completed(), rule, 0, rule.then[0])
    assert runtime.state.lock_step(key, "task-A") == "task-A"  # then task-A was killed holding it
    with pytest.raises(Deferred):
        pipeline.run_action(event_id, digest, 0, runtime, owner="task-B")
    pipeline.run_action(event_id, digest, 0, runtime, owner="task-A")  # its redelivery
    assert [p for p, _ in apis.sent] == ["/api/v3/customer/send"]


def test_the_rate_headers_a_target_sent_are_recorded_for_operators(runtime, apis):
    apis.synchroteam_answer = httpx.Response(
        200,
        json={"id": 1, "myId": "st-company-39"},
        headers={"X-RateLimit-Limit": "120", "X-RateLimit-Remaining": "3", "X-Quota-Remaining": "900"},
    )
    event_id, digest = first_action(runtime)
    pipeline.run_action(event_id, digest, 0, runtime)
    runtime.record_rates()
    assert runtime.state.target_rate("synchroteam")["remaining"] == 3
    assert runtime.state.target_rate("synchroteam")["quota_remaining"] == 900
    assert runtime.state.target_rate("synergist") == {}  # documents no rate headers: nothing to record
