"""ServiceTrade webhooks: the documented CRUD, message shape, retries and the delivery test controls."""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.testclient import TestClient

from tests.sandbox.conftest import HOOK, Catcher, add_hook


def test_webhook_crud_follows_the_docs(st_client: TestClient, catcher: Catcher) -> None:
    created = add_hook(st_client)
    assert created == {
        "id": created["id"],
        "uri": f"http://testserver/api/webhook/{created['id']}",
        "hookUrl": HOOK,
        "enabled": True,
        "confirmed": False,
        "includeChangesets": False,
    }
    assert st_client.get(f"/api/webhook/{created['id']}").json()["data"]["confirmed"] is True
    assert [p["data"] for p in catcher.probes] == [[]]  # confirmed by a POST the URL answered
    updated = st_client.put(f"/api/webhook/{created['id']}", json={"enabled": False}).json()["data"]
    assert updated["enabled"] is False and updated["includeChangesets"] is False
    listing = st_client.get("/api/webhook").json()["data"]
    assert (listing["page"], listing["totalPages"], len(listing["webhooks"])) == (1, 1, 1)
    assert st_client.delete(f"/api/webhook/{created['id']}").status_code == 200
    assert st_client.get(f"/api/webhook/{created['id']}").status_code == 404
    assert st_client.put(f"/api/webhook/{created['id']}", json={"enabled": True}).status_code == 404
    assert st_client.delete(f"/api/webhook/{created['id']}").status_code == 404
    assert st_client.post("/api/webhook", json={}).status_code == 400
    assert st_client.post("/api/webhook", json={"hookUrl": HOOK, "enabled": "yes"}).status_code == 400


def test_job_update_sends_the_documented_message(st_client: TestClient, catcher: Catcher) -> None:
    add_hook(st_client, includeChangesets=True)
    st_client.put("/api/job/35770", json={"status": "completed"})
    [message] = catcher.messages
    assert set(message) == {"messageId", "timestamp", "data"} and isinstance(message["timestamp"], str)
    [item] = message["data"]
    assert item["action"] == "updated" and isinstance(item["timestamp"], int)
    assert item["entity"] == {"type": "job", "id": 35770, "uri": "http://testserver/api/job/35770"}
    assert item["changeset"] == [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}]


def test_changesets_only_when_asked_and_only_on_updates(st_client: TestClient, catcher: Catcher) -> None:
    add_hook(st_client)
    st_client.put("/api/job/35770", json={"status": "completed"})
    st_client.post("/api/appointment", json={"jobId": 35770})
    assert "changeset" not in catcher.messages[0]["data"][0]
    assert catcher.messages[1]["data"][0]["action"] == "created"
    assert "changeset" not in catcher.messages[1]["data"][0]


def test_disabled_and_unconfirmed_hooks_get_nothing(st_client: TestClient, catcher: Catcher, st_app: Any) -> None:
    hook = add_hook(st_client, enabled=False)
    st_client.put("/api/job/35770", json={"description": "x"})
    st_client.put(f"/api/webhook/{hook['id']}", json={"enabled": True})
    st_app.state.sandbox.dispatcher.set_controls({"auto_confirm": False})
    add_hook(st_client)
    st_client.put("/api/job/35770", json={"description": "y"})
    assert len(catcher.messages) == 1  # only the re-enabled, confirmed hook, only the later change


def test_retries_5xx_then_discards_and_counts_4xx_as_delivered(st_app: Any, st_client: TestClient) -> None:
    catcher = Catcher(500, 503, 502, 404)
    dispatcher = st_app.state.sandbox.dispatcher
    dispatcher.transport = httpx.MockTransport(catcher)
    dispatcher.set_controls({"retry_delay": 0})
    add_hook(st_client)
    st_client.put("/api/job/35770", json={"description": "first"})
    st_client.put("/api/job/35770", json={"description": "second"})
    outcomes = [entry["outcome"] for entry in st_client.get("/_sandbox/webhook/deliveries").json()]
    assert outcomes == ["failed", "failed", "failed", "discarded", "delivered"]
    assert len({m["messageId"] for m in catcher.messages[:3]}) == 1


def test_network_errors_are_retried(st_app: Any, st_client: TestClient) -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["messageId"].startswith("confirm-"):
            return httpx.Response(200)  # the confirmation probe gets through
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        return httpx.Response(200)

    st_app.state.sandbox.dispatcher.transport = httpx.MockTransport(flaky)
    st_app.state.sandbox.dispatcher.set_controls({"retry_delay": 0})
    add_hook(st_client)
    st_client.put("/api/job/35770", json={"description": "x"})
    log = st_client.get("/_sandbox/webhook/deliveries").json()
    assert [e["outcome"] for e in log] == ["error", "delivered"]


