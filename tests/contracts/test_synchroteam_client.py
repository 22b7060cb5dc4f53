"""SynchroteamClient against the Synchroteam sandbox over real HTTP: upserts, lifecycle, lists, limits, errors."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from fieldrelay.settings import Settings
from fieldrelay.targets import target_limits
from sandbox import synchroteam
from tests.contracts.conftest import SYNCHROTEAM_KEY, Served
from workers.admission import quota_reset
from workers.connectors.errors import AuthFailed, NotFound, QuotaExceeded, RateLimited, Rejected, Unavailable
from workers.connectors.synchroteam import (
    SynchroteamAuthFailed,
    SynchroteamClient,
    SynchroteamNotFound,
    SynchroteamQuotaExceeded,
    SynchroteamRateLimited,
    SynchroteamRejected,
    SynchroteamUnavailable,
)

ClientFor = Callable[..., SynchroteamClient]


@pytest.fixture
def client_for(
    shared: Callable[[str], Served], serve: Callable[..., Served], closing: Callable[[Any], Any]
) -> Callable[..., tuple[Served, SynchroteamClient]]:
    """`client_for(rate_limit=3, key=...)`: a sandbox built with those options (else the shared one), and a client."""

    def make(key: str = SYNCHROTEAM_KEY, timeout: float = 5.0, **options: Any) -> tuple[Served, SynchroteamClient]:
        served = serve("synchroteam", synchroteam.create_app(**options)) if options else shared("synchroteam")
        client = closing(SynchroteamClient(served.url, "sandbox", SecretStr(key), timeout=timeout))
        return served, client

    return make


@pytest.fixture
def sandbox_and_client(client_for: Callable[..., tuple[Served, SynchroteamClient]]) -> tuple[Served, SynchroteamClient]:
    return client_for()


@pytest.fixture
def sandbox(sandbox_and_client: tuple[Served, SynchroteamClient]) -> Served:
    return sandbox_and_client[0]


@pytest.fixture
def client(sandbox_and_client: tuple[Served, SynchroteamClient]) -> SynchroteamClient:
    return sandbox_and_client[1]


def chain(client: SynchroteamClient, n: str = "1") -> dict[str, Any]:
    customer = client.upsert_customer({"myId": f"st-company-{n}", "name": f"Company {n}"})
    site = client.upsert_site(
        {"myId": f"st-location-{n}", "name": f"Site {n}", "customer": {"myId": f"st-company-{n}"}}
    )
    job = client.upsert_job(
        {
            "myId": f"st-job-{n}",
            "description": f"Job {n}",
            "customer": {"myId": f"st-company-{n}"},
            "site": {"myId": f"st-location-{n}"},
        }
    )
    return {"customer": customer, "site": site, "job": job}


# Upserts and details


def test_customer_site_job_upserts_link_by_my_id(client: SynchroteamClient):
    made = chain(client)

    assert made["site"]["customer"] == {"id": made["customer"]["id"], "myId": "st-company-1", "name": "Company 1"}
    assert made["job"]["customer"]["myId"] == "st-company-1"
    assert made["job"]["site"] == {"id": made["site"]["id"], "myId": "st-location-1", "name": "Site 1"}
    assert made["job"]["status"] == "created"
    assert client.details("job", myId="st-job-1") == made["job"]
    assert client.details("customer", myId="st-company-1")["id"] == made["customer"]["id"]


def test_a_second_send_with_the_same_my_id_updates_the_same_record(sandbox: Served, client: SynchroteamClient):
    first = chain(client)
    again = chain(client)
    renamed = client.upsert_customer({"myId": "st-company-1", "contactEmail": "ops@example.com"})

    assert again["job"]["id"] == first["job"]["id"]
    assert again["job"]["num"] == first["job"]["num"]
    assert renamed["id"] == first["customer"]["id"]
    assert (renamed["name"], renamed["contactEmail"]) == ("Company 1", "ops@example.com")  # partial update
    assert [r["myId"] for r in sandbox.state.active("job")].count("st-job-1") == 1
    assert [r["myId"] for r in sandbox.state.active("customer")].count("st-company-1") == 1


def test_a_send_without_a_key_creates_even_when_the_name_exists(sandbox: Served, client: SynchroteamClient):
    # /send matches on id and myId only; a name shared with the seeded customer is not a key.
    created = client.upsert_customer({"name": "Sample Customer"})

    assert created["id"] != 35604
    assert sorted(r["id"] for r in sandbox.state.active("customer") if r["name"] == "Sample Customer") == sorted(
        [35604, created["id"]]
    )


def test_equipment_and_activity_upserts(client: SynchroteamClient):
    chain(client)
    equipment = client.upsert_equipment({"myId": "st-asset-1", "name": "Hood", "site": {"myId": "st-location-1"}})
    activity = client.upsert_activity(
        {
            "activityType": {"id": 596},
            "dateStart": "2026-05-01 08:00",
            "dateEnd": "2026-05-01 08:30",
            "user": {"id": 1551},
        }
    )
    moved = client.upsert_activity({"id": activity["id"], "dateEnd": "2026-05-01 09:00"})

    assert equipment["customer"]["myId"] == "st-company-1"  # taken from the site
    assert (moved["id"], moved["dateStart"], moved["dateEnd"]) == (
        activity["id"],
        "2026-05-01 08:00",
        "2026-05-01 09:00",
    )
    assert client.details("activity", id=activity["id"])["activityType"]["name"] == "Standard Travel"


def test_job_lifecycle(client: SynchroteamClient):
    chain(client)
    key = {"myId": "st-job-1"}

    scheduled = client.schedule_job(key, datetime(2026, 5, 1, 8), "2026-05-01 10:00:00", technician={"id": 1551})
    assert (scheduled["status"], scheduled["scheduledStart"], scheduled["technician"]["login"]) == (
        "scheduled",
        "2026-05-01 08:00:00",
        "johndoe",
    )
    assert client.details("job", **key)["scheduledStart"] == "01/05/2026 08:00:00"
    assert client.unschedule_job(key)["scheduledStart"] is None
    completed = client.complete_job(key, datetime(2026, 5, 1, 8), "2026-05-01 09:30")
    assert completed == {"id": scheduled["id"], "status": "completed"}
    assert client.details("job", **key)["duration"] == 90
    assert client.validate_job(key)["status"] == "validated"
    assert client.cancel_job(key)["status"] == "cancelled"


def test_confirm_needs_draft_scheduling(client: SynchroteamClient):
    chain(client)
    with pytest.raises(SynchroteamRejected) as caught:
        client.confirm_job({"myId": "st-job-1"})
    assert (caught.value.status, caught.value.detail) == (
        400,
        "Bad Request: only jobs in draft scheduling can be confirmed",
    )
    client.upsert_job({"myId": "st-job-1", "preferences": {"isDraft": True}})
    assert client.confirm_job({"myId": "st-job-1"})["status"] == "confirmed"


def test_delete_then_details_is_not_found(client: SynchroteamClient):
    chain(client)
    assert client.delete("job", myId="st-job-1")[0]["deleted"] is True
    with pytest.raises(SynchroteamNotFound) as caught:
        client.details("job", myId="st-job-1")
    assert isinstance(caught.value, NotFound) and isinstance(caught.value, Rejected)
    assert (caught.value.status, caught.value.path, caught.value.detail) == (
        404,
        "/api/v3/job/details",
        "Not Found: job not found",
    )


# Lists


def test_lists_page_through_small_pages(sandbox: Served, client: SynchroteamClient):
    for n in range(1, 6):
        client.upsert_customer({"myId": f"st-company-{n}", "name": f"Company {n}"})

    customers = list(client.iter_list("customer", page_size=2, sort="myId"))

    expected = sorted(str(r["myId"]).lower() for r in sandbox.state.active("customer"))
    assert len(expected) == 7
    assert [c["myId"].lower() for c in customers] == expected
    pages = [(r["query"]["page"], r["query"]["pageSize"]) for r in sandbox.requests() if r["path"].endswith("/list")]
    assert pages == [("1", "2"), ("2", "2"), ("3", "2"), ("4", "2")]


def test_changed_since_lists_only_newer_records_and_the_page_size_is_capped(sandbox: Served, client: SynchroteamClient):
    before = datetime.now(UTC) - timedelta(seconds=1)
    chain(client, "1")
    chain(client, "2")

    jobs = list(client.iter_list("job", changed_since=before, page_size=500))

    assert sorted(j["myId"] for j in jobs) == ["st-job-1", "st-job-2"]
    [query] = [r["query"] for r in sandbox.requests() if r["path"] == "/api/v3/job/list"]
    assert query["pageSize"] == "100"
    assert query["changedSince"] == before.strftime("%Y-%m-%d %H:%M:%S")


# Rate limit, quota and their headers


def test_every_answer_exposes_the_rate_and_quota_headers(client_for: Callable[..., tuple[Served, SynchroteamClient]]):
    _, client = client_for(rate_limit=5, daily_quota=50)
    client.details("customer", id=35604)
    rate = client.last_rate
    assert rate is not None
    assert (rate.limit, rate.remaining, rate.quota_limit, rate.quota_remaining) == (5, 4, 50, 49)
    assert rate.reset_at is not None and time.time() < rate.reset_at <= time.time() + 61


def test_429_carries_the_reset_time_and_the_window_reopens(client_for: Callable[..., tuple[Served, SynchroteamClient]]):
    sandbox, client = client_for(rate_limit=3, window_seconds=1)
    for _ in range(3):
        client.details("customer", id=35604)
    window_reset = client.last_rate.reset_at if client.last_rate else None

    with pytest.raises(SynchroteamRateLimited) as caught:
        client.details("customer", id=35604)

    assert not isinstance(caught.value, SynchroteamQuotaExceeded)
    assert isinstance(caught.value, RateLimited) and isinstance(caught.value, Unavailable)
    assert (caught.value.status, caught.value.detail) == (429, "Too Many Requests: You have gone above your rate limit")
    assert caught.value.reset_at == window_reset
    assert caught.value.reset_at is not None
    assert caught.value.rate.remaining == 0
    assert [r["status"] for r in sandbox.requests()] == [200, 200, 200, 429]
    time.sleep(max(0.0, caught.value.reset_at - time.time()) + 0.05)
    assert client.details("customer", id=35604)["id"] == 35604


def test_an_exhausted_daily_quota_waits_until_utc_midnight(client_for: Callable[..., tuple[Served, SynchroteamClient]]):
    _, client = client_for(daily_quota=2)
    client.details("customer", id=35604)
    client.details("customer", id=35604)

    with pytest.raises(SynchroteamQuotaExceeded) as caught:
        client.details("customer", id=35604)

    # The connector reports the quota; when it comes back ("resets at UTC midnight") is the target's row.
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    assert isinstance(caught.value, QuotaExceeded) and caught.value.reset_at is None
    limits = target_limits(Settings(_env_file=None))["synchroteam"]
    assert quota_reset(limits, time.time()) == float(calendar.timegm(tomorrow.timetuple()))
    assert caught.value.detail == "Too Many Requests: You have gone above your daily quota"
    assert caught.value.rate.quota_remaining == 0


# Errors


def test_injected_5xx_is_unavailable(sandbox: Served, client: SynchroteamClient):
    sandbox.fault(status=503, count=1, path_prefix="/api/v3/job")
    with pytest.raises(SynchroteamUnavailable) as caught:
        client.upsert_job({"myId": "x", "customer": {"id": 35604}})
    assert (caught.value.status, caught.value.path) == (503, "/api/v3/job/send")
    assert caught.value.detail == "Service Unavailable: sandbox injected HTTP 503"
    assert sandbox.state.find("job", {"myId": "x"}) is None


def test_a_dropped_connection_is_unavailable(sandbox: Served, client: SynchroteamClient):
    sandbox.fault(drop_connection=True, count=1)
    with pytest.raises(SynchroteamUnavailable) as caught:
        client.details("customer", id=35604)
    assert caught.value.status is None
    assert caught.value.detail.startswith("RemoteProtocolError")


def test_a_slow_answer_times_out(client_for: Callable[..., tuple[Served, SynchroteamClient]]):
    sandbox, client = client_for(timeout=0.2)
    sandbox.fault(latency_ms=600, count=1)
    with pytest.raises(SynchroteamUnavailable) as caught:
        client.details("customer", id=35604)
    assert (caught.value.status, caught.value.detail) == (None, "timeout (ReadTimeout)")
    sandbox.settle(1)  # the server finishes the abandoned request after the latency


def test_an_invalid_send_is_rejected_with_the_api_message(client: SynchroteamClient):
    with pytest.raises(SynchroteamRejected) as caught:
        client.upsert_site({"myId": "orphan", "name": "No customer"})
    assert not isinstance(caught.value, Unavailable)
    assert (caught.value.status, caught.value.detail) == (
        400,
        "Bad Request: customer id or myId is required to create a site",
    )


def test_a_wrong_api_key_fails_auth_and_is_never_shown(client_for: Callable[..., tuple[Served, SynchroteamClient]]):
    secret = "00000000-dead-beef-0000-000000000000"
    sandbox, client = client_for(key=secret)
    with pytest.raises(SynchroteamAuthFailed) as caught:
        client.details("customer", id=35604)
    assert isinstance(caught.value, AuthFailed)
    assert (caught.value.status, caught.value.detail) == (401, "Unauthorized: Your API key is wrong")
    assert secret not in f"{caught.value} {caught.value!r}"
    assert [r["auth_identity"] for r in sandbox.requests()] == [{"domain": "sandbox", "key_valid": False}]


def test_connection_errors_never_show_the_api_key(sandbox: Served, client: SynchroteamClient):
    sandbox.fault(drop_connection=True, count=1)
    with pytest.raises(SynchroteamUnavailable) as caught:
        client.details("customer", id=35604)
    assert SYNCHROTEAM_KEY not in f"{caught.value} {caught.value!r}"


def test_an_injected_429_without_headers_is_rate_limited_with_no_reset_time(sandbox: Served, client: SynchroteamClient):
    sandbox.fault(status=429, count=1)
    with pytest.raises(SynchroteamRateLimited) as caught:
        client.details("customer", id=35604)
    assert not isinstance(caught.value, SynchroteamQuotaExceeded)
    assert (caught.value.status, caught.value.reset_at) == (429, None)
    assert caught.value.detail == "Too Many Requests: sandbox injected HTTP 429"
