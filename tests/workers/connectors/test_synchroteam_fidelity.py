"""Synchroteam readings fixed against seed 000: zones, 403, exclusive `changedSince`, reports, photos, parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from workers.connectors.errors import AuthFailed, Rejected
from workers.connectors.synchroteam import SynchroteamClient, SynchroteamForbidden, parse_job_date
from workers.polling.config import PollerSpec
from workers.polling.sources import SynchroteamSource

PARIS = "Europe/Paris"


def client(handler, tz: str = "UTC") -> SynchroteamClient:
    return SynchroteamClient(
        "https://ws.synchroteam.test", "acme", SecretStr("k"), transport=httpx.MockTransport(handler), timezone=tz
    )


def page(rows: list[dict]) -> httpx.Response:
    return httpx.Response(
        200, json={"page": 1, "pageSize": 100, "records": len(rows), "recordsTotal": len(rows), "data": rows}
    )


def test_schedule_sends_the_account_wall_time_not_utc() -> None:
    """Seed 000, "Errors"/"Schedule a job": scheduledStart is `yyyy-mm-dd HH:mm:ss` with no zone; only
    `changedSince` ("List customers": "modified after the UTC date+time") is UTC. Old: 14:00Z went as 14:00."""
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=[{"id": "1", "status": "scheduled"}])

    st = client(handler, PARIS)
    start = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    st.schedule_job({"myId": "j"}, start, start.replace(hour=15))
    st.complete_job({"myId": "j"}, start, start.replace(hour=15))
    assert sent[0]["scheduledStart"] == "2026-07-01 16:00:00" and sent[0]["scheduledEnd"] == "2026-07-01 17:00:00"
    assert sent[1]["actualStart"] == "2026-07-01 16:00"


def test_changed_since_stays_utc_and_is_one_second_early_where_the_doc_says_after() -> None:
    """Seed 000, "List customers"/"List sites": `changedSince` returns records "modified after the UTC
    date+time"; "List jobs": "on or after". Old: the bound was sent as is for customers, losing its second."""
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path}:{request.url.params['changedSince']}")
        return page([])

    st = client(handler, PARIS)
    when = datetime(2026, 1, 5, 10, 0, 0, tzinfo=UTC)
    list(st.iter_list("customer", when))
    list(st.iter_list("site", when))
    list(st.iter_list("job", when))
    assert asked == [
        "/api/v3/customer/list:2026-01-05 09:59:59",
        "/api/v3/site/list:2026-01-05 09:59:59",
        "/api/v3/job/list:2026-01-05 10:00:00",
    ]


def test_job_poller_reads_date_modified_in_the_account_zone() -> None:
    """Seed 000, "The job object": `dateModified` is `dd/MM/yyyy HH:mm:ss` with no zone; the doc marks only
    `changedSince` as UTC. Old: read as UTC, so a Paris account's change looked two hours in the future."""
    row = {"id": "265_1", "myId": "j", "dateModified": "01/07/2026 16:00:00", "dateCreated": "01/07/2026 15:00:00"}
    source = SynchroteamSource(client(lambda r: page([row]), PARIS), PollerSpec("synchroteam", "job"))
    [record] = list(source.fetch(0, True))
    assert record.modified_at == int(datetime(2026, 7, 1, 14, 0, tzinfo=UTC).timestamp())
    assert parse_job_date("01/07/2026 16:00:00", PARIS) == datetime(2026, 7, 1, 16, tzinfo=ZoneInfo(PARIS))


def test_403_is_a_forbidden_resource_not_bad_credentials() -> None:
    """Seed 000, "Errors": 401 "Your API key is wrong", 403 "The resource you are trying to access is
    Forbidden". Old: 403 raised SynchroteamAuthFailed, as if the key were wrong."""
    with pytest.raises(SynchroteamForbidden) as info:
        client(lambda r: httpx.Response(403, json={"error": "Forbidden", "message": "no"})).job_report(id="1")
    assert isinstance(info.value, Rejected) and not isinstance(info.value, AuthFailed)


def test_job_report_reads_both_documented_shapes() -> None:
    """Seed 000, "Retrieve a job report": the sample answers a list of blocks; the field table an object
    with `blocks` ([INCONS]). Both are read."""
    block = {"id": 1, "blockName": "B", "items": [{"name": "Work", "value": "done"}]}
    assert client(lambda r: httpx.Response(200, json=[block])).job_report(myId="j") == [block]
    assert client(lambda r: httpx.Response(200, json={"id": 9, "blocks": [block]})).job_report(num=3) == [block]


def test_photos_parts_and_lookups_use_the_documented_paths() -> None:
    """Seed 000, "Retrieve job photos" (`getImageData`), "Send job parts" (`/api/v3/job/parts/send`),
    "List Custom Fields by object type" (`type` mandatory)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/photos"):
            return httpx.Response(200, json={"job": {"id": "1"}, "photos": []})
        if request.url.path.endswith("/parts/send"):
            return httpx.Response(200, json={"id": "c1736b28-49ca-4bd7-b2e6-fb8c4a5b34fe", "parts": []})
        return page([{"id": 2, "label": "Serial"}])

    st = client(handler)
    st.job_photos(myId="j", image_data=True)
    st.send_parts({"myId": "j"}, [{"reference": "1002", "quantity": 2}])
    assert st.custom_fields("job") == [{"id": 2, "label": "Serial"}]
    assert [r.url.path for r in seen] == ["/api/v3/job/photos", "/api/v3/job/parts/send", "/api/v3/customfield/list"]
    assert seen[0].url.params["getImageData"] == "true"
    assert json.loads(seen[1].content) == {"myId": "j", "parts": [{"reference": "1002", "quantity": 2}]}
    with pytest.raises(ValueError, match="type= one of"):
        st.custom_fields("invoice")
    with pytest.raises(ValueError, match="unknown Synchroteam lookup"):
        st.lookup("users")
