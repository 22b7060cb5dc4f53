"""The console session cases: server-side sessions, logout with CSRF, throttled sign-ins, security headers,
and a 400 (never a 500) for bad query parameters and hostile dry-run input (issue 12, item 7)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from fieldrelay.metrics import render
from fieldrelay.settings import Settings
from receiver.app import create_app
from receiver.console.auth import COOKIE, SESSION_MAX_AGE, SESSION_PREFIX
from workers.actions.registry import action_params

ROOT = Path(__file__).parents[2]
TOKEN = "console-token-0123456789"


def make(redis_url: str, tmp_path: Path, **overrides: object) -> TestClient:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "data_dir": tmp_path,
        "webhook_tokens": "hook-token-0123456789",
        "console_token": TOKEN,
        "rules_dir": ROOT / "rules" / "examples",
    }
    values.update(overrides)
    return TestClient(create_app(Settings(**values), action_params()), base_url="https://testserver")


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with make(redis_url, tmp_path) as c:
        yield c


def sign_in(client: TestClient) -> str:
    resp = client.post("/console/login", data={"token": TOKEN}, follow_redirects=False)
    assert resp.status_code == 303
    return resp.cookies[COOKIE]


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, "no CSRF value on the page"
    return found.group(1)


def test_a_session_is_a_random_id_in_redis_with_a_max_age(client, redis_client) -> None:
    resp = client.post("/console/login", data={"token": TOKEN}, follow_redirects=False)
    cookie = resp.headers["set-cookie"]
    assert f"Max-Age={SESSION_MAX_AGE}" in cookie and "HttpOnly" in cookie and "Secure" in cookie
    assert "SameSite=strict" in cookie and "Path=/console" in cookie
    first = resp.cookies[COOKIE]
    client.cookies.clear()
    second = sign_in(client)
    assert first != second and TOKEN not in first  # the token only signs in
    keys = list(redis_client.scan_iter(match=f"{SESSION_PREFIX}*"))
    assert len(keys) == 2 and all(0 < redis_client.ttl(k) <= SESSION_MAX_AGE for k in keys)
    assert first.encode() not in b"".join(keys)  # Redis holds a hash of the id, not the id


def test_logout_needs_a_post_with_csrf_and_revokes_the_session(client) -> None:
    session = sign_in(client)
    page = client.get("/console/events").text
    assert client.get("/console/logout").status_code == 405
    assert client.post("/console/logout", data={}).status_code == 403  # no CSRF value
    anonymous = TestClient(client.app, base_url="https://testserver")
    assert anonymous.post("/console/logout", data={"csrf": csrf(page)}).status_code == 403  # no session
    resp = client.post("/console/logout", data={"csrf": csrf(page)}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/console/login"
    # The old cookie is worth nothing now, even sent again by hand.
    replay = TestClient(client.app, base_url="https://testserver", cookies={COOKIE: session})
    assert replay.get("/console/events", follow_redirects=False).status_code == 303
    assert replay.post("/console/targets/http/pause", data={"csrf": csrf(page)}).status_code == 403


def test_a_forged_or_foreign_cookie_is_refused(client) -> None:
    for value in ("0" * 43, "x" * 500, "' OR 1=1"):
        forged = TestClient(client.app, base_url="https://testserver", cookies={COOKIE: value})
        assert forged.get("/console/", follow_redirects=False).status_code == 303


def test_rotating_the_token_signs_everyone_out(redis_url, tmp_path) -> None:
    with make(redis_url, tmp_path) as old:
        session = sign_in(old)
    with make(redis_url, tmp_path, console_token="rotated-token-0123456789") as new:
        new.cookies.set(COOKIE, session)
        assert new.get("/console/", follow_redirects=False).status_code == 303


def test_cookies_are_secure_unless_dev_mode(redis_url, tmp_path) -> None:
    with make(redis_url, tmp_path, dev_mode=True) as dev:
        resp = dev.post("/console/login", data={"token": TOKEN}, follow_redirects=False)
    assert "Secure" not in resp.headers["set-cookie"] and "HttpOnly" in resp.headers["set-cookie"]


def test_failed_sign_ins_are_throttled_per_address_with_a_metric_and_a_log_line(client, redis_client, caplog) -> None:
    for _ in range(10):
        assert client.post("/console/login", data={"token": "wrong"}).status_code == 401
    resp = client.post("/console/login", data={"token": TOKEN}, follow_redirects=False)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0  # even the right token waits
    assert "Too many failed sign-ins" in resp.text
    text = render(redis_client)
    assert b'fieldrelay_auth_failures_total{kind="console"} 10.0' in text
    assert b'fieldrelay_auth_throttled_total{kind="console"} 1.0' in text
    messages = [r.getMessage() for r in caplog.records if "console sign-in failed" in r.getMessage()]
    assert messages[0] == "console sign-in failed from testclient (1 in 60 s)"
    assert messages[-1] == "console sign-in failed from testclient (10 in 60 s; throttled)"


def test_every_page_carries_the_security_headers(client) -> None:
    sign_in(client)
    for path in ("/console/", "/console/events", "/console/login", "/console/rejected", "/console/rules"):
        resp = client.get(path)
        csp = resp.headers["content-security-policy"]
        found = re.search(r"'nonce-([^']+)'", csp)
        assert found is not None, csp
        nonce = found.group(1)
        assert f'<style nonce="{nonce}">' in resp.text, path
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp
        assert resp.headers["x-frame-options"] == "DENY"
        assert resp.headers["referrer-policy"] == "no-referrer"
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["strict-transport-security"].startswith("max-age=")
    second = client.get("/console/").headers["content-security-policy"]
    assert second != client.get("/console/").headers["content-security-policy"]  # a nonce per answer


@pytest.mark.parametrize(
    "query",
    [
        "since=nan",
        "until=1e400",
        "since=-inf",
        "since=99999999999999999999999d",
        "since=99999-01-01",
        "until=1e300",
        "since=not-a-time",
        "outcome=everything",
        "source=somewhere",
        "target=nowhere",
        "rule=" + "r" * 1000,
    ],
)
def test_invalid_query_parameters_are_a_400(client, query: str) -> None:
    sign_in(client)
    for page in ("/console/events", "/console/dead-letters"):
        resp = client.get(f"{page}?{query}")
        name = query.split("=")[0]
        if (page, name) in (("/console/events", "target"), ("/console/dead-letters", "outcome")):
            assert resp.status_code == 200  # not a parameter of that page
        elif (page, name) == ("/console/dead-letters", "source"):
            assert resp.status_code == 200
        else:
            assert resp.status_code == 400, (page, query)
            assert 'role="alert"' in resp.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["since", "until", "outcome", "source", "target", "entity", "rule", "msg", "error", "next"]),
    value=st.text(max_size=300),
    page=st.sampled_from(["/console/events", "/console/dead-letters", "/console/", "/console/rejected"]),
)
def test_no_query_parameter_makes_a_500(client, name: str, value: str, page: str) -> None:
    if COOKIE not in client.cookies:
        sign_in(client)
    assert client.get(page, params={name: value}).status_code < 500


def test_a_deeply_nested_event_in_the_dry_run_form_is_an_answer_not_a_500(client) -> None:
    sign_in(client)
    token = csrf(client.get("/console/rules").text)
    started = time.monotonic()
    resp = client.post("/console/rules/test", data={"csrf": token, "event": "[" * 20_000 + "]" * 20_000})
    assert resp.status_code == 200 and "event: nested too deeply" in resp.text
    resp = client.post(
        "/console/rules/test",
        data={"csrf": token, "event": '{"a": 1}', "entity": '{"a":' * 10_000 + "1" + "}" * 10_000},
    )
    assert resp.status_code == 200 and "entity: nested too deeply" in resp.text
    assert time.monotonic() - started < 30
    assert client.post("/console/rules/test", data={"csrf": token, "event": "x" * 300_000}).status_code == 413


def test_the_dry_run_runs_bounded_in_a_child_process(client, tmp_path, redis_url) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bomb.yaml").write_text(
        "rules:\n  - name: bomb\n    when: {source: servicetrade, entity: job}\n    then:\n"
        "      - http.request: {url: 'https://h.example/', json: {t: \"{{ 'a' * (event.entity.id * 30000) }}\"}}\n"
    )
    with make(redis_url, tmp_path, rules_dir=rules) as c:
        sign_in(c)
        token = csrf(c.get("/console/rules").text)
        event = (ROOT / "examples" / "webhook-sample.json").read_text()
        resp = c.post("/console/rules/test", data={"csrf": token, "event": event})
    assert resp.status_code == 200 and "MATCH bomb" in resp.text
    assert "a repeated value would be 1,073,070,000 long" in resp.text


def test_sessions_survive_no_longer_than_their_max_age(client, redis_client) -> None:
    session = sign_in(client)
    for key in redis_client.scan_iter(match=f"{SESSION_PREFIX}*"):
        redis_client.delete(key)  # what the TTL does after SESSION_MAX_AGE
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert session
