"""Synergist sandbox: query-string credentials, error codes, optimistic concurrency and the write areas."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.sandbox.conftest import FakeClock

AUTH = {"user": "sandbox", "password": "sandbox-password", "version": "3.2", "company": "1"}


def call(
    client: TestClient,
    area: str,
    action: str | None = None,
    data: list[dict[str, Any]] | None = None,
    **params: Any,
) -> Any:
    query = {**AUTH, **params}
    if action:
        query["action"] = action
    if data is not None:
        query["input"] = json.dumps({"data": data})
    return client.get(f"/jsonapi/{area}.json", params=query)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, 404001),
        ({"user": "sandbox"}, 404001),
        ({"user": "sandbox", "password": "nope"}, 404002),
        ({"user": "other", "password": "sandbox-password"}, 404002),
    ],
)
def test_credential_errors_are_http_404_with_codes(syn_client: TestClient, params: dict[str, str], code: int) -> None:
    response = syn_client.get("/jsonapi/activities.json", params={"version": "3.2", **params})
    assert response.status_code == 404
    body = response.json()
    assert (body["success"], body["errorcode"]) == (False, code) and body["errormessage"]


def test_unknown_area_or_action_is_404004(syn_client: TestClient) -> None:
    assert call(syn_client, "nowhere").json()["errorcode"] == 404004
    assert call(syn_client, "activities", "companylist", data=[{}]).json()["errorcode"] == 404004
    assert call(syn_client, "system", "version", version="9").json()["errorcode"] == 404004


def test_sha512_login_and_casing_and_post(syn_client: TestClient) -> None:
    hashed = call(syn_client, "users", "GETSHA512").json()["data"][0]["userPasswordSha512"]
    assert hashed == hashlib.sha512(b"sandbox-password").hexdigest()
    query = {"user": "sandbox", "sha512password": hashed, "version": "3.2", "action": "version"}
    assert syn_client.get("/jsonAPI/system.json", params=query).json()["data"][0]["variable_apiversion"] == "3.2"
    assert syn_client.post("/jsonapi/system.json", data=query).json()["success"] is True


def test_activity_create_update_with_version_and_conflict(syn_client: TestClient, clock: FakeClock) -> None:
    created = call(
        syn_client,
        "activities",
        "create",
        [
            {
                "activityActivitytypeCode": "Notes",
                "activityClientCode": "1/C4126",
                "activitySubject": "Job 35769 completed",
            }
        ],
    ).json()
    assert created["responsemessage"] == "data processed successfully."
    [record] = created["data"]
    assert set(record) == {
        "activityuuid",
        "activityID",
        "activityOwnerID",
        "activityOwnerName",
        "activityTimeStampModified",
        "activityRecordVersionNumber",
    }
    clock.advance(5)
    updated = call(
        syn_client,
        "activities",
        "update",
        [{"activityID": record["activityID"], "activityDetails": "ok", "activityRecordVersionNumber": 1}],
    ).json()["data"][0]
    assert updated["activityRecordVersionNumber"] == 2
    assert updated["activityTimeStampModified"] == int(clock.now)
    stale = call(
        syn_client,
        "activities",
        "update",
        [{"activityID": record["activityID"], "activityDetails": "x", "activityRecordVersionNumber": 1}],
    )
    assert stale.status_code == 404 and stale.json()["success"] is False
    details = call(syn_client, "activities", Activityid=record["activityID"]).json()["data"][0]
    assert details["activityDetails"] == "ok"
    missing = call(syn_client, "activities", "update", [{"activityID": record["activityID"]}])
    assert missing.status_code == 404


def test_activity_create_needs_the_mandatory_fields(syn_client: TestClient) -> None:
    assert call(syn_client, "activities", "create", [{"activityActivitytypeCode": "Notes"}]).status_code == 404
    assert (
        call(
            syn_client,
            "activities",
            "create",
            [{"activityActivitytypeCode": "Notes", "activityClientCode": "1/NOPE"}],
        ).status_code
        == 404
    )
    assert call(syn_client, "activities", "create").json()["success"] is False


def test_activity_delete_and_timestamp_filter(syn_client: TestClient, clock: FakeClock) -> None:
    fresh = call(
        syn_client,
        "activities",
        "create",
        [{"activityActivitytypeCode": "COMM", "activityClientCode": "1/GS"}],
    ).json()["data"][0]
    since = call(syn_client, "activities", Timestampfrom=int(clock.now)).json()
    assert [a["activityID"] for a in since["data"]] == [fresh["activityID"]]
    gone = call(syn_client, "activities", "delete", [{"activityID": fresh["activityID"]}]).json()["data"]
    assert gone == [{"activityID": fresh["activityID"], "activityuuid": fresh["activityuuid"]}]
    assert call(syn_client, "activities", Timestampfrom=int(clock.now)).json()["totalrows"] == 0
    again = call(
        syn_client,
        "activities",
        "create",
        [{"activityActivitytypeCode": "COMM", "activityClientCode": "1/GS"}],
    ).json()["data"][0]
    assert again["activityID"] > fresh["activityID"]  # a deleted record's id is never handed out again


def test_list_paging_with_rows_and_page(syn_client: TestClient) -> None:
    for n in range(3):
        call(
            syn_client,
            "activities",
            "create",
            [{"activityActivitytypeCode": "COMM", "activityClientCode": "1/GS", "activitySubject": f"n{n}"}],
        )
    pages = [call(syn_client, "activities", rows=2, page=p).json() for p in (0, 1, 2)]
    assert [(p["totalrows"], p["totalpages"], p["pagenumber"], len(p["data"])) for p in pages] == [
        (5, 3, 0, 2),
        (5, 3, 1, 2),
        (5, 3, 2, 1),
    ]


def test_jobs_create_update_and_details(syn_client: TestClient) -> None:
    created = call(
        syn_client,
        "jobs",
        "create",
        [
            {
                "varJobTemplate": "1/00100001",
                "jobClientCode": "1/C4126",
                "jobDescription": "Job 35769",
                "jobDateIn": "2026/07/01",
                "jobStatus": "2",
            }
        ],
    ).json()["data"][0]
    assert set(created) == {"jobNumber", "jobUuid", "jobTimeStampModified", "jobRecommendedVersionNumber"}
    call(syn_client, "jobs", "update", [{"jobNumber": created["jobNumber"], "jobComments": "ok"}])
    details = call(syn_client, "jobs", job=created["jobNumber"], modelstructure="jobdetails").json()["data"][0]
    assert (details["jobComments"], details["jobDateIn"], details["jobStatusDescription"]) == (
        "ok",
        "2026-07-01",
        "Live",
    )
    assert details["jobRecommendedVersionNumber"] == 2
    assert call(syn_client, "jobs", "create", [{"jobClientCode": "1/C4126"}]).status_code == 404
    duplicate = [{"varJobTemplate": "1/00100001", "jobClientCode": "1/GS", "jobNumber": created["jobNumber"]}]
    assert call(syn_client, "jobs", "create", duplicate).status_code == 404


def test_calendar_and_pending_timesheets(syn_client: TestClient) -> None:
    booking = call(
        syn_client,
        "calendar",
        "create",
        [
            {
                "calTimeSummaryInternal": "1005543",
                "calIsoDateTimeStart": "2026-07-10T14:30:00",
                "calIsoDateTimeEnd": "2026-07-10T15:45:00",
                "calDurationDecimalHours": "1.25",
                "calResourceId": "54",
            }
        ],
    ).json()["data"][0]
    assert booking["calTimeStampModified"] == 0 and booking["calUuid"]
    moved = call(
        syn_client,
        "calendar",
        "update",
        [
            {
                "calDiaryInternal": str(booking["calDiaryInternal"]),
                "calIsoDateTimeStart": "2026-07-11T09:00:00",
                "calIsoDateTimeEnd": "2026-07-11T10:00:00",
                "calAllDay": "false",
                "calResourceId": "54",
            }
        ],
    ).json()
    assert moved["success"] is True
    shown = call(syn_client, "calendar", "calendardisplay", datefrom="2026-07-11", dateto="2026-07-11").json()
    assert [b["calDiaryInternal"] for b in shown["data"]] == [booking["calDiaryInternal"]]
    deleted = call(syn_client, "calendar", "delete", [{"diary_diaryinternal": booking["calDiaryInternal"]}])
    assert deleted.json()["success"] is True
    entry = call(
        syn_client,
        "tspending",
        "create",
        [{"tspJobAndPhase": "1/00000510.001", "tspTimeDate": "2026-07-18", "tspResourceCode": "1/USER"}],
    ).json()["data"][0]
    assert entry["tspApprovalStatusName"] == "Unsubmitted" and entry["tspEntryNo"]
    bad_job = [{"tspJobAndPhase": "1/99999999.001", "tspTimeDate": "2026-07-18", "tspResourceCode": "1/USER"}]
    assert call(syn_client, "tspending", "create", bad_job).status_code == 404


def test_lookups(syn_client: TestClient) -> None:
    assert call(syn_client, "activities", "activitytypes").json()["totalrows"] == 4
    assert call(syn_client, "clients").json()["data"][0]["clientCode"]
    assert call(syn_client, "jobs", "clients").json()["success"] is True


def test_wrong_company_is_refused(syn_client: TestClient) -> None:
    response = call(syn_client, "activities", company="8")
    assert response.status_code == 404 and response.json()["success"] is False
    assert call(syn_client, "activities", company="[1,5]").json()["success"] is True


def test_disabled_account_is_404003(syn_client: TestClient) -> None:
    syn_client.app.state.sandbox.disabled = True  # type: ignore[attr-defined]
    assert call(syn_client, "system", "version").json()["errorcode"] == 404003
