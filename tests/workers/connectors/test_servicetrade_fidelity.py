"""ServiceTrade readings fixed against seed 002 (and the official SDK for OAuth2): paging by `totalPages`,
capped answers split by time window, resumable listings, closed sessions, uploads, clock events."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from workers.connectors.servicetrade import ServiceTradeAuthFailed, ServiceTradeCapped, ServiceTradeClient

BASE = "https://st.test/api"


def make(handler: Any, **kwargs: Any) -> ServiceTradeClient:
    return ServiceTradeClient(BASE, "bot", SecretStr("pw"), transport=httpx.MockTransport(handler), **kwargs)


def login_or(handler: Any) -> Any:
    def wrapped(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/auth" and request.method == "POST":
            return httpx.Response(200, json={"data": {"authenticated": True, "authToken": "tok"}})
        return handler(request)

    return wrapped


def capped_server(jobs: list[int], limit_mode: str) -> tuple[Any, list[dict[str, str]]]:
    """Jobs updated at the given times; `limit` is a page size ("page") or a cap with no paging ("cap")."""
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        q = dict(request.url.params)
        asked.append(q)
        rows = [
            {"id": n, "updated": t}
            for n, t in enumerate(jobs)
            if int(q["updatedAfter"]) <= t <= int(q["updatedBefore"])
        ]
        limit, page = int(q.get("limit", 2000)), int(q.get("page", 1))
        if limit_mode == "page":
            total = max(1, -(-len(rows) // limit))
            return httpx.Response(
                200, json={"data": {"totalPages": total, "page": page, "jobs": rows[(page - 1) * limit : page * limit]}}
            )
        return httpx.Response(200, json={"data": {"jobs": rows[:limit]}})

    return login_or(handler), asked


@pytest.mark.parametrize("mode", ["page", "cap"])
def test_a_window_with_more_rows_than_limit_is_read_whole_under_either_reading(mode: str) -> None:
    """Seed 002, "Pagination": list data has "totalPages" and "page" ("different resources may have different
    numbers of results per page"); "Job" Query Params: `limit` "limit the jobs returned (default 2000,
    maximum 2000)". Old: one reading only: a capped answer (no paging info) lost every row past `limit`."""
    times = [1000 + (n % 500) for n in range(2500)]
    handler, asked = capped_server(times, mode)
    rows = list(make(handler).iter_window("job", 1000, 1600, status="all"))
    assert sorted(r["id"] for r in rows) == list(range(2500))
    if mode == "cap":
        assert any(q["updatedBefore"] != "1600" for q in asked)  # the window was split


def test_a_one_second_window_still_capped_is_an_error_not_silence() -> None:
    """Seed 002, "Job" Query Params (`limit`, maximum 2000): 2,001 jobs in one second cannot be listed."""
    handler, _ = capped_server([1000] * 2001, "cap")
    with pytest.raises(ServiceTradeCapped):
        list(make(handler).iter_window("job", 1000, 1000))


def test_a_listing_resumes_from_its_mark() -> None:
    """Seed 002, "Pagination": `page=n`. A mark names the windows left and the page to start at."""
    handler, asked = capped_server([1000 + n for n in range(30)], "page")
    client = make(handler)
    marks: list[dict[str, Any]] = []
    rows = list(client.iter_window("job", 1000, 1100, limit=10, on_page=marks.append))
    assert len(rows) == 30 and marks[0] == {"windows": [[1000, 1100]], "page": 1}
    asked.clear()
    again = list(client.iter_window("job", 1000, 1100, limit=10, mark=marks[1]))
    assert [q["page"] for q in asked] == ["2", "3"] and len(again) == 20


def test_close_ends_the_session_it_opened() -> None:
    """Seed 002, "Authentication": `DELETE /auth` answers 204 "session closed"; a user may hold 100 (soft)
    to 200 (hard) sessions. Old: close() only dropped the connection pool, leaving the session open."""
    calls: list[tuple[str, str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, request.headers.get("cookie", "")))
        return httpx.Response(200 if request.method == "GET" else 204, json={"data": {"id": 1}})

    client = make(login_or(handler))
    client.get_entity("job", 1)
    client.close()
    assert calls[-1] == ("DELETE", "/api/auth", "PHPSESSID=tok")


def oauth_server(tokens: list[str], seen: list[httpx.Request]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/oauth2/token":
            return httpx.Response(200, json={"access_token": tokens.pop(0), "token_type": "Bearer", "expires_in": 3600})
        if request.headers.get("authorization") == "Bearer fresh":
            return httpx.Response(200, json={"data": {"id": 7}})
        return httpx.Response(401, json={"messages": {"error": ["unauthorized"]}})

    return handler


def test_oauth2_password_grant_sends_bearer_and_logs_in_again_on_401() -> None:
    """The official SDK (servicetrade-nodejs index.js): `setBearerToken` sends `Authorization: Bearer`, and
    axios-auth-refresh logs in again on a 401. The token comes from RFC 6749's token endpoint."""
    seen: list[httpx.Request] = []
    client = make(oauth_server(["stale", "fresh"], seen), auth="oauth2")
    assert client.get_entity("job", 7)["id"] == 7
    token_calls = [r for r in seen if r.url.path == "/api/oauth2/token"]
    assert len(token_calls) == 2
    form = dict(httpx.QueryParams(token_calls[0].content.decode()))
    assert form == {"grant_type": "password", "username": "bot", "password": "pw"}
    assert [r.headers.get("authorization") for r in seen if r.url.path == "/api/job/7"] == [
        "Bearer stale",
        "Bearer fresh",
    ]
    assert not any("cookie" in r.headers for r in seen)


def test_oauth2_client_credentials_and_its_refusal() -> None:
    """RFC 6749 4.4 client_credentials; a refused token request is an auth failure naming the error only."""
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"error": "invalid_client", "error_description": "unknown client"})

    client = make(refuse, auth="oauth2", grant="client_credentials", client_id="cid", client_secret=SecretStr("shh"))
    with pytest.raises(ServiceTradeAuthFailed, match="invalid_client: unknown client") as info:
        client.get_entity("job", 1)
    assert "shh" not in str(info.value)
    assert dict(httpx.QueryParams(seen[0].content.decode()))["grant_type"] == "client_credentials"
    with pytest.raises(ValueError, match="client id and a client secret"):
        make(refuse, auth="oauth2", grant="client_credentials")
    with pytest.raises(ValueError, match="'session' or 'oauth2'"):
        make(refuse, auth="cookie")


