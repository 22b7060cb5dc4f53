"""ServiceTradeClient against the ServiceTrade sandbox over real HTTP: every method the actions use, every error."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from sandbox.servicetrade_store import SESSION_HARD_LIMIT
from tests.contracts.conftest import PASSWORD, Served
from workers.connectors.errors import AuthFailed, NotFound, Rejected, Unavailable
from workers.connectors.servicetrade import (
    ServiceTradeAuthFailed,
    ServiceTradeClient,
    ServiceTradeNotFound,
    ServiceTradeRejected,
    ServiceTradeUnavailable,
)


@pytest.fixture
def sandbox(shared: Callable[[str], Served]) -> Served:
    return shared("servicetrade")


@pytest.fixture
def client_for(sandbox: Served, closing: Callable[[Any], Any]) -> Callable[..., ServiceTradeClient]:
    def make(password: str = PASSWORD, timeout: float = 5.0) -> ServiceTradeClient:
        return closing(ServiceTradeClient(sandbox.url, "sandbox", SecretStr(password), timeout=timeout))

    return make


@pytest.fixture
def client(client_for: Callable[..., ServiceTradeClient]) -> ServiceTradeClient:
    return client_for()


def calls(sandbox: Served) -> list[tuple[str, str, int]]:
    return [(r["method"], r["path"], r["status"]) for r in sandbox.requests()]


# Happy paths


def test_logs_in_once_and_reads_an_entity_by_uri_or_by_type_and_id(sandbox: Served, client: ServiceTradeClient):
    # A webhook's uri names the real host; the client resolves it against its own base URL.
    by_uri = client.get("https://api.servicetrade.com/api/job/35769")
    by_id = client.get_entity("job", 35769)

    assert by_uri == by_id
    assert (by_uri["id"], by_uri["status"], by_uri["type"]) == (35769, "completed", "repair")
    assert by_uri["customer"]["id"] == 39
    assert by_uri["uri"] == f"{sandbox.url}/job/35769"
    assert calls(sandbox) == [
        ("POST", "/api/auth", 200),
        ("GET", "/api/job/35769", 200),
        ("GET", "/api/job/35769", 200),
    ]
    [login, *reads] = sandbox.requests()
    assert login["json"] == {"username": "sandbox", "password": "[redacted]"}
    assert {r["auth_identity"]["session_valid"] for r in reads} == {True}


def test_comment_job_posts_a_comment_the_job_then_lists(sandbox: Served, client: ServiceTradeClient):
    comment = client.comment_job(35769, "Copied to Synchroteam", ["tech"])

    assert comment["content"] == "Copied to Synchroteam"
    assert comment["visibility"] == ["tech"]
    assert comment["entity"]["id"] == 35769
    assert comment["author"]["id"] == 2  # the sandbox user the session belongs to
    listed: Mapping[str, Any] = client.get("/job/35769/comment")  # a list path: data.comments
    assert [c["id"] for c in listed["comments"]] == [comment["id"]]


def test_update_job_changes_the_record(sandbox: Served, client: ServiceTradeClient):
    updated = client.update_job(35770, {"description": "Replace the flange", "customerPo": "PO-1"})

    assert (updated["id"], updated["description"], updated["customerPo"]) == (35770, "Replace the flange", "PO-1")
    stored = sandbox.state.get("job", 35770)
    assert (stored["description"], stored["customerPo"]) == ("Replace the flange", "PO-1")


def test_create_then_update_an_appointment(sandbox: Served, client: ServiceTradeClient):
    created = client.create_appointment(35770, windowStart=1_800_000_000, windowEnd=1_800_003_600, techIds=[6])
    moved = client.update_appointment(created["id"], {"windowStart": 1_800_007_200, "windowEnd": 1_800_010_800})

    assert created["job"]["id"] == 35770
    assert created["status"] == "scheduled"
    assert [t["id"] for t in created["techs"]] == [6]
    assert (moved["id"], moved["windowStart"], moved["windowEnd"]) == (created["id"], 1_800_007_200, 1_800_010_800)
    assert sandbox.state.get("appointment", created["id"])["windowStart"] == 1_800_007_200


def test_webhook_crud(client: ServiceTradeClient, sandbox: Served):
    # receiver.test is not reachable from here: the confirmation probe is answered in-process.
    sandbox.state.dispatcher.transport = httpx.MockTransport(lambda r: httpx.Response(200))
    hook = client.create_webhook("http://receiver.test/webhooks/servicetrade/t1", include_changesets=True)
    assert (hook["hookUrl"], hook["enabled"], hook["includeChangesets"]) == (
        "http://receiver.test/webhooks/servicetrade/t1",
        True,
        True,
    )
    assert hook["confirmed"] is False  # the documented create answer; confirmation follows

    assert [(h["id"], h["confirmed"]) for h in client.list_webhooks()] == [(hook["id"], True)]
    disabled = client.update_webhook(hook["id"], enabled=False, include_changesets=False)
    assert (disabled["enabled"], disabled["includeChangesets"]) == (False, False)
    client.delete_webhook(hook["id"])
    assert client.list_webhooks() == []
    sandbox.state.dispatcher.transport = None


# Lists and pagination


def test_job_list_pages_through_every_status_including_canceled(sandbox: Served, client: ServiceTradeClient):
    jobs = list(client.iter_list("job", limit=4))

    seeded = sandbox.state.all("job")
    open_ids = [j["id"] for j in seeded if j["status"] != "canceled"]
    canceled_ids = [j["id"] for j in seeded if j["status"] == "canceled"]
    assert [j["id"] for j in jobs] == open_ids + canceled_ids
    pages = [(r["query"]["status"], r["query"]["page"]) for r in sandbox.requests() if r["path"] == "/api/job"]
    assert pages == [("all", "1"), ("all", "2"), ("all", "3"), ("all", "4"), ("canceled", "1")]


def test_updated_after_filter_is_inclusive(sandbox: Served, client: ServiceTradeClient):
    newest = max(j["updated"] for j in sandbox.state.all("job"))
    rows = list(client.iter_list("job", updatedAfter=newest))
    assert [j["updated"] for j in rows] == [newest] * len(rows)
    assert rows


def test_appointment_list_asks_for_every_status_and_locations_for_the_max_limit(
    sandbox: Served, client: ServiceTradeClient
):
    appointments = list(client.iter_list("appointment", limit=5))
    locations = list(client.iter_list("location"))

    assert sorted(a["id"] for a in appointments) == sorted(a["id"] for a in sandbox.state.all("appointment"))
    assert "unscheduled" in {a["status"] for a in appointments}
    # The location default page is 10; the client asks for 5000 and gets every customer location at once.
    assert len(locations) > 10
    location_pages = [r["query"] for r in sandbox.requests() if r["path"] == "/api/location"]
    assert [(q["limit"], q["page"]) for q in location_pages] == [("5000", "1")]


# Sessions


def test_logs_in_again_when_the_session_is_dropped_server_side(sandbox: Served, client: ServiceTradeClient):
    client.get_entity("job", 35769)
    first = next(iter(sandbox.state.sessions))
    # The documented session limit: past 200 open sessions the oldest are cleaned back to 100.
    with httpx.Client(base_url=sandbox.url) as other:
        for _ in range(SESSION_HARD_LIMIT):
            other.post("/auth", json={"username": "sandbox", "password": PASSWORD}).raise_for_status()
    assert first not in sandbox.state.sessions
    sandbox.control("DELETE", "/requests").raise_for_status()

    job = client.get_entity("job", 35770)

    assert job["id"] == 35770
    assert calls(sandbox) == [
        ("GET", "/api/job/35770", 401),
        ("POST", "/api/auth", 200),
        ("GET", "/api/job/35770", 200),
    ]


def test_the_session_is_shared_by_threads_and_reused(sandbox: Served, client: ServiceTradeClient):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: client.get_entity("job", 35769)["status"], range(8)))
    assert statuses == ["completed"] * 8
    assert [c for c in calls(sandbox) if c[1] == "/api/auth"] == [("POST", "/api/auth", 200)]


# Errors


def test_injected_5xx_is_unavailable_with_status_and_the_api_text(sandbox: Served, client: ServiceTradeClient):
    sandbox.fault(status=503, count=1, path_prefix="/api/job")
    with pytest.raises(ServiceTradeUnavailable) as caught:
        client.get_entity("job", 35769)
    assert (caught.value.status, caught.value.path) == (503, "/api/job/35769")
    assert caught.value.detail == "sandbox injected HTTP 503"
    assert isinstance(caught.value, Unavailable)
    assert client.get_entity("job", 35769)["id"] == 35769  # the fault was used up


def test_a_dropped_connection_is_unavailable_without_a_status(sandbox: Served, client: ServiceTradeClient):
    sandbox.fault(drop_connection=True, count=1, path_prefix="/api/job")
    with pytest.raises(ServiceTradeUnavailable) as caught:
        client.update_job(35770, {"description": "x"})
    assert caught.value.status is None
    assert caught.value.path == "/api/job/35770"
    assert caught.value.detail.startswith("RemoteProtocolError")


def test_a_slow_answer_times_out_as_unavailable(sandbox: Served, client_for: Callable[..., ServiceTradeClient]):
    client = client_for(timeout=0.2)
    client.get_entity("job", 35769)
    sandbox.fault(latency_ms=600, count=1, path_prefix="/api/job")
    with pytest.raises(ServiceTradeUnavailable) as caught:
        client.get_entity("job", 35769)
    assert (caught.value.status, caught.value.detail) == (None, "timeout (ReadTimeout)")
    sandbox.settle(3)  # the server finishes the abandoned request after the latency


def test_invalid_parameters_are_rejected_with_the_validation_text(client: ServiceTradeClient):
    with pytest.raises(ServiceTradeRejected) as caught:
        client.update_job(35770, {"status": "done"})
    assert caught.value.status == 400
    assert caught.value.detail.startswith("missing, incomplete or invalid parameters; status: Must be one of: new,")
    assert not isinstance(caught.value, Unavailable)


def test_a_conflict_is_rejected(client: ServiceTradeClient):
    with pytest.raises(ServiceTradeRejected) as caught:
        client.update_job(35769, {"budgeted": True})  # completed: budgeted may change only on open jobs
    assert (caught.value.status, caught.value.detail) == (409, "budgeted may only change on an open job")


def test_a_missing_record_is_not_found(client: ServiceTradeClient):
    with pytest.raises(ServiceTradeNotFound) as caught:
        client.get_entity("job", 999999)
    assert isinstance(caught.value, NotFound) and isinstance(caught.value, Rejected)
    assert (caught.value.status, caught.value.path) == (404, "/api/job/999999")
    assert caught.value.detail == "job 999999 not found (or not accessible by the user)"


def test_bad_credentials_fail_auth_and_never_show_the_password(
    sandbox: Served, client_for: Callable[..., ServiceTradeClient]
):
    client = client_for(password="wrong-password-123")
    with pytest.raises(ServiceTradeAuthFailed) as caught:
        client.get_entity("job", 35769)
    assert isinstance(caught.value, AuthFailed)
    assert (caught.value.status, caught.value.path) == (403, "/api/auth")
    assert caught.value.detail == "Invalid credentials provided"
    text = f"{caught.value} {caught.value!r}"
    assert "wrong-password-123" not in text
    assert calls(sandbox) == [("POST", "/api/auth", 403)]  # no call was attempted without a session


def test_errors_never_carry_the_session_token(sandbox: Served, client: ServiceTradeClient):
    client.get_entity("job", 35769)
    token = next(iter(sandbox.state.sessions))
    sandbox.fault(drop_connection=True, count=1)
    with pytest.raises(ServiceTradeUnavailable) as caught:
        client.get_entity("job", 35769)
    assert token not in f"{caught.value} {caught.value!r}"
    assert PASSWORD not in f"{caught.value} {caught.value!r}"


def test_an_appointment_cannot_be_put_back_to_unscheduled(sandbox: Served, client: ServiceTradeClient):
    created = client.create_appointment(35770, windowStart=1_800_000_000, windowEnd=1_800_003_600)
    with pytest.raises(ServiceTradeRejected) as caught:
        client.update_appointment(created["id"], {"status": "unscheduled"})
    assert (caught.value.status, caught.value.detail) == (
        400,
        "missing, incomplete or invalid parameters; status: Cannot be set to unscheduled",
    )
    assert sandbox.state.get("appointment", created["id"])["status"] == "scheduled"


def test_a_login_answered_404_is_an_auth_failure_not_a_missing_record(sandbox: Served, closing: Callable[[Any], Any]):
    # A base URL without /api: POST /auth is 404. NotFound would read as "the job was deleted".
    client = closing(ServiceTradeClient(sandbox.root, "sandbox", SecretStr(PASSWORD)))
    with pytest.raises(ServiceTradeAuthFailed) as caught:
        client.get_entity("job", 35769)
    assert not isinstance(caught.value, NotFound)
    assert (caught.value.status, caught.value.path, caught.value.detail) == (404, "/auth", "POST /auth: Not Found")
