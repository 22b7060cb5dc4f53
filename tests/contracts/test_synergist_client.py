"""SynergistClient against the Synergist sandbox over real HTTP: records, versions, pages, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from sandbox import synergist
from sandbox.synergist_store import SynergistState
from tests.contracts.conftest import PASSWORD, Served
from workers.connectors.errors import AuthFailed, NotFound, Rejected, Unavailable
from workers.connectors.synergist import (
    SynergistAuthFailed,
    SynergistClient,
    SynergistConflict,
    SynergistNotFound,
    SynergistRejected,
    SynergistUnavailable,
)


class BusyEditor:
    """Another Synergist user who saves activity `activity_id` just before each of our next `times` updates."""

    def __init__(self, app: ASGIApp, state: SynergistState, activity_id: int, times: int) -> None:
        self.app, self.state, self.activity_id, self.times = app, state, activity_id, times
        self.edits = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"")
        if scope["type"] == "http" and b"action=update" in query and self.edits < self.times:
            self.edits += 1
            record = self.state.get("activities", self.activity_id)
            self.state.touch("activities", record, {"activityDetails": f"edited elsewhere {self.edits}"})
        await self.app(scope, receive, send)


@pytest.fixture
def sandbox(shared: Callable[[str], Served]) -> Served:
    return shared("synergist")


@pytest.fixture
def client_for(closing: Callable[[Any], Any]) -> Callable[..., SynergistClient]:
    def make(served: Served, password: str = PASSWORD, timeout: float = 5.0, **options: Any) -> SynergistClient:
        return closing(SynergistClient(served.url, "sandbox", SecretStr(password), "1", timeout=timeout, **options))

    return make


@pytest.fixture
def client(sandbox: Served, client_for: Callable[..., SynergistClient]) -> SynergistClient:
    return client_for(sandbox)


def new_activity(client: SynergistClient, subject: str = "From ServiceTrade") -> dict[str, Any]:
    return client.create_activity(
        {"activityActivitytypeCode": "Notes", "activityClientCode": "1/C4126", "activitySubject": subject}
    )


# Activities


def test_create_read_update_delete_an_activity(sandbox: Served, client: SynergistClient):
    created = new_activity(client)
    assert created["activityRecordVersionNumber"] == 1
    assert created["activityOwnerName"] == "User"

    read = client.activity(created["activityID"])
    assert (read["activitySubject"], read["activityClientName"]) == ("From ServiceTrade", "Big Bang Burger Bar")

    updated = client.update_activity(created["activityID"], {"activityDetails": "job completed"})
    assert updated["activityRecordVersionNumber"] == 2
    assert sandbox.state.get("activities", created["activityID"])["activityDetails"] == "job completed"

    assert client.delete_activity(created["activityID"])["activityID"] == created["activityID"]
    with pytest.raises(SynergistNotFound):
        client.activity(created["activityID"])


def test_the_write_is_one_get_with_url_encoded_input(sandbox: Served, client: SynergistClient):
    new_activity(client, subject='a & b = "c"?')
    [request] = sandbox.requests()
    assert request["method"] == "GET"
    assert request["path"] == "/jsonapi/activities.json"
    assert request["query"] == {
        "version": "3.2",
        "company": "1",
        "user": "sandbox",
        "password": "[redacted]",
        "action": "create",
        "input": '{"data":[{"activityActivitytypeCode":"Notes","activityClientCode":"1/C4126",'
        '"activitySubject":"a & b = \\"c\\"?"}]}',
    }
    assert request["auth_identity"] == {"user": "sandbox", "valid": True, "method": "password"}


def test_a_concurrent_update_is_resolved_by_reading_the_version_again(
    sandbox: Served, client: SynergistClient, client_for: Callable[..., SynergistClient]
):
    created = new_activity(client)
    stale = client.activity(created["activityID"])["activityRecordVersionNumber"]
    client_for(sandbox).update_activity(created["activityID"], {"activityDetails": "someone else"})

    updated = client.update_activity(created["activityID"], {"activitySubject": "ours"}, version=stale)

    assert updated["activityRecordVersionNumber"] == stale + 2
    record = sandbox.state.get("activities", created["activityID"])
    assert (record["activitySubject"], record["activityDetails"]) == ("ours", "someone else")
    updates = [r["query"] for r in sandbox.requests() if r["query"].get("action") == "update"]
    sent = [json.loads(q["input"])["data"][0]["activityRecordVersionNumber"] for q in updates]
    assert sent == [stale, stale, stale + 1]  # theirs, our stale try, our retry after the re-read


def test_an_activity_that_keeps_changing_exhausts_the_retries(
    serve: Callable[..., Served], client_for: Callable[..., SynergistClient]
):
    state = SynergistState()
    app = synergist.create_app(state)
    editor = BusyEditor(app, state, 6712, times=10)
    served = serve("synergist", editor)

    with pytest.raises(SynergistConflict) as caught:
        client_for(served).update_activity(6712, {"activitySubject": "ours"}, attempts=3)

    assert isinstance(caught.value, SynergistRejected)
    assert caught.value.detail == "activity 6712 changed by another user on each of 3 attempts"
    assert editor.edits == 3
    assert state.get("activities", 6712)["activitySubject"] == "Blah"


def test_one_edit_between_read_and_write_is_absorbed(
    serve: Callable[..., Served], client_for: Callable[..., SynergistClient]
):
    state = SynergistState()
    editor = BusyEditor(synergist.create_app(state), state, 6712, times=1)
    served = serve("synergist", editor)

    updated = client_for(served).update_activity(6712, {"activitySubject": "ours"})

    assert updated["activityRecordVersionNumber"] == 45 + 2
    assert (state.get("activities", 6712)["activitySubject"], editor.edits) == ("ours", 1)


# Jobs, bookings, timesheets, lookups


def test_create_and_update_a_job(sandbox: Served, client: SynergistClient):
    created = client.create_job(
        {
            "varJobTemplate": "1/00100001",
            "jobClientCode": "1/C4126",
            "jobDescription": "Hood",
            "jobDateIn": "2026/05/01",
        }
    )
    number = created["jobNumber"]
    client.update_job(number, {"jobStatus": "2", "jobComments": "live"})

    job = client.job(number)
    assert (job["jobDescription"], job["jobStatus"], job["jobComments"], job["jobDateIn"]) == (
        "Hood",
        2,
        "live",
        "2026-05-01",
    )


def test_book_move_and_delete_calendar_time(sandbox: Served, client: SynergistClient):
    booked = client.create_booking(
        {
            "calTimeSummaryInternal": 1005543,
            "calIsoDateTimeStart": "2026-07-11T09:00:00",
            "calIsoDateTimeEnd": "2026-07-11T11:00:00",
            "calDurationDecimalHours": 2,
            "calResourceId": 54,
        }
    )
    diary = booked["calDiaryInternal"]
    moved = client.update_booking(
        diary,
        {
            "calIsoDateTimeStart": "2026-07-12T09:00:00",
            "calIsoDateTimeEnd": "2026-07-12T10:00:00",
            "calAllDay": "false",
            "calResourceId": 54,
        },
    )
    assert (moved["calDiaryInternal"], moved["calStartDate"], moved["calJobAndPhase"]) == (
        diary,
        "2026-07-12",
        "1/00000510.001",
    )
    client.delete_booking(diary)
    assert diary not in sandbox.state.tables["calendar"]


def test_create_and_update_a_pending_timesheet(sandbox: Served, client: SynergistClient):
    entry = client.create_pending_timesheet(
        {
            "tspJobAndPhase": "1/00000510.001",
            "tspTimeDate": "2026-07-18",
            "tspResourceCode": "1/USER",
            "tspHoursNormal": 2,
        }
    )
    client.update_pending_timesheet(entry["tspEntryNo"], {"tspWorkDone": "hood cleaned"})
    stored = sandbox.state.get("tspending", entry["tspEntryNo"])
    assert (stored["tspHoursNormal"], stored["tspWorkDone"]) == (2, "hood cleaned")


def test_lookups(sandbox: Served, client: SynergistClient):
    assert [c["clientCode"] for c in client.clients()] == [c["clientCode"] for c in sandbox.state.clients]
    assert [t["activitytypeCode"] for t in client.activity_types()] == ["Notes", "COMM", "PUP", "MAIL"]
    assert [u["userLogin"] for u in client.users()] == ["sandbox", "jimish", "jon"]


def test_the_sha512_password_works_in_place_of_the_password(
    sandbox: Served, client: SynergistClient, client_for: Callable[..., SynergistClient]
):
    hashed = client.password_hash()
    other = client_for(sandbox, password="not-used", sha512password=hashed)

    assert other.activity(6712)["activityID"] == 6712
    assert sandbox.requests()[-1]["auth_identity"] == {"user": "sandbox", "valid": True, "method": "sha512"}
    assert sandbox.requests()[-1]["query"]["sha512password"] == "[redacted]"


# Lists


def test_activities_page_through_small_pages(sandbox: Served, client: SynergistClient):
    for n in range(5):
        new_activity(client, subject=f"activity {n}")
    expected = sorted(sandbox.state.tables["activities"])

    rows = list(client.iter_activities(rows=2))

    assert [r["activityID"] for r in rows] == expected
    pages = [r["query"]["page"] for r in sandbox.requests() if r["query"].get("modelstructure") == "activitylist"]
    assert pages == [str(p) for p in range((len(expected) + 1) // 2)]


def test_timestamp_from_lists_only_newer_activities(sandbox: Served, client: SynergistClient):
    newest = max(r["activityTimeStampModified"] for r in sandbox.state.tables["activities"].values())
    assert newest < sandbox.state.now()  # the seed's stamps are in the past
    created = new_activity(client)
    rows = list(client.iter_activities(timestamp_from=newest + 1))
    assert [r["activityID"] for r in rows] == [created["activityID"]]


# Errors


def test_injected_5xx_is_unavailable(sandbox: Served, client: SynergistClient):
    sandbox.fault(status=503, count=1)
    with pytest.raises(SynergistUnavailable) as caught:
        client.activity(6712)
    assert (caught.value.status, caught.value.path) == (503, "/jsonapi/activities.json")
    assert "sandbox injected HTTP 503" in caught.value.detail


def test_a_dropped_connection_is_unavailable_and_shows_no_password(sandbox: Served, client: SynergistClient):
    sandbox.fault(drop_connection=True, count=1)
    with pytest.raises(SynergistUnavailable) as caught:
        new_activity(client)
    assert caught.value.status is None
    assert PASSWORD not in f"{caught.value} {caught.value!r}"


def test_a_slow_answer_times_out(sandbox: Served, client_for: Callable[..., SynergistClient]):
    client = client_for(sandbox, timeout=0.2)
    sandbox.fault(latency_ms=600, count=1)
    with pytest.raises(SynergistUnavailable) as caught:
        client.activity(6712)
    assert (caught.value.status, caught.value.detail) == (None, "timeout (ReadTimeout)")
    sandbox.settle(1)  # the server finishes the abandoned request after the latency


def test_a_missing_mandatory_field_is_rejected_with_the_code(client: SynergistClient):
    with pytest.raises(SynergistRejected) as caught:
        client.create_activity({"activityActivitytypeCode": "Notes"})
    assert type(caught.value) is SynergistRejected
    assert (caught.value.status, caught.value.detail) == (
        404,
        "404012: mandatory field(s) missing: activityClientCode",
    )


def test_missing_records_are_not_found(client: SynergistClient):
    with pytest.raises(SynergistNotFound) as read:
        client.activity(999999)
    with pytest.raises(SynergistNotFound) as deleted:
        client.delete_activity(999999)
    assert isinstance(read.value, NotFound) and isinstance(read.value, Rejected)
    # Seed 001 documents no text for a missing record: the refusal is followed by a listing on the
    # `Activityid=` key field, whose empty answer is what says "not found".
    assert "999999" in deleted.value.detail


def test_bad_credentials_and_a_disabled_account_fail_auth(sandbox: Served, client_for: Callable[..., SynergistClient]):
    wrong = "wrong-password-123"
    with pytest.raises(SynergistAuthFailed) as bad:
        client_for(sandbox, password=wrong).activity(6712)
    sandbox.state.disabled = True
    with pytest.raises(SynergistAuthFailed) as disabled:
        client_for(sandbox).activity(6712)

    assert isinstance(bad.value, AuthFailed) and not isinstance(bad.value, Unavailable)
    assert bad.value.detail == "404002: invalid credentials supplied"
    assert disabled.value.detail == "404003: account disabled"
    for exc in (bad.value, disabled.value):
        assert wrong not in f"{exc} {exc!r}"
        assert PASSWORD not in f"{exc} {exc!r}"


def test_an_error_text_that_echoes_the_url_is_masked(sandbox: Served, client: SynergistClient):
    echoed = f"invalid request /jsonapi/activities.json?user=sandbox&password={PASSWORD}&version=3.2"
    body = {"success": False, "errorcode": 404500, "errormessage": echoed, "data": []}
    sandbox.fault(status=404, count=1, body=body)
    with pytest.raises(SynergistRejected) as caught:
        client.activity(6712)
    assert (
        caught.value.detail == "404500: invalid request /jsonapi/activities.json?user=sandbox&password=***&version=3.2"
    )
    assert PASSWORD not in f"{caught.value} {caught.value!r}"


def test_an_unsupported_api_version_is_rejected_not_mistaken_for_a_conflict(
    sandbox: Served, client_for: Callable[..., SynergistClient]
):
    client = client_for(sandbox, version="4.0")
    with pytest.raises(SynergistRejected) as caught:
        client.update_activity(6712, {"activitySubject": "ours"}, version=45)
    assert type(caught.value) is SynergistRejected
    assert caught.value.detail == "404004: unsupported API version 4.0"
    assert len(sandbox.requests()) == 2  # the write, then one re-read to see whether the version moved