def test_upload_is_multipart_with_the_documented_fields() -> None:
    """Seed 002, "Attachment" / "Upload a file": multipart form-data, `uploadedFile`, `purposeId`,
    `entityType` (3 = Job, "Entity Types"), `entityId`, `description`."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"id": 10, "fileName": "a.png"}})

    result = make(login_or(handler)).upload_attachment("job", 41, 3, "a.png", b"\x89PNG", "image/png", "broken")
    body = seen[0].content
    assert result["id"] == 10 and seen[0].headers["content-type"].startswith("multipart/form-data")
    for part in (b'name="purposeId"\r\n\r\n3', b'name="entityType"\r\n\r\n3', b'name="entityId"\r\n\r\n41'):
        assert part in body
    assert b'name="uploadedFile"; filename="a.png"' in body and b"\x89PNG" in body
    with pytest.raises(ValueError, match="attachments go to"):
        make(login_or(handler)).upload_attachment("invoice", 1, 1, "x", b"")


def test_clock_events_need_a_filter_and_read_every_documented_shape() -> None:
    """Seed 002, "Clockin/Clockout": `GET /clock` "403 must provide at least one filter"; results come as
    `events`, or `pairedEvents` + `unpairedEvents` when paired."""
    answers = [
        {"events": [{"id": 1, "eventTime": 5}]},
        {"pairedEvents": [[{"id": 2}, {"id": 3}]], "unpairedEvents": [{"id": 4}]},
    ]
    client = make(login_or(lambda r: httpx.Response(200, json={"data": answers.pop(0)})))
    assert [e["id"] for e in client.clock_events(startTime=0, endTime=9)] == [1]
    assert [e["id"] for e in client.clock_events(jobId=1, paired="true")] == [2, 3, 4]
    with pytest.raises(ValueError, match="at least one filter"):
        client.clock_events()


def test_webhook_and_comment_bodies_are_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": {"id": 1}})

    make(login_or(handler)).update_service_request(5, {"status": "closed"})
    assert seen[0].url.path == "/api/servicerequest/5" and json.loads(seen[0].content) == {"status": "closed"}


def test_oauth2_token_request_takes_both_readings_form_then_json() -> None:
    """RFC 6749 sends the token request as a form; ServiceTrade's TypeScript SDK sends JSON. A server that
    answers the form with 415 gets JSON once, and JSON first from then on; an RFC 6749 error is final."""
    seen: list[httpx.Request] = []

    def json_only(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/oauth2/token":
            if request.headers.get("content-type") != "application/json":
                return httpx.Response(415, text="Unsupported Media Type")
            return httpx.Response(200, json={"access_token": f"t{len(seen)}", "expires_in": 3600})
        if request.headers.get("authorization", "").startswith("Bearer t") and request.url.path == "/api/job/7":
            return httpx.Response(200, json={"data": {"id": 7}})
        return httpx.Response(401, json={"messages": {"error": ["unauthorized"]}})

    client = make(json_only, auth="oauth2")
    assert client.get_entity("job", 7)["id"] == 7
    tokens = [r for r in seen if r.url.path == "/api/oauth2/token"]
    assert [r.headers["content-type"] for r in tokens] == ["application/x-www-form-urlencoded", "application/json"]
    assert json.loads(tokens[1].content) == {"grant_type": "password", "username": "bot", "password": "pw"}
    client._expires_at = 0.0  # the token has expired: the next one is asked for as JSON straight away
    seen.clear()
    client.get_entity("job", 7)
    assert [r.headers["content-type"] for r in seen if r.url.path == "/api/oauth2/token"] == ["application/json"]

    seen.clear()

    def bad_credentials(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(400, json={"error": "invalid_grant"})

    refused = make(bad_credentials, auth="oauth2")
    with pytest.raises(ServiceTradeAuthFailed, match="invalid_grant"):
        refused.get_entity("job", 7)
    assert len(seen) == 1  # the server read the form and refused the credentials: nothing to retry