def test_duplicates_drops_hold_and_shuffle(st_client: TestClient, catcher: Catcher) -> None:
    add_hook(st_client)
    st_client.put("/_sandbox/webhook/controls", json={"duplicates": 2})
    st_client.put("/api/job/35770", json={"description": "x"})
    assert len(catcher.messages) == 2 and catcher.messages[0] == catcher.messages[1]

    st_client.put("/_sandbox/webhook/controls", json={"duplicates": 1, "drop_next": 1})
    st_client.put("/api/job/35770", json={"description": "y"})
    assert len(catcher.messages) == 2

    st_client.put("/_sandbox/webhook/controls", json={"hold": True, "shuffle": True, "seed": 3})
    for n in range(6):
        st_client.put("/api/job/35770", json={"description": f"held {n}"})
    assert len(catcher.messages) == 2
    st_client.put("/_sandbox/webhook/controls", json={"hold": False})
    assert st_client.post("/_sandbox/webhook/flush").json() == {"released": 6}
    released = [m["data"][0]["timestamp"] for m in catcher.messages[2:]]
    assert len(released) == 6
    assert st_client.put("/_sandbox/webhook/controls", json={"bogus": 1}).status_code == 400


def test_emit_sends_the_documented_sample_as_one_message(st_client: TestClient, catcher: Catcher) -> None:
    add_hook(st_client, includeChangesets=True)
    sample = {
        "data": [
            {"action": "created", "type": "job", "id": 34872, "timestamp": 1401833052},
            {"action": "updated", "type": "invoice", "id": 9623, "timestamp": 1401833052},
            {
                "action": "updated",
                "type": "job",
                "id": 35769,
                "timestamp": 1401833052,
                "changeset": [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}],
            },
            {"action": "deleted", "type": "attachment", "id": 453845, "timestamp": 1401833052},
        ]
    }
    assert st_client.post("/_sandbox/webhook/emit", json=sample).status_code == 200
    [message] = catcher.messages
    assert [i.get("changeset") for i in message["data"]] == [
        None,
        [],
        [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}],
        None,
    ]
    for item in message["data"][:3]:
        assert st_client.get(item["entity"]["uri"].replace("http://testserver", "")).status_code == 200


def test_control_entities_change_records_and_notify(st_client: TestClient, catcher: Catcher) -> None:
    add_hook(st_client, includeChangesets=True)
    created = st_client.post("/_sandbox/entities/job", json={"status": "new", "type": "repair", "locationId": 33})
    job_id = created.json()["id"]
    st_client.patch(f"/_sandbox/entities/job/{job_id}", json={"status": "scheduled"})
    st_client.delete(f"/_sandbox/entities/job/{job_id}")
    actions = [m["data"][0]["action"] for m in catcher.messages]
    assert actions == ["created", "updated", "deleted"]
    assert catcher.messages[1]["data"][0]["changeset"][0]["newValue"] == "scheduled"
    assert st_client.get(f"/api/job/{job_id}").status_code == 404


def test_a_hook_that_fails_the_documented_requirements_is_never_confirmed(st_client: TestClient, st_app: Any) -> None:
    """Seed 002, "Confirmation": "To be confirmed, a webhook must meet all the requirements listed in
    'Webhook Requirements'" ("Accept HTTP POST requests", "Respond with HTTP status code between 200-499").
    Old: every hook was confirmed at once, checks or not."""
    st_app.state.sandbox.dispatcher.transport = httpx.MockTransport(lambda r: httpx.Response(503))
    refused = add_hook(st_client)
    st_app.state.sandbox.dispatcher.transport = httpx.MockTransport(lambda r: httpx.Response(405))
    wrong_verb = add_hook(st_client)
    st_app.state.sandbox.dispatcher.transport = httpx.MockTransport(lambda r: httpx.Response(204))
    fine = add_hook(st_client)
    confirmed = {h["id"]: h["confirmed"] for h in st_client.get("/api/webhook").json()["data"]["webhooks"]}
    # 405 is inside 200-499, but it says the URL does not "Accept HTTP POST requests".
    assert confirmed == {refused["id"]: False, wrong_verb["id"]: False, fine["id"]: True}
