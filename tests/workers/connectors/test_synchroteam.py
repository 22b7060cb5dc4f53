"""SynchroteamClient against httpx.MockTransport."""

from __future__ import annotations

import base64
import json
import pickle
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from pydantic import SecretStr

from workers.connectors.errors import AuthFailed, NotFound, QuotaExceeded, RateInfo, RateLimited, Rejected, Unavailable
from workers.connectors.synchroteam import (
    SynchroteamAuthFailed,
    SynchroteamClient,
    SynchroteamError,
    SynchroteamForbidden,
    SynchroteamNotFound,
    SynchroteamQuotaExceeded,
    SynchroteamRateLimited,
    SynchroteamRejected,
    SynchroteamUnavailable,
    parse_job_date,
)

KEY = "ff8e5b63-0e74-4102-ba93-c829acfb58f3"
RATE = {
    "X-RateLimit-Limit": "120",
    "X-RateLimit-Remaining": "54",
    "X-RateLimit-Reset": "1530199810",
    "X-Quota-Limit": "10000",
    "X-Quota-Remaining": "9452",
}
Handler = Callable[[httpx.Request], httpx.Response]


def make_client(handler: Handler) -> SynchroteamClient:
    return SynchroteamClient(
        "https://ws.synchroteam.test", "acme", SecretStr(KEY), transport=httpx.MockTransport(handler)
    )


def test_upsert_job_posts_json_with_basic_auth_and_reads_rate_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        return httpx.Response(200, json={**body, "id": "265_1", "num": 7}, headers=RATE)

    client = make_client(handler)
    job = client.upsert_job({"myId": "st-34872", "customer": {"myId": "st-39"}})
    assert job == {"myId": "st-34872", "customer": {"myId": "st-39"}, "id": "265_1", "num": 7}
    request = seen[0]
    assert request.method == "POST" and request.url.path == "/api/v3/job/send"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"acme:{KEY}".encode()).decode()
    assert client.last_rate == RateInfo(120, 54, 1530199810.0, 10000, 9452)


def test_details_and_delete_send_the_key_as_query() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(200, json=[{"id": 5, "deleted": True}])
        return httpx.Response(200, json={"id": 5, "myId": request.url.params["myId"]})

    client = make_client(handler)
    assert client.details("customer", myId="c-1") == {"id": 5, "myId": "c-1"}
    assert client.delete("customer", id=5) == [{"id": 5, "deleted": True}]
    with pytest.raises(ValueError):
        client.details("customer")


