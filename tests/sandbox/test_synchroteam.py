"""Synchroteam sandbox: Basic auth, `/send` upserts, lists, lifecycle and the request budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from tests.sandbox.conftest import FakeClock, basic

JOB = "265_160719144323649"


@pytest.mark.parametrize("headers", [{}, basic(key="wrong"), basic(domain="other"), {"Authorization": "Basic !!"}])
def test_bad_or_missing_credentials_get_401(sync_client: TestClient, headers: dict[str, str]) -> None:
    sync_client.headers.pop("Authorization")
    response = sync_client.get("/api/v3/job/list", headers=headers)
    assert response.status_code == 401
    assert set(response.json()) == {"error", "message"}


@pytest.mark.parametrize("prefix", ["/api/v3", "/v3", "/Api/v3"])
def test_every_documented_path_prefix_works(sync_client: TestClient, prefix: str) -> None:
    assert sync_client.get(f"{prefix}/job/details", params={"id": JOB}).json()["num"] == 154872


def test_job_send_creates_then_upserts_by_my_id_id_and_num(sync_client: TestClient) -> None:
    created = sync_client.post(
        "/api/v3/job/send",
        json={"myId": "st-35769", "customer": {"myId": "sCustomer08"}, "description": "Fix the hood"},
    ).json()
    assert isinstance(created["id"], str) and isinstance(created["num"], int)
    assert created["status"] == "created" and created["customer"]["id"] == 35604
    for key in ({"myId": "st-35769"}, {"id": created["id"]}, {"num": created["num"]}):
        again = sync_client.post("/api/v3/job/send", json={**key, "priority": "high"}).json()
        assert again["id"] == created["id"] and again["description"] == "Fix the hood"
    listed = sync_client.get("/api/v3/job/list", params={"myId": "st-35769"}).json()
    assert listed["recordsTotal"] == 1 and listed["data"][0]["priority"] == "high"


def test_job_send_validates_what_the_docs_require(sync_client: TestClient) -> None:
    assert sync_client.post("/api/v3/job/send", json={"myId": "x"}).status_code == 400
    assert sync_client.post("/api/v3/job/send", json={"myId": "x", "customer": {"id": 1}}).status_code == 400
    bad_date = {"myId": "x", "customer": {"id": 35604}, "scheduledStart": "2026-01-01 10:00:00"}
    assert sync_client.post("/api/v3/job/send", json=bad_date).status_code == 400
    assert sync_client.post("/api/v3/job/send", json={"id": JOB, "status": "done"}).status_code == 400
    via_site = sync_client.post("/api/v3/job/send", json={"myId": "y", "site": {"id": 2811}}).json()
    assert via_site["customer"]["id"] == 35604


def test_job_dates_use_the_job_object_format(sync_client: TestClient, clock: FakeClock) -> None:
    clock.now = 1_784_563_200  # 2026-07-20 16:00:00 UTC
    job = sync_client.post("/api/v3/job/send", json={"myId": "d", "customer": {"id": 35604}}).json()
    assert job["dateCreated"] == job["dateModified"] == "20/07/2026 16:00:00"


def test_customer_site_and_equipment_upserts(sync_client: TestClient) -> None:
    customer = sync_client.post(
        "/api/v3/customer/send",
        json={"myId": "st-39", "name": "Big Bang Burger Bar", "contactEmail": "bill@bbbb.example"},
    ).json()
    assert isinstance(customer["id"], int) and customer["tags"] == []
    renamed = sync_client.post("/api/v3/customer/send", json={"myId": "st-39", "addressCity": "Raleigh"}).json()
    assert (renamed["id"], renamed["name"], renamed["addressCity"]) == (
        customer["id"],
        "Big Bang Burger Bar",
        "Raleigh",
    )
    assert sync_client.post("/api/v3/site/send", json={"myId": "s", "name": "Foo's Bar"}).status_code == 400
    site = sync_client.post(
        "/api/v3/site/send", json={"myId": "st-33", "name": "Foo's Bar", "customer": {"myId": "st-39"}}
    ).json()
    assert site["customer"] == {"id": customer["id"], "myId": "st-39", "name": "Big Bang Burger Bar"}
    equipment = sync_client.post("/api/v3/equipment/send", json={"name": "Hood", "site": {"id": site["id"]}}).json()
    assert equipment["customer"]["id"] == customer["id"]
    assert sync_client.get("/api/v3/customer/details", params={"email": "bill@bbbb.example"}).status_code == 200


def test_details_and_delete_404_when_missing(sync_client: TestClient) -> None:
    assert sync_client.get("/api/v3/job/details", params={"myId": "nope"}).status_code == 404
    assert sync_client.get("/api/v3/job/details").status_code == 400
    assert sync_client.delete("/api/v3/customer/delete", params={"id": 1}).status_code == 404


def test_delete_hides_records_until_show_deleted(sync_client: TestClient) -> None:
    assert sync_client.delete("/api/v3/job/delete", params={"id": JOB}).json() == [{"id": JOB, "deleted": True}]
    assert sync_client.get("/api/v3/job/details", params={"id": JOB}).status_code == 404
    assert sync_client.get("/api/v3/job/list").json()["recordsTotal"] == 0
    assert sync_client.get("/api/v3/job/list", params={"show": "deleted"}).json()["recordsTotal"] == 1
    sync_client.delete("/api/v3/site/delete", params={"myId": "ref-2511"})
    undeleted = sync_client.post("/api/v3/site/undelete", params={"myId": "ref-2511"}).json()
    assert undeleted == {"SitesUnDeleted": [{"id": 2811, "isUnDeleted": True}]}


def test_list_pages_across_the_whole_set(sync_client: TestClient) -> None:
    for n in range(7):
        sync_client.post("/api/v3/customer/send", json={"myId": f"c{n}", "name": f"Customer {n}"})
    pages = [sync_client.get("/api/v3/customer/list", params={"page": p, "pageSize": 4}).json() for p in (1, 2, 3)]
    assert [(p["page"], p["pageSize"], p["records"], p["recordsTotal"]) for p in pages] == [
        (1, 4, 4, 9),
        (2, 4, 4, 9),
        (3, 4, 1, 9),
    ]
    names = [c["name"] for p in pages for c in p["data"]]
    assert names == sorted(names, key=str.lower) and len(set(names)) == 9
    default = sync_client.get("/api/v3/customer/list").json()
    assert (default["page"], default["pageSize"]) == (1, 25)
    assert sync_client.get("/api/v3/customer/list", params={"pageSize": 101}).status_code == 400


def test_changed_since_is_utc_and_after_for_customers_but_on_or_after_for_jobs(
    sync_client: TestClient, clock: FakeClock
) -> None:
    """Seed 000, "List customers": changedSince returns customers "modified after the UTC date+time";
    "List jobs": "the older modification checked on or after". Old: customers were inclusive too."""
    clock.now = 1_784_563_200  # 2026-07-20 16:00:00 UTC
    sync_client.post("/api/v3/customer/send", json={"myId": "new", "name": "New"})
    sync_client.post("/api/v3/job/send", json={"myId": "new-job", "customer": {"myId": "new"}})
    at = sync_client.get("/api/v3/customer/list", params={"changedSince": "2026-07-20 16:00:00"}).json()
    assert at["recordsTotal"] == 0
    before = sync_client.get("/api/v3/customer/list", params={"changedSince": "2026-07-20 15:59:59"}).json()
    assert [c["myId"] for c in before["data"]] == ["new"]
    jobs = sync_client.get("/api/v3/job/list", params={"changedSince": "2026-07-20 16:00:00"}).json()
    assert [j["myId"] for j in jobs["data"]] == ["new-job"]
    assert sync_client.get("/api/v3/job/list", params={"changedSince": "20/07/2026"}).status_code == 400


def test_lifecycle_actions_answer_lists(sync_client: TestClient) -> None:
    job = sync_client.post("/api/v3/job/send", json={"myId": "life", "customer": {"id": 35604}}).json()
    scheduled = sync_client.post(
        "/api/v3/job/schedule",
        json={
            "id": job["id"],
            "scheduledStart": "2018-12-12 15:00:00",
            "scheduledEnd": "2018-12-12 17:00:00",
            "technician": {"id": 1551},
            "otherTechnicians": [{"login": "alainpp"}],
        },
    ).json()
    assert scheduled == [
        {
            "id": job["id"],
            "status": "scheduled",
            "scheduledStart": "2018-12-12 15:00:00",
            "scheduledEnd": "2018-12-12 17:00:00",
            "technician": {"id": 1551, "name": "John Doe", "login": "johndoe"},
            "otherTechnicians": [{"id": 59728, "name": "alain pp", "login": "alainpp"}],
        }
    ]
    details = sync_client.get("/api/v3/job/details", params={"myId": "life"}).json()
    assert details["scheduledStart"] == "12/12/2018 15:00:00"
    done = sync_client.post(
        "/api/v3/job/complete",
        json={"myId": "life", "actualStart": "2019-11-06 13:13", "actualEnd": "2019-11-06 14:28"},
    ).json()
    assert done == [{"id": job["id"], "status": "completed"}]
    assert sync_client.post("/api/v3/job/validate", json={"num": job["num"]}).json()[0]["status"] == "validated"
    assert sync_client.post("/api/v3/job/cancel", json={"id": job["id"]}).json()[0]["status"] == "cancelled"
    assert sync_client.post("/api/v3/job/confirm", json={"id": job["id"]}).status_code == 400
    assert sync_client.post("/api/v3/job/cancel", json={"id": "missing"}).status_code == 404
    assert sync_client.post("/api/v3/job/unschedule", json={}).status_code == 400


def test_activities_upsert_by_id_and_filter(sync_client: TestClient) -> None:
    body = {
        "activityType": {"id": 598},
        "dateStart": "2026-08-01 08:00",
        "dateEnd": "2026-08-01 17:00",
        "user": {"login": "johndoe"},
        "note": "Vacation",
    }
    created = sync_client.post("/api/v3/activity/send", json=body).json()
    assert created["activityType"]["category"] == "unavail" and created["user"]["id"] == 1551
    changed = sync_client.post("/api/v3/activity/send", json={"id": created["id"], "note": "Holiday"}).json()
    assert changed["id"] == created["id"] and changed["dateStart"] == "2026-08-01 08:00"
    listed = sync_client.get("/api/v3/activity/list", params={"activityType_category": "unavailability"}).json()
    assert [a["id"] for a in listed["data"]] == [created["id"]]
    assert sync_client.post("/api/v3/activity/send", json={"note": "no type"}).status_code == 400
    assert sync_client.delete("/api/v3/activity/delete", params={"id": created["id"]}).json()[0]["deleted"]


def test_rate_limit_answers_429_with_headers_until_the_window_resets(
    sync_factory: Callable[..., TestClient], clock: FakeClock
) -> None:
    client = sync_factory(rate_limit=3, window_seconds=10)
    remaining = [client.get("/api/v3/job/list").headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    limited = client.get("/api/v3/job/list")
    assert limited.status_code == 429
    assert limited.json() == {"error": "Too Many Requests", "message": "You have gone above your rate limit"}
    assert int(limited.headers["X-RateLimit-Reset"]) == int(clock.now) + 10
    assert limited.headers["X-Quota-Remaining"] == "9997"
    clock.advance(10)
    assert client.get("/api/v3/job/list").status_code == 200


def test_daily_quota_answers_the_documented_429_until_utc_midnight(
    sync_factory: Callable[..., TestClient], clock: FakeClock
) -> None:
    client = sync_factory(daily_quota=2)
    assert [client.get("/api/v3/job/list").status_code for _ in range(3)] == [200, 200, 429]
    over = client.get("/api/v3/job/list")
    assert over.json() == {"error": "Too Many Requests", "message": "You have gone above your daily quota"}
    assert (over.headers["X-Quota-Limit"], over.headers["X-Quota-Remaining"]) == ("2", "0")
    clock.now = (clock.now // 86400 + 1) * 86400
    assert client.get("/api/v3/job/list").status_code == 200


def test_non_json_accept_gets_406(sync_client: TestClient) -> None:
    assert sync_client.get("/api/v3/job/list", headers={"Accept": "application/xml"}).status_code == 406
    assert sync_client.get("/api/v3/job/list", headers={"Accept": "text/json"}).status_code == 200


def test_job_list_date_window(sync_client: TestClient) -> None:
    inside = {"dateFrom": "2016-07-19 00:00:00", "dateTo": "2016-07-19 23:59:59"}
    assert sync_client.get("/api/v3/job/list", params=inside).json()["recordsTotal"] == 1
    later = {"dateFrom": "2016-07-20 00:00:00"}
    assert sync_client.get("/api/v3/job/list", params=later).json()["recordsTotal"] == 0


def test_delete_by_name_deletes_every_match(sync_client: TestClient) -> None:
    for my_id in ("a", "b"):
        sync_client.post("/api/v3/customer/send", json={"myId": my_id, "name": "Twin"})
    deleted = sync_client.delete("/api/v3/customer/delete", params={"name": "Twin"}).json()
    assert len(deleted) == 2 and all(d["deleted"] for d in deleted)
    undeleted = sync_client.post("/api/v3/customer/undelete", params={"myId": "a"}).json()
    assert list(undeleted) == ["customersDeleted"]  # [INCONS] the docs' undelete key for customers
