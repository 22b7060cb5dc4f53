"""The console through the receiver's app (TestClient) on a real Redis: sign-in, pages, CSRF, actions."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from fieldrelay.consumers import OWNERS, UNACKED, UNACKED_INDEX, Leases
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from receiver.app import create_app
from workers.actions.registry import action_params

ROOT = Path(__file__).parents[3]
TOKEN = "console-token-0123456789"
EVENT = {
    "source": "servicetrade",
    "via": "webhook",
    "action": "updated",
    "occurred_at": 1700000000,
    "entity": {"type": "job", "id": 35769, "uri": None},
    "message_id": "m-1",
    "changes": None,
}


@pytest.fixture
def settings(redis_url, tmp_path) -> Settings:
    return Settings(
        redis_url=redis_url,
        data_dir=tmp_path,
        webhook_tokens="hook-token-abcdef",
        console_token=TOKEN,
        rules_dir=ROOT / "rules" / "examples",
        synchroteam_api_key="synchro-secret-key-1",
    )


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, action_params()), base_url="https://testserver") as c:
        yield c


@pytest.fixture
def signed_in(client) -> TestClient:
    resp = client.post("/console/login", data={"token": TOKEN, "next": "/console/events"}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/console/events"
    return client


@pytest.fixture
def state(redis_url) -> PipelineState:
    return PipelineState(redis.Redis.from_url(redis_url))


def csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match is not None, "no csrf field in the page"
    return match.group(1)


def failed_event(state: PipelineState) -> str:
    state.save_event("ev1", EVENT)
    state.save_rule("d1", {"name": "mirror"})
    state.trace("ev1", Step.RECEIVED, via="webhook")
    state.trace("ev1", Step.RULE_MATCHED, rule="mirror", reason="")
    state.trace(
        "ev1",
        Step.ACTION_STARTED,
        rule="mirror",
        index=0,
        action="synchroteam.job.upsert",
        params={"myId": "st-job-35769"},
    )
    state.trace(
        "ev1",
        Step.ACTION_FAILED,
        rule="mirror",
        index=0,
        action="synchroteam.job.upsert",
        target="synchroteam",
        error="SynchroteamRejected: 400 no customer",
        attempts=1,
    )
    return state.dead_letter(
        {
            "event_id": "ev1",
            "rule": "mirror",
            "rule_digest": "d1",
            "index": 0,
            "action": "synchroteam.job.upsert",
            "target": "synchroteam",
            "error": "SynchroteamRejected: 400 no customer",
            "attempts": 1,
        }
    )


def test_pages_need_the_token(client):
    resp = client.get("/console/events", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/console/login?next=/console/events"
    assert client.post("/console/login", data={"token": "wrong"}).status_code == 401
    assert client.post("/console/targets/http/pause", data={"csrf": "x"}).status_code == 403
    assert client.get("/console/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_without_a_token_the_console_is_off(redis_url, tmp_path):
    with TestClient(create_app(Settings(redis_url=redis_url, data_dir=tmp_path), action_params())) as c:
        resp = c.get("/console/")
    assert resp.status_code == 503 and "FIELDRELAY_CONSOLE_TOKEN" in resp.text


def test_event_list_and_trace_page(signed_in, state):
    failed_event(state)
    page = signed_in.get("/console/events?outcome=failed").text
    assert "/console/events/ev1" in page and "mirror" in page
    assert "ev1" not in signed_in.get("/console/events?outcome=succeeded").text
    trace = signed_in.get("/console/events/ev1").text
    for text in (
        "event.received",
        "rule.matched",
        "action.failed",
        "SynchroteamRejected: 400 no customer",
        "st-job-35769",
        "Retry",
    ):
        assert text in trace
    assert signed_in.get("/console/events/nope").status_code == 404


def test_retry_needs_csrf_and_then_enqueues(signed_in, state, redis_url):
    dlq_id = failed_event(state)
    page = signed_in.get("/console/dead-letters").text
    assert dlq_id in page
    assert signed_in.post(f"/console/dead-letters/{dlq_id}/retry", data={"csrf": "0" * 64}).status_code == 403
    resp = signed_in.post(f"/console/dead-letters/{dlq_id}/retry", data={"csrf": csrf(page)})
    assert resp.status_code == 200 and f"Dead letter {dlq_id} retried" in resp.text
    assert state.dead_letters() == []
    assert redis.Redis.from_url(redis_url).llen("actions.synchroteam") == 1


def test_targets_pause_and_resume(signed_in, state):
    page = signed_in.get("/console/targets").text
    resp = signed_in.post("/console/targets/synergist/pause", data={"csrf": csrf(page)})
    assert "synergist paused" in resp.text and state.target_paused("synergist")
    assert "Resume synergist" in resp.text
    signed_in.post("/console/targets/synergist/resume", data={"csrf": csrf(page)})
    assert not state.target_paused("synergist")


def test_overview_shows_counts_and_the_chart(signed_in, state):
    failed_event(state)
    state.record_rate("synchroteam", {"limit": 120, "remaining": 55, "quota_remaining": 4000})
    page = signed_in.get("/console/").text
    assert '<b id="dlq-size">1</b>' in page
    assert "<svg" in page and "55 / 120" in page and "4000" in page


def test_overview_shows_work_stranded_on_a_dead_worker_with_its_age(signed_in, state):
    assert "Nothing is stranded" in signed_in.get("/console/").text
    Leases(state.r).renew("live-host:1:aa")
    message = {"headers": {"task": "fieldrelay.run_action"}, "body": "", "properties": {"delivery_tag": "t"}}
    for tag, owner, age in (("t-held", "live-host:1:aa", 5), ("t-dead", "dead-host:2:bb", 42)):
        state.r.hset(UNACKED, tag, json.dumps([message, "", "actions.servicetrade"]))
        state.r.zadd(UNACKED_INDEX, {tag: time.time() - age})
        state.r.hset(OWNERS, tag, owner)
    page = signed_in.get("/console/").text
    assert "1 message(s) taken by live workers" in page
    [row] = re.findall(r'<table id="stranded">.*?</table>', page, re.S)
    assert "orphaned" in row and "dead-host:2:bb" in row and "actions.servicetrade" in row
    assert re.search(r"<td>4[23] s</td>", row) and "live-host" not in row


def test_rules_page_and_dry_run(signed_in):
    page = signed_in.get("/console/rules").text
    assert "completed-job-to-synchroteam" in page
    event = (ROOT / "examples" / "webhook-sample.json").read_text()
    entity = (ROOT / "examples" / "job-35769.json").read_text()
    resp = signed_in.post("/console/rules/test", data={"csrf": csrf(page), "event": event, "entity": entity})
    assert "MATCH completed-job-to-synchroteam" in resp.text
    assert "st-company-39" in resp.text
    bad = signed_in.post("/console/rules/test", data={"csrf": csrf(page), "event": "{", "entity": ""})
    assert "event: not JSON" in bad.text


def test_secrets_never_reach_a_page(signed_in, state):
    state.save_event("ev2", {**EVENT, "changes": {"notes": {"old": None, "new": "key synchro-secret-key-1"}}})
    state.trace("ev2", "event.received", via="webhook")
    page = signed_in.get("/console/events/ev2").text
    assert "synchro-secret-key-1" not in page and "[redacted]" in page


def test_metrics_endpoint(client, state):
    failed_event(state)
    body = client.get("/metrics").text
    assert 'fieldrelay_actions_total{action="synchroteam.job.upsert",outcome="failed",target="synchroteam"} 1.0' in body
    assert "fieldrelay_dlq_size 1.0" in body


def test_rules_page_shows_what_the_workers_run(signed_in, redis_client):
    import json as _json

    redis_client.set(
        "fieldrelay:rules:status",
        _json.dumps(
            {
                "ok": False,
                "rules": 3,
                "digest": "0" * 16,
                "loaded_at": 1700000000.0,
                "errors": ["rules/x.yaml:2:3: rules[0].when.entity: 'jobb' is not a ServiceTrade entity type"],
            }
        ),
    )
    page = signed_in.get("/console/rules").text
    assert "Workers run 3 rule(s), loaded 2023-11-14 22:13:20Z" in page
    assert "a different set from the files this receiver reads" in page
    assert "&#39;jobb&#39; is not a ServiceTrade entity type" in page


def test_the_rules_page_shows_a_rule_with_a_large_constant_without_building_it(settings, tmp_path):
    # The page lists the rule as written; the constant its template would build (a 100,000-item list)
    # is neither rendered into the page nor folded into what the receiver holds (tests/rules/test_templating.py).
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "big.yaml").write_text(
        "rules:\n"
        "  - name: big-constant\n"
        "    when: {source: servicetrade, entity: job, action: updated}\n"
        "    if: \"entity.type in ('a' | center(100000) | list)\"\n"
        "    then:\n"
        "      - http.request: {url: 'https://example.com/x', json: {a: \"{{ 'a' | center(100000) | list }}\"}}\n"
    )
    app = create_app(settings.model_copy(update={"rules_dir": rules}), action_params())
    with TestClient(app, base_url="https://testserver") as client:
        client.post("/console/login", data={"token": TOKEN, "next": "/console/rules"})
        page = client.get("/console/rules").text
    assert "big-constant" in page and "does not load" not in page
    assert len(page) < 50_000
