"""The shared `/_sandbox` controls: request log with redaction, fault injection and reset."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.testclient import TestClient

from sandbox.faults import ConnectionDropped
from tests.sandbox.conftest import SYNCHROTEAM_KEY, basic


def test_servicetrade_log_redacts_cookies_and_passwords(st_app: Any) -> None:
    client = TestClient(st_app)
    client.post("/api/auth", json={"username": "sandbox", "password": "sandbox-password"})
    client.get("/api/job/35769?longForm=true")
    login, read = client.get("/_sandbox/requests").json()
    assert login["json"] == {"username": "sandbox", "password": "[redacted]"}
    assert login["auth_identity"] == {"session": False, "session_valid": False, "username": "sandbox"}
    assert (read["method"], read["path"], read["query"], read["status"]) == (
        "GET",
        "/api/job/35769",
        {"longForm": "true"},
        200,
    )
    assert read["headers"]["cookie"] == "[redacted]"
    assert read["auth_identity"] == {"session": True, "session_valid": True, "username": "sandbox"}
    assert client.delete("/_sandbox/requests").status_code == 204
    assert client.get("/_sandbox/requests").json() == []


def test_synchroteam_log_names_the_domain_and_key_validity(sync_client: TestClient) -> None:
    sync_client.post("/api/v3/customer/send", json={"name": "A"})
    sync_client.get("/api/v3/job/list", headers=basic(key="bad"))
    good, bad = sync_client.get("/_sandbox/requests").json()
    assert good["auth_identity"] == {"domain": "sandbox", "key_valid": True} and good["json"] == {"name": "A"}
    assert bad["auth_identity"] == {"domain": "sandbox", "key_valid": False} and bad["status"] == 401
    assert SYNCHROTEAM_KEY not in json.dumps([good, bad])


def test_synergist_log_hides_query_passwords(syn_client: TestClient) -> None:
    syn_client.get(
        "/jsonapi/system.json",
        params={"user": "sandbox", "password": "sandbox-password", "action": "version"},
    )
    [entry] = syn_client.get("/_sandbox/requests").json()
    assert entry["query"]["password"] == "[redacted]" and entry["query"]["action"] == "version"
    assert entry["auth_identity"] == {"user": "sandbox", "valid": True, "method": "password"}


def test_fault_status_applies_count_times_under_its_prefix(sync_client: TestClient) -> None:
    sync_client.post("/_sandbox/faults", json={"status": 503, "count": 2, "path_prefix": "/api/v3/job"})
    statuses = [sync_client.get("/api/v3/job/list").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sync_client.get("/_sandbox/faults").json() == []
    sync_client.post("/_sandbox/faults", json={"status": 500, "path_prefix": "/api/v3/customer"})
    assert sync_client.get("/api/v3/job/list").status_code == 200
    failed = sync_client.get("/api/v3/customer/list")
    assert failed.status_code == 500 and set(failed.json()) == {"error", "message"}
    assert sync_client.delete("/_sandbox/faults").status_code == 204
    assert sync_client.get("/api/v3/customer/list").status_code == 200


def test_fault_latency_and_method_filter(st_client: TestClient) -> None:
    st_client.post("/_sandbox/faults", json={"latency_ms": 150, "method": "PUT", "count": 1})
    started = time.monotonic()
    st_client.get("/api/job/35769")
    quick = time.monotonic() - started
    started = time.monotonic()
    assert st_client.put("/api/job/35770", json={"description": "slow"}).status_code == 200
    assert time.monotonic() - started >= 0.15 > quick


def test_drop_connection_cuts_the_response(syn_client: TestClient) -> None:
    syn_client.post("/_sandbox/faults", json={"drop_connection": True, "count": 1})
    with pytest.raises(ConnectionDropped):
        syn_client.get("/jsonapi/system.json")
    assert syn_client.get("/_sandbox/requests").json()[0]["status"] == 200  # headers went out, body never did


def test_bad_fault_is_rejected(syn_client: TestClient) -> None:
    assert syn_client.post("/_sandbox/faults", json={"status": 500, "colour": "red"}).status_code == 400


def test_reset_restores_seed_and_clears_log_and_faults(sync_factory: Any) -> None:
    client = sync_factory(rate_limit=2)
    client.post("/api/v3/customer/send", json={"myId": "tmp", "name": "Temp"})
    client.post("/_sandbox/faults", json={"status": 500, "path_prefix": "/nowhere"})
    assert client.get("/api/v3/job/list").status_code == 200
    assert client.get("/api/v3/job/list").status_code == 429
    assert client.post("/_sandbox/reset").status_code == 204
    assert client.get("/_sandbox/requests").json() == [] and client.get("/_sandbox/faults").json() == []
    assert client.get("/api/v3/customer/details", params={"myId": "tmp"}).status_code == 404
