"""ServiceTradeClient against httpx.MockTransport: a tiny fake with sessions."""

from __future__ import annotations

import json
import pickle
import threading
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from workers.connectors.errors import AuthFailed, NotFound, RateLimited, Rejected, Unavailable
from workers.connectors.servicetrade import (
    ServiceTradeAuthFailed,
    ServiceTradeClient,
    ServiceTradeError,
    ServiceTradeNotFound,
    ServiceTradeRateLimited,
    ServiceTradeRejected,
    ServiceTradeUnavailable,
    api_path,
)

PASSWORD = "joe-secret-password"


class FakeServiceTrade:
    """Issues tokens on POST /auth and answers other paths from ``routes`` when the cookie is valid."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.logins = 0
        self.requests: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api")
        if path == "/auth":
            creds = json.loads(request.content)
            if creds != {"username": "joe", "password": PASSWORD}:
                return httpx.Response(403, json={"messages": {"error": ["Invalid credentials provided"]}, "data": {}})
            self.logins += 1
            token = f"tok{self.logins}"
            self.valid.add(token)
            return httpx.Response(200, json={"data": {"authenticated": True, "authToken": token}})
        cookie = request.headers.get("Cookie", "")
        if cookie.removeprefix("PHPSESSID=") not in self.valid:
            return httpx.Response(401, json={"messages": {"error": ["unauthorized"]}})
        answer = self.routes.get((request.method, path))
        if callable(answer):
            return answer(request)
        if answer is None:
            return httpx.Response(404, json={"messages": {"error": [f"{path} not found"]}})
        return httpx.Response(200, json={"data": answer})


def make_client(fake: FakeServiceTrade, password: str = PASSWORD) -> ServiceTradeClient:
    return ServiceTradeClient("https://st.test/api", "joe", SecretStr(password), transport=httpx.MockTransport(fake))


def test_logs_in_lazily_once_and_sends_the_session_cookie() -> None:
    fake = FakeServiceTrade()
    fake.routes[("GET", "/job/13")] = {"id": 13, "status": "scheduled"}
    client = make_client(fake)
    assert fake.requests == []
    assert client.get_entity("job", 13) == {"id": 13, "status": "scheduled"}
    assert client.get("https://api.servicetrade.com/api/job/13")["id"] == 13
    assert fake.logins == 1
    assert fake.requests[-1].headers["Cookie"] == "PHPSESSID=tok1"


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("https://api.servicetrade.com/api/job/34872", "/job/34872"),
        ("https://api.servicetrade.com/company/30", "/company/30"),
        ("https://evil.example/api/job/1", "/job/1"),
        ("/api/quote?vendorId=9&status=new,draft", "/quote?vendorId=9&status=new,draft"),
        ("job/5", "/job/5"),
    ],
)
def test_api_path_resolves_every_variant_against_the_base(given: str, path: str) -> None:
    assert api_path(given) == path


def test_uri_on_another_host_is_fetched_from_the_configured_base() -> None:
    fake = FakeServiceTrade()
    fake.routes[("GET", "/job/1")] = {"id": 1}
    make_client(fake).get("https://evil.example/api/job/1")
    assert {r.url.host for r in fake.requests} == {"st.test"}
    with pytest.raises(ValueError):
        api_path("https://api.servicetrade.com/api/../../etc")


def test_relogs_in_once_after_a_401() -> None:
    fake = FakeServiceTrade()
    fake.routes[("GET", "/job/13")] = {"id": 13}
    client = make_client(fake)
    client.get("/job/13")
    fake.valid.clear()  # the server dropped the session
    assert client.get("/job/13") == {"id": 13}
    assert fake.logins == 2
    assert fake.requests[-1].headers["Cookie"] == "PHPSESSID=tok2"


def test_a_second_401_is_auth_failed() -> None:
    fake = FakeServiceTrade()
    fake.routes[("GET", "/job/13")] = lambda r: httpx.Response(401, json={"messages": {"error": ["nope"]}})
    with pytest.raises(ServiceTradeAuthFailed) as info:
        make_client(fake).get("/job/13")
    assert fake.logins == 2 and info.value.status == 401


def test_bad_password_is_auth_failed_without_the_password() -> None:
    fake = FakeServiceTrade()
    wrong = "wrong-password-123"
    client = make_client(fake, password=wrong)
    with pytest.raises(ServiceTradeAuthFailed) as info:
        client.get("/job/1")
    err = info.value
    assert isinstance(err, AuthFailed) and err.status == 403 and err.path == "/api/auth"
    assert err.detail == "Invalid credentials provided"
    for text in (str(err), repr(err), repr(client), str(pickle.loads(pickle.dumps(err)))):
        assert wrong not in text


def test_session_is_shared_between_threads() -> None:
    fake = FakeServiceTrade()
    fake.routes[("GET", "/job/1")] = {"id": 1}
    client = make_client(fake)
    threads = [threading.Thread(target=client.get, args=("/job/1",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake.logins == 1


def test_iter_list_pages_and_fetches_canceled_jobs_too() -> None:
    fake = FakeServiceTrade()

    def jobs(request: httpx.Request) -> httpx.Response:
        status, page = request.url.params["status"], int(request.url.params["page"])
        by_status = {"all": {1: [{"id": 1}, {"id": 2}], 2: [{"id": 3}]}, "canceled": {1: [{"id": 9}]}}
        rows = by_status.get(status, {1: []})
        pages = len(rows)
        return httpx.Response(200, json={"data": {"totalPages": pages, "page": page, "jobs": rows[page]}})

    fake.routes[("GET", "/job")] = jobs
    client = make_client(fake)
    assert [j["id"] for j in client.iter_list("job", updatedAfter=100)] == [1, 2, 3, 9]
    sent = [dict(r.url.params) for r in fake.requests if r.url.path == "/api/job"]
    assert sent[0] == {"updatedAfter": "100", "status": "all", "page": "1"}
    assert [(p["status"], p["page"]) for p in sent] == [("all", "1"), ("all", "2"), ("canceled", "1")]
    assert [j["id"] for j in client.iter_list("job", status="completed")] == []


def test_iter_list_defaults_for_locations_and_appointments() -> None:
    fake = FakeServiceTrade()
    fake.routes[("GET", "/location")] = {"totalPages": 1, "page": 1, "locations": [{"id": 33}]}
    fake.routes[("GET", "/appointment")] = {"totalPages": 1, "page": 1, "appointments": [{"id": 9}]}
    client = make_client(fake)
    assert list(client.iter_list("location")) == [{"id": 33}]
    assert list(client.iter_list("appointment")) == [{"id": 9}]
    location, appointment = (r.url.params for r in fake.requests if r.method == "GET")
    assert location["limit"] == "5000"
    assert "unscheduled" in appointment["status"]


def test_job_actions_and_webhooks() -> None:
    fake = FakeServiceTrade()

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"id": 7, **json.loads(request.content)}})

    for route in [
        ("POST", "/job/5/comment"),
        ("PUT", "/job/5"),
        ("POST", "/appointment"),
        ("POST", "/webhook"),
        ("PUT", "/webhook/7"),
    ]:
        fake.routes[route] = echo
    fake.routes[("GET", "/webhook")] = {"totalPages": 1, "page": 1, "webhooks": [{"id": 7}]}
    fake.routes[("DELETE", "/webhook/7")] = {}
    client = make_client(fake)
    assert client.comment_job(5, "hello", ["tech"]) == {"id": 7, "content": "hello", "visibility": ["tech"]}
    assert client.update_job(5, {"customerPo": "PO1"})["customerPo"] == "PO1"
    appointment = client.create_appointment(5, windowStart=1, windowEnd=2, techIds=[4])
    assert appointment == {"id": 7, "jobId": 5, "windowStart": 1, "windowEnd": 2, "techIds": [4]}
    hook = client.create_webhook("https://relay.test/webhooks/servicetrade/t")
    assert hook["includeChangesets"] is True and hook["enabled"] is True
    assert client.update_webhook(7, enabled=False) == {"id": 7, "enabled": False}
    assert client.list_webhooks() == [{"id": 7}]
    client.delete_webhook(7)


@pytest.mark.parametrize(
    ("status", "cls", "generic"),
    [
        (400, ServiceTradeRejected, Rejected),
        (403, ServiceTradeRejected, Rejected),
        (404, ServiceTradeNotFound, NotFound),
        (409, ServiceTradeRejected, Rejected),
        (500, ServiceTradeUnavailable, Unavailable),
        (429, ServiceTradeRateLimited, RateLimited),
    ],
)
def test_status_codes_map_to_typed_errors(status: int, cls: type[ServiceTradeError], generic: type) -> None:
    fake = FakeServiceTrade()
    body = {"messages": {"error": ["bad"], "validation": {"customerPo": ["Too long"]}}}
    fake.routes[("PUT", "/job/5")] = lambda r: httpx.Response(status, json=body, headers={"Retry-After": "30"})
    with pytest.raises(cls) as info:
        make_client(fake).update_job(5, {"customerPo": "x" * 50})
    err = info.value
    assert isinstance(err, generic) and isinstance(err, ServiceTradeError)
    assert (err.status, err.path, err.detail) == (status, "/api/job/5", "bad; customerPo: Too long")
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls and clone.detail == err.detail
    if status == 429:
        assert isinstance(clone, RateLimited) and clone.reset_at is not None


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow")])
def test_network_errors_are_unavailable(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    client = ServiceTradeClient(
        "https://st.test/api", "joe", SecretStr(PASSWORD), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(ServiceTradeUnavailable) as info:
        client.get("/job/1")
    assert info.value.status is None and PASSWORD not in str(info.value)


def test_records_are_read_by_type_and_id_from_the_documented_paths() -> None:
    from workers.connectors.servicetrade import UnreadableEntity, entity_path

    assert entity_path("job", 35769) == "/job/35769"
    assert entity_path("job_item", "7") == "/jobitem/7"
    assert entity_path("quote_item", 4) == "/quoteitem/4"
    for bad_type in ("clockevent", "auth", "webhook"):
        with pytest.raises(UnreadableEntity, match="documents no read by id"):
            entity_path(bad_type, 1)
    for bad_id in ("39?x=1", "%2e%2e", "..", True, 3.5):
        with pytest.raises(UnreadableEntity, match="ids are integers"):
            entity_path("job", bad_id)  # type: ignore[arg-type]


def test_external_ids_are_read_set_removed_and_looked_up() -> None:
    fake = FakeServiceTrade()
    sent: list[tuple[str, str, Any]] = []

    def record(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append((request.method, request.url.path, body))
        return httpx.Response(200, json={"data": {"value": body["value"]}})

    fake.routes[("GET", "/externalid/job/35769")] = {"values": {"synergist": "6712", "peachtree": "332"}}
    fake.routes[("POST", "/externalid/job/35769/synergist")] = record
    fake.routes[("PUT", "/externalid/job/35769/synergist")] = record
    fake.routes[("GET", "/externalid/job/synergist/")] = lambda request: httpx.Response(
        200, json={"data": {"id": 35769, "query": request.url.query.decode()}}
    )
    client = make_client(fake)
    assert client.external_ids("job", 35769) == {"synergist": "6712", "peachtree": "332"}
    assert client.set_external_id("job", 35769, "synergist", "6712") == {"value": "6712"}
    assert client.set_external_id("job", 35769, "synergist", "") == {"value": ""}
    assert sent == [
        ("POST", "/api/externalid/job/35769/synergist", {"value": "6712"}),
        ("PUT", "/api/externalid/job/35769/synergist", {"value": ""}),  # the doc removes with an empty PUT
    ]
    found: dict[str, Any] = dict(client.find_by_external_id("job", "synergist", "1/00000510"))
    assert found["query"] == "value=1%2F00000510"  # the fake answers with the query it was sent
    with pytest.raises(ServiceTradeNotFound):
        client.find_by_external_id("company", "synergist", "x")


def comment(comment_id: int, content: str, created: int, entity: tuple[int, int] = (3, 41)) -> dict[str, Any]:
    kind, ident = entity
    return {"id": comment_id, "content": content, "created": created, "entity": {"type": kind, "id": ident}}


def test_find_job_comment_reads_every_page_and_skips_cascaded_comments() -> None:
    fake = FakeServiceTrade()
    ours = comment(2, "Done\n[fieldrelay:abc]", 100)
    pages: dict[str, dict[str, Any]] = {
        "1": {"totalPages": 2, "page": 1, "comments": [comment(1, "Done\n[fieldrelay:abc]", 100, entity=(4, 7))]},
        "2": {"totalPages": 2, "page": 2, "comments": [ours]},
    }
    fake.routes[("GET", "/job/41/comment")] = lambda r: httpx.Response(200, json={"data": pages[r.url.params["page"]]})
    client = make_client(fake)
    # Seed 002, "Cascaded Comments": the location's comment (entity type 4) is on the job's list too; not ours.
    assert client.find_job_comment(41, marker="[fieldrelay:abc]") == ours
    assert client.find_job_comment(41, marker="[fieldrelay:zzz]") is None


def test_find_job_comment_without_a_marker_wants_the_same_text_since_the_intent() -> None:
    fake = FakeServiceTrade()
    listed = [comment(1, "Done", 90), comment(2, " Done ", 120)]
    fake.routes[("GET", "/job/41/comment")] = {"totalPages": 1, "page": 1, "comments": listed}
    client = make_client(fake)
    assert client.find_job_comment(41, content="Done", created_after=100) == listed[1]
    assert client.find_job_comment(41, content="Done", created_after=121) is None
    assert client.find_job_comment(41, content="Other", created_after=0) is None


def test_find_appointment_asks_for_every_status_created_since_and_matches_what_was_sent() -> None:
    fake = FakeServiceTrade()
    rows = [
        {"id": 5, "created": 200, "status": "scheduled", "windowStart": 10, "windowEnd": 20, "techs": [{"id": 6}]},
        {"id": 6, "created": 200, "status": "scheduled", "windowStart": 10, "windowEnd": 20, "techs": [{"id": 7}]},
    ]
    fake.routes[("GET", "/appointment")] = {"totalPages": 1, "page": 1, "appointments": rows}
    client = make_client(fake)
    found = client.find_appointment(41, {"windowStart": 10, "windowEnd": 20, "techIds": [7]}, created_after=150.5)
    assert found is not None and found["id"] == 6
    params = fake.requests[-1].url.params
    assert params["jobId"] == "41" and params["createdAfter"] == "150"
    assert set(params["status"].split(",")) >= {"scheduled", "unscheduled", "completed"}  # the default omits one
