"""ServiceTrade sandbox divergences from seed 002, fixed; and what it now serves: OAuth2 bearer tokens, both
readings of `limit`, attachments, job creation, service requests and clock events."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from sandbox import servicetrade
from sandbox.runner import SandboxRunner
from sandbox.servicetrade_store import ServiceTradeState
from tests.sandbox.conftest import FakeClock
from workers.connectors.servicetrade import ServiceTradeClient


def test_attachment_list_without_entity_is_405(st_client: TestClient) -> None:
    """Seed 002, "Attachment" Response Codes: GET /attachment 405 "missing required query params"; entityId and
    entityType are "(required)". Old: 400, and 200 when only updatedAfter was given."""
    assert st_client.get("/api/attachment").status_code == 405
    assert st_client.get("/api/attachment", params={"updatedAfter": 0}).status_code == 405
    assert st_client.get("/api/attachment", params={"entityId": 35769, "entityType": 3}).status_code == 200


def test_upload_then_list_on_the_job(st_client: TestClient) -> None:
    """Seed 002, "Upload a file": multipart with uploadedFile, purposeId, entityType, entityId."""
    files = {"uploadedFile": ("report.txt", b"all good", "text/plain")}
    form = {"purposeId": "1", "entityType": "3", "entityId": "35769", "description": "Field report"}
    created = st_client.post("/api/attachment", data=form, files=files).json()["data"]
    assert (created["fileName"], created["purpose"], created["entity"]["id"]) == ("report.txt", "Job Paperwork", 35769)
    assert created["checksum"] == "a1a2e3b1e6e6ba20a3e2c0b6ba4fa0b3" or len(created["checksum"]) == 32
    listed = st_client.get("/api/attachment", params={"entityId": 35769, "entityType": 3}).json()["data"]
    assert created["id"] in [a["id"] for a in listed["attachments"]]
    assert st_client.post("/api/attachment", data={**form, "purposeId": "4"}, files=files).status_code == 400
    assert st_client.post("/api/attachment", data=form).status_code == 400


def test_oauth2_tokens_open_the_api_and_bad_grants_do_not(st_app: Any) -> None:
    """Not in seed 002; the official SDK's `setBearerToken` sends `Authorization: Bearer <token>`."""
    client = TestClient(st_app)
    assert client.get("/api/job/35769").status_code == 401
    token = client.post(
        "/api/oauth2/token", data={"grant_type": "password", "username": "sandbox", "password": "sandbox-password"}
    ).json()["access_token"]
    assert client.get("/api/job/35769", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    machine = client.post(
        "/api/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-client-secret",
        },
    )
    assert machine.json()["token_type"] == "Bearer"
    assert client.post("/api/oauth2/token", data={"grant_type": "password", "username": "x"}).status_code == 400
    assert client.post("/api/oauth2/token", data={"grant_type": "client_credentials"}).status_code == 401
    assert client.post("/api/oauth2/token", data={"grant_type": "implicit"}).json()["error"] == "unsupported_grant_type"
    assert client.get("/api/job/35769", headers={"Authorization": "Bearer nope"}).status_code == 401


@pytest.mark.parametrize("mode", ["page", "cap"])
def test_more_than_2000_jobs_in_one_window_are_all_listed(mode: str, clock: FakeClock) -> None:
    """Seed 002, "Job" Query Params: `limit` "limit the jobs returned (default 2000, maximum 2000)";
    "Pagination": totalPages and page. The sandbox serves both readings (page size, or a cap with no paging);
    the connector lists 2,500 jobs updated within one window whole under either."""
    state = ServiceTradeState(clock=clock)
    clock.now = 1_800_000_000
    for n in range(2500):
        state.create("job", {"status": "scheduled", "locationId": 33, "updated": 0})
        clock.now += 0 if n % 5 else 1
    state.limit_mode = mode
    app = servicetrade.create_app(state)
    runner = SandboxRunner({"servicetrade": app}).start()
    client = ServiceTradeClient(runner.urls["servicetrade"], "sandbox", SecretStr("sandbox-password"))
    try:
        rows = list(client.iter_window("job", 1_800_000_000, int(clock.now), status="scheduled"))
    finally:
        client.close()
        runner.stop()
    created = {r["id"] for r in rows if r.get("created", 0) >= 1_800_000_000}
    assert len(created) == 2500
    if mode == "cap":
        plain = TestClient(app)
        plain.cookies.set("PHPSESSID", state.open_session("sandbox"))
        raw = plain.get("/api/job", params={"status": "scheduled", "updatedAfter": 1_800_000_000}).json()["data"]
        assert "totalPages" not in raw and len(raw["jobs"]) == 2000  # the cap the connector has to see through


def test_job_create_service_close_out_and_clock(st_client: TestClient, st_app: Any) -> None:
    """Seed 002: "Job" POST (locationId required, number generated); "Service Request" PUT status closed;
    "Clockin/Clockout": GET /clock "403 must provide at least one filter"."""
    job = st_client.post("/api/job", json={"locationId": 33, "type": "repair", "description": "New"}).json()["data"]
    assert job["number"] and job["status"] == "new"
    assert st_client.post("/api/job", json={"type": "repair"}).status_code == 400
    closed = st_client.put("/api/servicerequest/9901", json={"status": "closed"}).json()["data"]
    assert closed["status"] == "closed"
    assert st_client.put("/api/servicerequest/9901", json={"status": "done"}).status_code == 400
    assert st_client.get("/api/clock").status_code == 403
    st_app.state.sandbox.create("clock", {"type": "clock-in", "eventTime": 100, "jobId": 35769, "userId": 6})
    events = st_client.get("/api/clock", params={"startTime": 0, "endTime": 200}).json()["data"]["events"]
    assert [e["eventTime"] for e in events] == [100]


def test_comment_list_takes_both_readings_of_the_seed(st_client: TestClient) -> None:
    """Seed 002, "Comment": the table answers GET /comment with 405 "not allowed", while the query params
    require `entityType` (and `entityId` unless a date filter is given) and the example lists job 41's comments."""
    assert st_client.get("/api/comment").status_code == 405
    assert st_client.get("/api/comment", params={"entityId": 35769}).status_code == 405
    assert st_client.get("/api/comment", params={"entityType": 3}).status_code == 405
    posted = st_client.post("/api/job/35769/comment", json={"content": "on site", "visibility": ["tech"]})
    assert posted.status_code == 200
    comment_id = posted.json()["data"]["id"]
    listed = st_client.get("/api/comment", params={"entityId": 35769, "entityType": 3}).json()["data"]
    assert comment_id in [c["id"] for c in listed["comments"]] and listed["totalPages"] == 1
    # The same comments as the job's own comment endpoint, cascade included.
    via_job = st_client.get("/api/job/35769/comment").json()["data"]["comments"]
    assert [c["id"] for c in listed["comments"]] == [c["id"] for c in via_job]
    by_date = st_client.get("/api/comment", params={"entityType": 3, "createdAfter": 0}).json()["data"]["comments"]
    assert comment_id in [c["id"] for c in by_date] and all(c["entity"]["type"] == 3 for c in by_date)
    assert not st_client.get(
        "/api/comment", params={"entityId": 35769, "entityType": 3, "visibility": "billing"}
    ).json()["data"]["comments"]
    assert st_client.get("/api/comment", params={"entityType": "job", "entityId": 1}).status_code == 400
