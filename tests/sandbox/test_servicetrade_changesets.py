"""The ServiceTrade sandbox's changesets and external ids, as the doc's "Entity Changesets" and
"ExternalId" sections describe them."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.sandbox.conftest import Catcher, add_hook


@pytest.mark.parametrize("reading", ["sample", "documented"])
def test_appointments_invoices_and_quotes_carry_an_empty_changeset(
    st_client: TestClient,
    catcher: Catcher,
    reading: str,
) -> None:
    add_hook(st_client, includeChangesets=True)
    assert st_client.put("/_sandbox/webhook/controls", json={"changesets": reading}).status_code == 200
    st_client.put("/api/appointment/754", json={"status": "completed"})
    st_client.patch("/_sandbox/entities/invoice/9623", json={"status": "paid"})
    st_client.patch("/_sandbox/entities/quote/8801", json={"status": "accepted"})
    st_client.put("/api/job/35770", json={"status": "completed"})
    changesets = [m["data"][0]["changeset"] for m in catcher.messages]
    job = [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}] if reading == "sample" else []
    assert changesets == [[], [], [], job]


def test_an_unknown_reading_is_refused(st_client: TestClient) -> None:
    response = st_client.put("/_sandbox/webhook/controls", json={"changesets": "everything"})
    assert response.status_code == 400 and "sample" in response.json()["error"]


def test_without_include_changesets_updates_carry_none(st_client: TestClient, catcher: Catcher) -> None:
    add_hook(st_client, includeChangesets=False)
    st_client.put("/api/appointment/754", json={"status": "completed"})
    st_client.put("/api/job/35770", json={"status": "completed"})
    assert all("changeset" not in m["data"][0] for m in catcher.messages)


def test_an_items_timestamp_is_the_records_updated_time(st_client: TestClient, catcher: Catcher, clock: Any) -> None:
    add_hook(st_client, includeChangesets=True)
    st_client.put("/api/job/35770", json={"status": "completed"})
    st_client.patch("/_sandbox/entities/appointment/754", json={"status": "completed"})
    for message, (kind, rid) in zip(catcher.messages, [("job", 35770), ("appointment", 754)], strict=True):
        assert message["data"][0]["timestamp"] == st_client.get(f"/api/{kind}/{rid}").json()["data"]["updated"]


def test_external_ids_are_set_read_found_and_removed(st_client: TestClient) -> None:
    assert st_client.post("/api/externalid/job/35769/synergist", json={"value": "6712"}).json() == {
        "data": {"value": "6712"}
    }
    assert st_client.get("/api/externalid/job/35769").json()["data"] == {"values": {"synergist": "6712"}}
    assert st_client.get("/api/externalid/job/35769/synergist").json()["data"] == {"value": "6712"}
    assert st_client.get("/api/job/35769").json()["data"]["externalIds"] == {"synergist": "6712"}
    found = st_client.get("/api/externalid/job/synergist/6712").json()["data"]
    assert found["id"] == 35769 and found["uri"].endswith("/api/job/35769")
    assert st_client.get("/api/externalid/job/synergist/", params={"value": "6712"}).json()["data"]["id"] == 35769
    # [INCONS] the entity type constant works as well as the name (3 is a job).
    assert st_client.get("/api/externalid/3/35769").json()["data"] == {"values": {"synergist": "6712"}}
    assert st_client.put("/api/externalid/job/35769/synergist", json={"value": ""}).status_code == 200
    assert st_client.get("/api/externalid/job/35769").json()["data"] == {"values": {}}


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/api/externalid", 405, "not allowed"),
        ("GET", "/api/externalid/location", 405, "not allowed"),
        ("GET", "/api/externalid/foo", 404, "invalid entity type"),
        ("GET", "/api/externalid/job/999999", 404, "job 999999 not found"),
        ("POST", "/api/externalid/job/35769/system_foo", 404, "no external system with that name was found"),
        ("DELETE", "/api/externalid/job/35769/synergist", 405, "not allowed"),
        ("GET", "/api/externalid/job/synergist/ENT2", 404, "no job object was found in synergist identified by 'ENT2'"),
        ("PUT", "/api/externalid/job/synergist/ENT1", 405, "not allowed"),
        ("POST", "/api/externalid/invoice/9623/synergist", 404, "invalid entity type"),
    ],
)
def test_external_id_errors_follow_the_docs_table(
    st_client: TestClient, method: str, path: str, status: int, error: str
) -> None:
    response = st_client.request(method, path, json={"value": "x"} if method in ("POST", "PUT") else None)
    assert response.status_code == status
    assert response.json()["messages"]["error"] == [error]


def test_external_systems_can_be_added_for_tests(st_client: TestClient) -> None:
    assert st_client.post("/api/externalid/company/39/acme", json={"value": "A-1"}).status_code == 404
    assert "acme" in st_client.post("/_sandbox/externalsystems", json={"name": "acme"}).json()
    assert st_client.post("/api/externalid/company/39/acme", json={"value": "A-1"}).status_code == 200
    assert st_client.get("/api/company/39").json()["data"]["externalIds"] == {"acme": "A-1"}
