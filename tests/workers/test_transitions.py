"""Transitions against the record's last seen version, end to end through `pipeline.process_event`:
a real Redis, the APIs answered by httpx.MockTransport (a stateful ServiceTrade)."""

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
from fieldrelay.targets import target_limits
from receiver.webhooks import normalize, parse_message
from workers import pipeline
from workers.actions.registry import action_params
from workers.admission import Deferred
from workers.clients import SettingsClients
from workers.echo import EchoGuard
from workers.gate import TargetGate
from workers.rulebook import RuleBook
from workers.runs import RunCoordinator
from workers.runtime import Runtime

RULES = """
rules:
  - name: appointment-done
    mode: parallel
    when:
      source: servicetrade
      entity: appointment
      action: updated
      changed: {status: {from: scheduled, to: completed}}
    then:
      - synchroteam.customer.upsert: {myId: "appt-{{ event.entity.id }}", name: "{{ changes.status.new }}"}
  - name: job-completed
    mode: parallel
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    then:
      - synchroteam.customer.upsert: {myId: "job-{{ event.entity.id }}", name: "done"}
  - name: po-changed
    mode: parallel
    when: {source: servicetrade, entity: job, action: updated, changed: {customerPo: true}}
    then:
      - synchroteam.customer.upsert: {myId: "po-{{ event.entity.id }}", name: "{{ changes.customerPo.new }}"}
"""


