"""Synchroteam sandbox divergences from seed 000, fixed: sorts, site contacts, rate headers on refusals,
the account's zone, reports, photos, parts, custom fields, and the technician control."""

from __future__ import annotations

import base64

from starlette.testclient import TestClient

from sandbox import synchroteam
from sandbox.synchroteam_store import SynchroteamState
from tests.sandbox.conftest import FakeClock

KEY = "5e1d2c3b-0000-4000-8000-000000000001"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "x-quota-limit", "x-quota-remaining")


def test_activity_list_sorts_on_its_documented_default(sync_client: TestClient) -> None:
    """Seed 000, "List activities": sort "takes one of four values: startDate, endDate, activityType_name and
    user_login (Optional. Default is startDate)". Old: sort=startDate answered 400."""
    for sort in ("startDate", "endDate", "activityType_name", "user_login"):
        assert sync_client.get("/api/v3/activity/list", params={"sort": sort}).status_code == 200
    assert sync_client.get("/api/v3/activity/list", params={"sort": "note"}).status_code == 400


def test_site_keeps_contact_first_and_last_name(sync_client: TestClient) -> None:
    """Seed 000, "The site object": contactLastName, contactFirstName in the field table ([INCONS] the JSON
    sample shows contactName). Old: the two names were dropped."""
    sent = {"myId": "s1", "name": "S", "customer": {"id": 35604}, "contactFirstName": "Ada", "contactLastName": "L"}
    site = sync_client.post("/api/v3/site/send", json=sent).json()
    assert (site["contactFirstName"], site["contactLastName"]) == ("Ada", "L")


def test_refused_answers_carry_the_rate_headers_too(sync_client: TestClient) -> None:
    """Seed 000, "Rate Limits and Quotas": "Your current rate limit information is provided in the response
    headers of every request". Old: 401 and 406 answers had none."""
    bad = sync_client.get("/api/v3/job/list", auth=("sandbox", "wrong"))
    picky = sync_client.get("/api/v3/job/list", headers={"Accept": "text/html"})
    assert (bad.status_code, picky.status_code) == (401, 406)
    for response in (bad, picky):
        assert all(h in response.headers for h in RATE_HEADERS)


def test_dates_are_written_in_the_account_zone(clock: FakeClock) -> None:
    """Seed 000: only changedSince is marked UTC; dateModified carries no zone, so a local-time account
    writes its own wall time. Old: always UTC."""
    clock.now = 1_784_563_200  # 2026-07-20 16:00:00 UTC
    app = synchroteam.create_app(SynchroteamState(clock=clock), timezone="America/New_York")
    client = TestClient(app)
    client.auth = ("sandbox", KEY)
    job = client.post("/api/v3/job/send", json={"myId": "tz", "customer": {"id": 35604}}).json()
    shown = client.get("/api/v3/job/details", params={"id": job["id"]}).json()
    assert shown["dateModified"] == "20/07/2026 12:00:00"
    # changedSince stays UTC: 15:59:59 UTC is before the change, 16:00:00 UTC is not after... jobs: on or after.
    found = client.get("/api/v3/job/list", params={"changedSince": "2026-07-20 16:00:00", "myId": "tz"}).json()
    assert found["recordsTotal"] == 1


def test_the_technician_completes_and_the_api_reads_report_photos_and_parts(sync_client: TestClient) -> None:
    """Seed 000, "Retrieve a job report" (blocks; 404 without one), "Retrieve job photos" (imageData only with
    getImageData=true), "Send job parts", "List Custom Fields by object type" (type mandatory)."""
    job = sync_client.post("/api/v3/job/send", json={"myId": "done-1", "customer": {"id": 35604}}).json()
    assert sync_client.get("/api/v3/jobReport/details", params={"myId": "done-1"}).status_code == 404
    done = sync_client.post("/_sandbox/technician/complete", json={"job": {"myId": "done-1"}, "summary": "Fixed"})
    assert done.json()["status"] == "completed"
    blocks = sync_client.get("/api/v3/jobReport/details", params={"id": job["id"]}).json()
    assert blocks[0]["items"][0]["value"] == "Fixed"
    bare = sync_client.get("/api/v3/job/photos", params={"myId": "done-1"}).json()
    assert bare["job"]["myId"] == "done-1" and bare["photos"][0]["imageData"] is None
    full = sync_client.get("/api/v3/job/photos", params={"myId": "done-1", "getImageData": "true"}).json()
    assert base64.b64decode(full["photos"][0]["imageData"]).startswith(b"\x89PNG")
    parts = sync_client.post(
        "/api/v3/job/parts/send", json={"myId": "done-1", "parts": [{"reference": "1002", "quantity": 2}]}
    )
    assert parts.status_code == 200 and len(parts.json()["id"]) == 36
    assert (
        sync_client.post("/api/v3/job/parts/send", json={"myId": "done-1", "parts": [{"quantity": 1}]}).status_code
        == 400
    )
    details = sync_client.get("/api/v3/job/details", params={"myId": "done-1"}).json()
    assert details["parts"] == [{"reference": "1002", "quantity": 2}] and details["timeEntries"]
    assert sync_client.get("/api/v3/customfield/list").status_code == 400
    labels = [f["label"] for f in sync_client.get("/api/v3/customfield/list", params={"type": "job"}).json()["data"]]
    assert "Synergist phase" in labels