def test_iter_list_pages_until_records_total() -> None:
    pages: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        pages.append(params)
        page, size = int(params["page"]), int(params["pageSize"])
        rows = [{"id": i} for i in range((page - 1) * size, min(page * size, 5))]
        return httpx.Response(
            200, json={"page": page, "pageSize": size, "records": len(rows), "recordsTotal": 5, "data": rows}
        )

    client = make_client(handler)
    since = datetime(2024, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    ids = [r["id"] for r in client.iter_list("job", changed_since=since, page_size=2, status="completed")]
    assert ids == [0, 1, 2, 3, 4]
    assert [p["page"] for p in pages] == ["1", "2", "3"]
    assert pages[0]["changedSince"] == "2024-03-01 12:00:00"
    assert pages[0]["status"] == "completed"


def test_iter_list_caps_page_size_and_stops_on_empty_page() -> None:
    sizes: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sizes.append(request.url.params["pageSize"])
        return httpx.Response(200, json={"page": 1, "pageSize": 100, "records": 0, "recordsTotal": 0, "data": []})

    assert list(make_client(handler).iter_list("customer", page_size=500)) == []
    assert sizes == ["100"]


def test_lifecycle_formats_dates_and_unwraps_the_list() -> None:
    bodies: list[tuple[str, dict[str, object]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append((request.url.path, body))
        return httpx.Response(200, json=[{"id": "265_1", "status": "scheduled"}])

    client = make_client(handler)
    start = datetime(2018, 12, 12, 15, 0)
    result = client.schedule_job({"myId": "j1"}, start, "2018-12-12 17:00:00", technician={"id": 1551})
    assert result == {"id": "265_1", "status": "scheduled"}
    client.complete_job({"num": 4}, datetime(2019, 11, 6, 13, 13), datetime(2019, 11, 6, 14, 28))
    for op in ("unschedule", "cancel", "validate", "confirm"):
        getattr(client, f"{op}_job")({"id": "265_1"})
    assert bodies[0] == (
        "/api/v3/job/schedule",
        {
            "myId": "j1",
            "scheduledStart": "2018-12-12 15:00:00",
            "scheduledEnd": "2018-12-12 17:00:00",
            "technician": {"id": 1551},
        },
    )
    assert bodies[1] == (
        "/api/v3/job/complete",
        {"num": 4, "actualStart": "2019-11-06 13:13", "actualEnd": "2019-11-06 14:28"},
    )
    assert [p for p, _ in bodies[2:]] == [f"/api/v3/job/{op}" for op in ("unschedule", "cancel", "validate", "confirm")]


def test_rate_limited_429_carries_reset_time() -> None:
    headers = {**RATE, "X-RateLimit-Remaining": "0"}
    client = make_client(
        lambda r: httpx.Response(429, json={"error": "Too Many Requests", "message": "slow down"}, headers=headers)
    )
    with pytest.raises(SynchroteamRateLimited) as info:
        client.details("job", id="1")
    err = info.value
    assert not isinstance(err, SynchroteamQuotaExceeded)
    assert isinstance(err, RateLimited) and isinstance(err, Unavailable)
    assert err.reset_at == 1530199810.0
    assert err.rate.remaining == 0
    assert client.last_rate is not None and client.last_rate.remaining == 0


def test_quota_exhaustion_is_distinguished() -> None:
    headers = {**RATE, "X-Quota-Remaining": "0"}
    body = {"error": "Too Many Requests", "message": "You have gone above your daily quota"}
    client = make_client(lambda r: httpx.Response(429, json=body, headers=headers))
    with pytest.raises(SynchroteamQuotaExceeded) as info:
        client.upsert_customer({"myId": "c"})
    # When the quota returns is the target table's to say (fieldrelay.targets), not the connector's.
    assert isinstance(info.value, QuotaExceeded) and info.value.reset_at is None
    assert "daily quota" in str(info.value)


@pytest.mark.parametrize(
    ("status", "cls", "generic"),
    [
        (400, SynchroteamRejected, Rejected),
        (401, SynchroteamAuthFailed, AuthFailed),
        (403, SynchroteamForbidden, Rejected),
        (404, SynchroteamNotFound, NotFound),
        (500, SynchroteamUnavailable, Unavailable),
        (503, SynchroteamUnavailable, Unavailable),
    ],
)
def test_status_codes_map_to_typed_errors(status: int, cls: type, generic: type) -> None:
    body = {"error": "Oops", "message": f"detail {status}"}
    client = make_client(lambda r: httpx.Response(status, json=body))
    with pytest.raises(cls) as info:
        client.details("job", myId="x")
    err = info.value
    assert isinstance(err, generic) and isinstance(err, SynchroteamError)
    assert (err.api, err.status, err.path) == ("synchroteam", status, "/api/v3/job/details")
    assert err.detail == f"Oops: detail {status}"


def raise_(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")]
)
def test_network_errors_are_unavailable_and_not_httpx(exc: Exception) -> None:
    with pytest.raises(SynchroteamUnavailable) as info:
        make_client(raise_(exc)).upsert_job({"myId": "x"})
    assert info.value.status is None
    assert not isinstance(info.value, httpx.HTTPError)
    assert info.value.__cause__ is None


def test_non_json_success_is_unavailable() -> None:
    with pytest.raises(SynchroteamUnavailable):
        make_client(lambda r: httpx.Response(200, text="<html>maintenance</html>")).details("job", id="1")


def test_errors_pickle_and_hide_the_key() -> None:
    client = make_client(lambda r: httpx.Response(429, json={"message": "slow"}, headers=RATE))
    with pytest.raises(SynchroteamRateLimited) as info:
        client.details("job", id="1")
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is SynchroteamRateLimited
    assert (clone.status, clone.path, clone.detail, clone.reset_at) == (
        429,
        "/api/v3/job/details",
        "slow",
        1530199810.0,
    )
    assert clone.rate == info.value.rate
    for text in (str(info.value), repr(info.value), repr(client)):
        assert KEY not in text


def test_parse_job_date() -> None:
    assert parse_job_date("19/07/2016 14:43:00") == datetime(2016, 7, 19, 14, 43, tzinfo=UTC)
    assert parse_job_date(None) is None