class FakeServiceTrade:
    """ServiceTrade records by type and id; counts every GET; `during_get` runs inside one fetch."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, int], dict[str, Any]] = {
            ("appointment", 754): {"id": 754, "status": "scheduled", "windowStart": 1, "updated": 100},
            ("job", 35769): {"id": 35769, "status": "completed", "description": "Fix the hood", "updated": 100},
        }
        self.gets: list[str] = []
        self.during_get: Any = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/api/auth":
            return httpx.Response(200, json={"data": {"authenticated": True, "authToken": "sess"}})
        if path.endswith("/send"):
            return httpx.Response(200, json={"id": 1, **json.loads(request.content)})
        if request.method == "GET" and path.startswith("/api/"):
            self.gets.append(path)
            if self.during_get is not None:
                hook, self.during_get = self.during_get, None
                hook()
            _, _, kind, rid = path.split("/")
            record = self.records.get((kind, int(rid)))
            if record is None:
                return httpx.Response(404, json={"messages": {"error": ["not found"]}})
            return httpx.Response(200, json={"data": record})
        return httpx.Response(404, json={"error": "Not Found", "message": path})


@pytest.fixture
def st() -> FakeServiceTrade:
    return FakeServiceTrade()


@pytest.fixture
def rt(redis_client: redis.Redis, tmp_path: Path, st: FakeServiceTrade) -> Runtime:
    (tmp_path / "rules.yaml").write_text(RULES)
    settings = Settings(
        servicetrade_base_url="http://st.test/api",
        synchroteam_base_url="http://stm.test",
        servicetrade_username="u",
        servicetrade_password="p",
        synchroteam_domain="d",
        synchroteam_api_key="k",
    )
    runtime = Runtime(
        state=PipelineState(redis_client),
        clients=SettingsClients(settings, transport=httpx.MockTransport(st)),
        rulebook=RuleBook(tmp_path, action_params()),
        enqueue_action=lambda *args: runtime.enqueued.append(args),  # type: ignore[attr-defined]
        gate=TargetGate(redis_client, target_limits(settings)),
        targets=target_limits(settings),
        runs=RunCoordinator(redis_client),
        echoes=EchoGuard(redis_client),
        schedule=lambda *args: None,
    )
    runtime.enqueued = []  # type: ignore[attr-defined]
    return runtime


def update(
    kind: str, rid: int, at: int, changes: dict[str, tuple[Any, Any]] | None, via: str = "webhook"
) -> ChangeEvent:
    return ChangeEvent(
        source="servicetrade",
        via=via,
        action="updated",
        entity=EntityRef(type=kind, id=rid, uri=f"https://api.servicetrade.com/api/{kind}/{rid}"),
        occurred_at=at,
        changes=None if changes is None else {k: FieldChange(old=o, new=n) for k, (o, n) in changes.items()},
    )


def matched(rt: Runtime, event: ChangeEvent, task: str | None = None) -> list[str]:
    return [v.rule.name for v in pipeline.process_event(event, task or f"task-{event.id}", rt) if v.matched]


def steps(rt: Runtime, event: ChangeEvent, step: str) -> list[dict[str, Any]]:
    return [s for s in rt.state.load_trace(event.id) if s["step"] == step]


def test_an_appointment_completed_with_empty_changesets_fires_once(rt: Runtime, st: FakeServiceTrade):
    seen = update("appointment", 754, 100, {})
    assert matched(rt, seen) == []  # first sighting: `from` needs an earlier version
    [skipped] = steps(rt, seen, "rule.skipped")
    assert "no earlier version known" in skipped["reason"]

    st.records[("appointment", 754)].update(status="completed", windowStart=5, updated=200)
    done = update("appointment", 754, 200, {})
    assert matched(rt, done) == ["appointment-done"]
    [hit] = steps(rt, done, "rule.matched")
    assert hit["transitions"] == {
        "status": {"old": "scheduled", "new": "completed", "old_from": "snapshot", "new_from": "current value"}
    }
    [received] = steps(rt, done, "event.received")
    assert received["compared_with"].startswith(f"the version stored by event {seen.id} (via webhook")
    stored = rt.state.load_event(done.id)
    assert stored is not None
    derived = stored["derived"]  # actions see it in `changes`
    assert derived["status"]["old"] == "scheduled"
    # Every field that differs from the stored version, asked about or not (`updated` is volatile: never).
    assert derived["windowStart"] == {"old": 1, "new": 5, "old_from": "snapshot", "new_from": "current value"}
    assert "updated" not in derived

    st.records[("appointment", 754)].update(windowStart=6, updated=300)
    later = update("appointment", 754, 300, {})
    assert matched(rt, later) == []  # an unrelated update does not fire it again
    assert "did not change since the version fieldrelay saw last" in steps(rt, later, "rule.skipped")[0]["reason"]
    assert st.gets == ["/api/appointment/754"] * 3  # one fetch per event
    assert len(rt.enqueued) == 1  # type: ignore[attr-defined]


def test_a_job_without_a_changeset_fires_at_most_once_per_value(rt: Runtime, st: FakeServiceTrade):
    job = st.records[("job", 35769)]
    assert matched(rt, update("job", 35769, 100, None)) == ["job-completed"]  # first sighting, on the value
    job.update(description="a technician's note", updated=110)
    assert matched(rt, update("job", 35769, 110, None)) == []
    job.update(status="scheduled", updated=120)
    assert matched(rt, update("job", 35769, 120, None)) == []
    job.update(status="completed", updated=130)
    assert matched(rt, update("job", 35769, 130, None)) == ["job-completed"]  # completed again, for real
    assert len(rt.enqueued) == 2  # type: ignore[attr-defined]


def test_two_events_of_one_record_evaluated_at_once_claim_the_transition_once(rt: Runtime, st: FakeServiceTrade):
    matched(rt, update("appointment", 754, 100, {}))
    st.records[("appointment", 754)].update(status="completed", updated=200)
    first, second = update("appointment", 754, 200, {}), update("appointment", 754, 201, {})
    inner: list[str] = []
    # `second` runs whole while `first` is fetching: both read the same stored version first.
    st.during_get = lambda: inner.extend(matched(rt, second))
    outer = matched(rt, first)
    assert sorted(inner + outer) == ["appointment-done"]
    assert st.gets.count("/api/appointment/754") == 3  # no event fetched twice for its write being retried


def test_a_write_that_keeps_losing_is_put_off_not_failed(rt: Runtime, st: FakeServiceTrade, monkeypatch):
    monkeypatch.setattr(rt.state.entities, "write", lambda *args, **kwargs: False)
    with pytest.raises(Deferred) as deferred:
        matched(rt, update("appointment", 754, 100, {}))
    assert deferred.value.reason == "busy"
    assert rt.enqueued == []  # type: ignore[attr-defined]


def test_the_redelivered_claimer_compares_with_the_version_before_its_own(rt: Runtime, st: FakeServiceTrade):
    matched(rt, update("appointment", 754, 100, {}))
    st.records[("appointment", 754)].update(status="completed", updated=200)
    done = update("appointment", 754, 200, {})
    assert matched(rt, done, task="t1") == ["appointment-done"]
    assert matched(rt, done, task="t1") == ["appointment-done"]  # killed after its write: it still matches
    assert matched(rt, done, task="t2") == []  # a duplicate delivery does not


def test_a_webhook_and_a_poll_of_one_version_are_one_event(rt: Runtime, st: FakeServiceTrade):
    # A job's changeset names only `status`; the poller's diff of two snapshots names every field that
    # changed: two ids for one change, which only the version tells apart.
    status = {"status": ("scheduled", "completed")}
    diff = {**status, "description": ("Fix it", "Fix the hood")}
    webhook, poll = update("job", 35769, 150, status), update("job", 35769, 150, diff, via="poll")
    assert webhook.id != poll.id
    assert matched(rt, webhook) == ["job-completed"]
    assert matched(rt, poll) == []
    [dup] = steps(rt, poll, "event.duplicate")
    assert dup["same_version_as"] == webhook.id and "same field values" in dup["detail"]

    # The other way round, on another record: the poll first, the webhook late.
    st.records[("job", 35770)] = {"id": 35770, "status": "completed", "updated": 160}
    poll2, late = update("job", 35770, 160, diff, via="poll"), update("job", 35770, 160, {})
    assert matched(rt, poll2) == ["job-completed"]
    assert matched(rt, late) == []
    assert steps(rt, late, "event.duplicate")[0]["same_version_as"] == poll2.id

    # Same time, other values: two changes in one second, both run.
    other = update("job", 35770, 160, {"status": ("completed", "closed")}, via="poll")
    assert pipeline.process_event(other, "t", rt) != []


def test_a_timestamp_in_2100_is_clamped_and_a_genuine_change_still_runs(rt: Runtime, st: FakeServiceTrade):
    now = int(time.time())
    body = {
        "messageId": "m-2100",
        "timestamp": str(now),
        "data": [
            {
                "action": "updated",
                "timestamp": 4102444800,  # 2100-01-01
                "entity": {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/job/35769"},
                "changeset": [],
            }
        ],
    }
    [raw] = normalize(parse_message(json.dumps(body).encode()), received_at=now, max_skew=300)
    poisoned = ChangeEvent.model_validate(raw)
    assert (poisoned.occurred_at, poisoned.clamped_from) == (now, 4102444800)
    st.records[("job", 35769)].update(status="scheduled", updated=now)
    matched(rt, poisoned)
    [received] = steps(rt, poisoned, "event.received")
    assert "4102444800 was more than 300 s ahead" in received["clamped"]
    assert rt.state.seen_at("servicetrade", "job", 35769) == now

    st.records[("job", 35769)].update(status="completed", updated=now + 1)
    genuine = update("job", 35769, now + 1, {"status": ("scheduled", "completed")})
    assert matched(rt, genuine) == ["job-completed"]
    assert 0 < rt.state.r.ttl("fieldrelay:entity:servicetrade:job:35769") <= rt.state.entities.ttl


def test_the_record_is_read_by_type_and_id_and_a_disagreeing_uri_is_noted(rt: Runtime, st: FakeServiceTrade):
    event = update("job", 35769, 100, None).model_copy(
        update={"entity": EntityRef(type="job", id=35769, uri="https://api.servicetrade.com/api/invoice/35789")}
    )
    assert matched(rt, event) == ["job-completed"]
    assert st.gets == ["/api/job/35769"]
    [received] = steps(rt, event, "event.received")
    assert received["uri"] == (
        "uri 'https://api.servicetrade.com/api/invoice/35789' names another record than job 35769; "
        "read /job/35769 by type and id"
    )
    odd = update("job", 35769, 101, None).model_copy(
        update={"entity": EntityRef(type="job", id=35769, uri="https://x/api/job/%2e%2e/35769")}
    )
    pipeline.process_event(odd, "t-odd", rt)
    assert st.gets == ["/api/job/35769"] * 2


def test_a_type_without_a_documented_read_is_not_fetched(rt: Runtime, st: FakeServiceTrade):
    clock = ChangeEvent(
        source="servicetrade", via="webhook", action="updated", entity=EntityRef(type="clockevent", id=5), occurred_at=1
    )
    pipeline.process_event(clock, "t", rt)
    assert st.gets == []


def test_an_event_that_could_not_be_decided_is_left_to_the_poller(rt: Runtime, st: FakeServiceTrade):
    failing = update("appointment", 754, 100, {})
    st.records.pop(("appointment", 754))
    st.during_get = lambda: (_ for _ in ()).throw(httpx.ConnectError("down"))
    with pytest.raises(Exception, match="down"):
        pipeline.process_event(failing, "t", rt)
    assert rt.state.seen_at("servicetrade", "appointment", 754) is None  # the poller will emit it
    assert rt.enqueued == []  # type: ignore[attr-defined]


def test_our_own_write_is_taken_into_the_stored_version(rt: Runtime, st: FakeServiceTrade):
    from workers.actions.servicetrade import JobUpdate

    job = st.records[("job", 35769)]
    job["customerPo"] = "PO-1"
    assert "po-changed" not in matched(rt, update("job", 35769, int(time.time()) - 10, {}))  # a first look
    job["customerPo"] = "FR-35769"  # a rule of ours wrote it; ServiceTrade echoes the update
    rt.echoes.remember("servicetrade.job.update", JobUpdate(jobId=35769, customerPo="FR-35769"), {})
    echo = update("job", 35769, int(time.time()), None)
    assert pipeline.process_event(echo, "t-echo", rt) == []
    assert rt.state.entities.read("servicetrade", "job", 35769).field("customerPo") == (True, "FR-35769")
    job["description"] = "a person's edit"
    assert "po-changed" not in matched(rt, update("job", 35769, int(time.time()) + 1, {}))  # not our write again


def test_a_field_past_the_size_bound_does_not_fire_its_rule_again_at_every_event(
    rt: Runtime, st: FakeServiceTrade, redis_client: redis.Redis, tmp_path: Path
):
    """A field dropped by FIELDRELAY_ENTITY_STATE_MAX_BYTES keeps a digest: `changed: {notes: {not_to: ""}}`
    fires on the first sighting and on a real change, never on an unrelated update (issue 11's promise)."""
    (tmp_path / "rules.yaml").write_text(
        RULES
        + """
  - name: long-notes
    mode: parallel
    when: {source: servicetrade, entity: job, action: updated, changed: {notes: {not_to: ""}}}
    then:
      - synchroteam.customer.upsert: {myId: "notes-{{ event.entity.id }}", name: "notes"}
"""
    )
    rt.state = PipelineState(redis_client, entity_max_bytes=1024)
    job = st.records[("job", 35769)]
    job.update(notes="n" * 4000, status="scheduled")
    first = update("job", 35769, 100, None)
    assert matched(rt, first) == ["long-notes"]  # first sighting: no earlier version to say otherwise
    stored = rt.state.entities.read("servicetrade", "job", 35769)
    assert stored.dropped == ("notes",) and stored.field("notes") == (False, None)

    job.update(description="a technician's note", updated=110)
    later = update("job", 35769, 110, None)
    assert matched(rt, later) == []
    [skipped] = [s for s in steps(rt, later, "rule.skipped") if s.get("rule") == "long-notes"]
    assert "'notes' did not change since the version fieldrelay saw last" in skipped["reason"]
    assert "compared by digest" in skipped["reason"]

    job.update(notes="m" * 4000, updated=120)
    assert matched(rt, update("job", 35769, 120, None)) == ["long-notes"]  # a real change still fires
    # A redelivery of that event compares with the version before it: the old digest, so it still matches.
    redelivered = update("job", 35769, 120, None)
    assert matched(rt, redelivered, task=f"task-{redelivered.id}") == ["long-notes"]


def matched_in_a_step(rt: Runtime, event: ChangeEvent, task: str | None = None) -> list[str]:
    """As a worker's step runs it: its writes batched, the record's version written with its first send."""
    with rt.state.batched():
        return matched(rt, event, task)


def test_a_batched_step_that_loses_the_version_race_writes_nothing_and_evaluates_again(
    rt: Runtime, st: FakeServiceTrade, metrics_tally, caplog
):
    matched_in_a_step(rt, update("appointment", 754, 100, {}))
    st.records[("appointment", 754)].update(status="completed", updated=200)
    first, second = update("appointment", 754, 200, {}), update("appointment", 754, 201, {})
    inner: list[str] = []
    # `second` runs whole, in a step of its own, while `first` is fetching: both read the same version.
    st.during_get = lambda: inner.extend(matched_in_a_step(rt, second))
    with caplog.at_level("INFO", logger="fieldrelay.trace"):
        outer = matched_in_a_step(rt, first)
    assert sorted(inner + outer) == ["appointment-done"]
    # `first` lost its first send, which was refused whole (its entries, its record, its run); evaluated
    # again against `second`'s version, it is stale.
    assert [s["step"] for s in rt.state.load_trace(first.id)] == ["event.stale"]
    logged = [r.getMessage() for r in caplog.records if getattr(r, "event_id", None) == first.id]
    assert logged == ["event.stale"]  # the refused attempt logged nothing either
    metrics_tally.flush()
    counted = rt.state.r.hgetall("fieldrelay:metrics:fieldrelay_events_received_total")
    assert sum(int(v) for v in counted.values()) == 2  # the first sighting and `second`, not `first`


def test_a_batched_write_that_keeps_losing_is_put_off_with_nothing_written(
    rt: Runtime, st: FakeServiceTrade, monkeypatch, metrics_tally
):
    event = update("appointment", 754, 100, {})
    key = rt.state.entities.key("servicetrade", "appointment", 754)
    real, writes = pipeline.next_version, iter(range(10, 99))

    def another_writer_first(*args: Any) -> Any:
        # Another event's version lands before each send (a token of 16 characters, then its fields).
        rt.state.r.set(key, f"{next(writes):016d}{{}}")
        return real(*args)

    monkeypatch.setattr(pipeline, "next_version", another_writer_first)
    with pytest.raises(Deferred) as deferred:
        matched_in_a_step(rt, event)
    assert deferred.value.reason == "busy"
    assert rt.state.load_trace(event.id) == [] and rt.state.load_event(event.id) is None
    assert rt.enqueued == []  # type: ignore[attr-defined]
    metrics_tally.flush()
    assert not rt.state.r.exists("fieldrelay:metrics:fieldrelay_events_received_total")
