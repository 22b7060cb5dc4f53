"""ServiceTrade sandbox: sessions, entity reads, documented list defaults and job actions."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from sandbox import servicetrade
from tests.sandbox.conftest import FakeClock


def login(client: TestClient, password: str = "sandbox-password") -> Any:
    return client.post("/api/auth", json={"username": "sandbox", "password": password})


def test_heartbeat_needs_no_session(st_app: Any, clock: FakeClock) -> None:
    body = TestClient(st_app).get("/api/").json()
    assert body == {"data": {"version": "1.2.3", "serverTime": int(clock.now)}}


def test_login_sets_the_phpsessid_cookie_to_the_auth_token(st_app: Any) -> None:
    client = TestClient(st_app)
    response = login(client)
    token = response.json()["data"]["authToken"]
    assert response.status_code == 200
    assert response.json()["data"]["authenticated"] is True
    assert f"PHPSESSID={token}" in response.headers["set-cookie"]
    assert client.get("/api/job/35769").status_code == 200


def test_login_failures_use_the_documented_codes(st_app: Any) -> None:
    client = TestClient(st_app)
    assert client.post("/api/auth", json={"username": "sandbox"}).status_code == 400
    denied = login(client, "wrong")
    assert denied.status_code == 403
    assert denied.json()["messages"] == {"error": ["Invalid credentials provided"]}
    assert denied.json()["data"]["user"] is None
    assert client.put("/api/auth").status_code == 405
    assert client.post("/api/auth/foo").status_code == 405


def test_requests_without_a_valid_session_get_401_with_the_envelope(st_app: Any) -> None:
    client = TestClient(st_app)
    for cookies in ({}, {"PHPSESSID": "not-a-session"}):
        client.cookies.clear()
        client.cookies.update(cookies)
        response = client.get("/api/job/35769")
        assert response.status_code == 401
        assert list(response.json()) == ["messages"] and response.json()["messages"]["error"]


def test_session_can_be_inspected_and_closed(st_client: TestClient) -> None:
    assert st_client.get("/api/auth").json()["data"]["user"]["username"] == "sandbox"
    assert st_client.delete("/api/auth").status_code == 204
    missing = st_client.get("/api/auth")
    assert missing.status_code == 404
    assert missing.json()["messages"]["error"] == ["No active session found for given auth token"]
    assert st_client.delete("/api/auth").status_code == 404
    assert st_client.get("/api/job/35769").status_code == 401


def test_sample_webhook_records_exist_with_absolute_uris(st_client: TestClient) -> None:
    job = st_client.get("/api/job/35769").json()["data"]
    assert (job["type"], job["status"], job["name"]) == ("repair", "completed", "Job 35769")
    assert job["customer"] == {
        "uri": "http://testserver/api/company/39",
        "id": 39,
        "name": "Big Bang Burger Bar",
        "status": "active",
    }
    assert job["location"]["id"] == 33 and job["uri"] == "http://testserver/api/job/35769"
    assert isinstance(job["created"], int) and isinstance(job["updated"], int)
    assert st_client.get("/api/job/34872").status_code == 200
    assert st_client.get("/api/invoice/9623").json()["data"]["job"]["id"] == 35769


def test_every_documented_entity_type_reads_and_misses(st_client: TestClient) -> None:
    ids = {
        "job": 35769,
        "appointment": 754,
        "location": 33,
        "company": 39,
        "contact": 501,
        "invoice": 9623,
        "quote": 8801,
        "deficiency": 7701,
        "asset": 6601,
        "user": 6,
        "attachment": 453845,
        "servicerequest": 9901,
    }
    for entity_type, entity_id in ids.items():
        found = st_client.get(f"/api/{entity_type}/{entity_id}")
        assert found.status_code == 200, entity_type
        assert found.json()["data"]["uri"].endswith(f"/api/{entity_type}/{entity_id}")
        missing = st_client.get(f"/api/{entity_type}/999999")
        assert missing.status_code == 404 and missing.json()["messages"]["error"]


def test_job_list_defaults_to_scheduled_unless_a_number_is_given(st_client: TestClient) -> None:
    jobs = st_client.get("/api/job").json()["data"]["jobs"]
    assert jobs and {j["status"] for j in jobs} == {"scheduled"}
    number = st_client.get("/api/job/35773").json()["data"]["number"]
    by_number = st_client.get("/api/job", params={"number": number}).json()["data"]["jobs"]
    assert [j["id"] for j in by_number] == [35773]


def test_job_status_all_excludes_canceled(st_client: TestClient) -> None:
    statuses = {j["status"] for j in st_client.get("/api/job?status=all").json()["data"]["jobs"]}
    assert "canceled" not in statuses
    assert statuses >= {"new", "scheduled", "completed", "bidding", "closed"}
    canceled = st_client.get("/api/job?status=canceled").json()["data"]["jobs"]
    assert [j["status"] for j in canceled] == ["canceled"]
    assert st_client.get("/api/job?status=bogus").status_code == 400


def test_appointment_list_excludes_unscheduled_by_default(st_client: TestClient) -> None:
    default = st_client.get("/api/appointment").json()["data"]["appointments"]
    assert default and "unscheduled" not in {a["status"] for a in default}
    explicit = st_client.get("/api/appointment?status=unscheduled").json()["data"]["appointments"]
    assert explicit and {a["status"] for a in explicit} == {"unscheduled"}


def test_location_list_pages_by_ten_customer_locations(st_client: TestClient) -> None:
    first = st_client.get("/api/location").json()["data"]
    second = st_client.get("/api/location?page=2").json()["data"]
    assert (first["page"], second["page"], first["totalPages"]) == (1, 2, 2)
    assert len(first["locations"]) == 10
    seen = [loc["id"] for loc in first["locations"] + second["locations"]]
    assert len(seen) == len(set(seen)) == 14
    assert 23 not in seen  # a vendor office, not a customer location
    offices = st_client.get("/api/location?isVendor=true").json()["data"]["locations"]
    assert {loc["id"] for loc in offices} == {23, 69}


def test_limit_and_page_walk_every_job(st_client: TestClient) -> None:
    seen: list[int] = []
    page, total = 1, 1
    while page <= total:
        data = st_client.get("/api/job", params={"status": "all", "limit": 3, "page": page}).json()["data"]
        total = data["totalPages"]
        seen += [j["id"] for j in data["jobs"]]
        page += 1
    assert total == 5 and len(seen) == len(set(seen)) == 13


def test_updated_and_created_bounds_are_inclusive(st_client: TestClient) -> None:
    job = st_client.get("/api/job/35769").json()["data"]
    query = {"status": "all", "updatedAfter": job["updated"], "updatedBefore": job["updated"]}
    assert [j["id"] for j in st_client.get("/api/job", params=query).json()["data"]["jobs"]] == [35769]
    query = {"status": "all", "createdAfter": job["created"], "createdBefore": job["created"]}
    assert 35769 in [j["id"] for j in st_client.get("/api/job", params=query).json()["data"]["jobs"]]
    assert st_client.get("/api/job?updatedAfter=soon").status_code == 400


def test_put_job_updates_allowed_fields_and_bumps_updated(st_client: TestClient, clock: FakeClock) -> None:
    clock.advance(60)
    response = st_client.put("/api/job/35770", json={"status": "completed", "number": 1, "description": "Done"})
    job = response.json()["data"]
    assert (job["status"], job["description"], job["updated"]) == ("completed", "Done", int(clock.now))
    assert job["number"] != 1  # not settable
    assert st_client.put("/api/job/35770", json={"status": "finished"}).status_code == 400
    assert st_client.put("/api/job/1", json={"status": "closed"}).status_code == 404
    assert st_client.delete("/api/job").status_code == 405
    assert st_client.put("/api/job/35769", json={"budgeted": True}).status_code == 409


def test_job_comment_and_appointment_creation(st_client: TestClient) -> None:
    comment = st_client.post("/api/job/35769/comment", json={"content": "Hood cleaned", "visibility": ["tech"]})
    assert comment.status_code == 200
    assert comment.json()["data"]["entity"] == {
        "id": 35769,
        "uri": "http://testserver/api/job/35769",
        "type": 3,
    }
    assert st_client.post("/api/job/35769/comment", json={}).status_code == 400
    comment_id = comment.json()["data"]["id"]
    listed = st_client.get("/api/job/35769/comment").json()["data"]["comments"]
    assert [c["id"] for c in listed] == [comment_id] and listed[0]["author"]["name"] == "Sandbox Admin"
    assert st_client.get(f"/api/comment/{comment_id}").json()["data"]["content"] == "Hood cleaned"
    assert st_client.post("/api/appointment", json={"status": "scheduled"}).status_code == 400
    created = st_client.post("/api/appointment", json={"jobId": 34872, "techIds": [6]}).json()["data"]
    assert created["status"] == "scheduled" and created["job"]["id"] == 34872
    assert created["techs"][0]["id"] == 6


def test_a_jobs_comments_cascade_from_its_location_and_customer_as_documented(
    st_client: TestClient, st_app: Any
) -> None:
    """Seed 002, "Cascaded Comments": the job's list also holds its location's and customer's tech and schedule
    comments, with their own entity; a private one of theirs is not listed, nor another location's."""
    st = st_app.state.sandbox  # job 35769: location 33, customer 39
    own = st_client.post("/api/job/35769/comment", json={"content": "on the job"}).json()["data"]["id"]
    tech = st.create("comment", {"content": "gate code 1234", "visibility": ["tech"], "entityType": 11, "entityId": 33})
    st.create("comment", {"content": "private", "visibility": [], "entityType": 11, "entityId": 33})
    billing = st.create("comment", {"content": "net 30", "visibility": ["schedule"], "entityType": 5, "entityId": 39})
    st.create("comment", {"content": "elsewhere", "visibility": ["tech"], "entityType": 11, "entityId": 34})
    listed = st_client.get("/api/job/35769/comment").json()["data"]["comments"]
    assert {c["id"]: c["entity"]["type"] for c in listed} == {own: 3, tech["id"]: 11, billing["id"]: 5}
    tech_only = st_client.get("/api/job/35769/comment", params={"visibility": "tech"}).json()["data"]["comments"]
    assert [c["id"] for c in tech_only] == [tech["id"]]


def test_reset_restores_the_seed(st_client: TestClient, st_app: Any) -> None:
    st_client.put("/api/job/35770", json={"status": "completed"})
    assert st_client.post("/_sandbox/reset").status_code == 204
    state: servicetrade.ServiceTradeState = st_app.state.sandbox
    job = state.get("job", 35770)
    assert job is not None and job["status"] == "scheduled"
    assert state.sessions == {}


def test_appointment_update(st_client: TestClient, clock: FakeClock) -> None:
    clock.advance(30)
    moved = st_client.put("/api/appointment/754", json={"status": "completed", "techIds": [16]}).json()["data"]
    assert (moved["status"], moved["updated"], [t["id"] for t in moved["techs"]]) == ("completed", int(clock.now), [16])
    assert st_client.put("/api/appointment/754", json={"status": "done"}).status_code == 400
    assert st_client.put("/api/appointment/1", json={"status": "completed"}).status_code == 404


def test_sessions_past_the_hard_limit_fall_back_to_the_soft_limit() -> None:
    state = servicetrade.ServiceTradeState()
    tokens = [state.open_session("sandbox") for _ in range(201)]
    assert len(state.sessions) == 100
    assert tokens[0] not in state.sessions and tokens[-1] in state.sessions
