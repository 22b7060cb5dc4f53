"""Synergist actions: custom fields, link-store idempotency and updates."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tests.workers.actions.conftest import FakeApis
from workers.actions.context import ActionContext, MemoryLinkStore
from workers.actions.registry import ACTIONS
from workers.clients import SettingsClients

MakeContext = Callable[..., ActionContext]


def run(name: str, params: dict[str, Any], clients: SettingsClients, ctx: ActionContext) -> dict[str, Any]:
    spec = ACTIONS[name]
    return spec.run(clients, spec.params.model_validate(params), ctx)


def envelope(*rows: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "errorcode": 0, "errormessage": "", "data": list(rows)})


def calls(apis: FakeApis) -> list[tuple[str, str | None, Any]]:
    out = []
    for r in apis.requests:
        p = r.url.params
        data = json.loads(p["input"])["data"][0] if "input" in p else None
        out.append((r.url.path.removeprefix("/jsonapi/"), p.get("action"), data))
    return out


def synergist_fake(request: httpx.Request) -> httpx.Response:
    p = request.url.params
    area, action = request.url.path.removeprefix("/jsonapi/"), p.get("action")
    if action is None:  # details read
        return envelope({"activityID": 6743, "activityRecordVersionNumber": 4})
    rows: dict[tuple[str, str | None], dict[str, Any]] = {
        ("activities.json", "create"): {"activityID": 6743, "activityRecordVersionNumber": 1},
        ("activities.json", "update"): {"activityID": 6743, "activityRecordVersionNumber": 5},
        ("activities.json", "delete"): {"activityID": 6743},
        ("jobs.json", "create"): {"jobNumber": "8/00MJP20", "jobRecommendedVersionNumber": 7},
        ("jobs.json", "update"): {"jobNumber": "8/00MJP20"},
        ("calendar.json", "create"): {"calDiaryInternal": 56570},
        ("calendar.json", "update"): {"calDiaryInternal": 56570},
        ("calendar.json", "delete"): {"calDiaryInternal": 56570},
        ("tspending.json", "create"): {"tspEntryNo": 3636},
        ("tspending.json", "update"): {"tspEntryNo": 3636},
    }
    return envelope(rows[(area, action)])


def test_activity_create_twice_updates_the_first(
    apis: FakeApis, clients: SettingsClients, make_context: MakeContext
) -> None:
    apis.responder = synergist_fake
    store = MemoryLinkStore()
    params = {
        "activityActivitytypeCode": "Notes",
        "activityClientCode": "1/C4126",
        "Job": "1/0000123",
        "activitySubject": "Visit",
        "activityCustomField300": "x",
    }
    first = run("synergist.activity.create", params, clients, make_context(store=store))
    second = run("synergist.activity.create", params, clients, make_context(store=store))
    assert first["activityID"] == second["activityID"] == 6743
    # The link store keeps the version we last wrote: the update sends it without reading the record first.
    assert [(a, act) for a, act, _ in calls(apis)] == [
        ("activities.json", "create"),
        ("activities.json", "update"),
    ]
    update = calls(apis)[1][2]
    assert update == {
        "activityActivitytypeCode": "Notes",
        "activityClientCode": "1/C4126",
        "activitySubject": "Visit",
        "activityCustomField300": "x",
        "activityID": 6743,
        "activityRecordVersionNumber": 1,
    }
    assert store.links["synergist.activity.create:ev1:rule:0"] == "6743"
    assert json.loads(store.links["synergist.activity.written:6743"])["version"] == 5


def test_activity_update_and_delete(apis: FakeApis, clients: SettingsClients, make_context: MakeContext) -> None:
    apis.responder = synergist_fake
    ctx = make_context()
    run(
        "synergist.activity.update",
        {"activityID": 6743, "activityRecordVersionNumber": 4, "activityDetails": "d"},
        clients,
        ctx,
    )
    run("synergist.activity.delete", {"activityID": 6743}, clients, ctx)
    assert calls(apis) == [
        (
            "activities.json",
            "update",
            {"activityDetails": "d", "activityID": 6743, "activityRecordVersionNumber": 4},
        ),
        ("activities.json", "delete", {"activityID": 6743}),
    ]


def test_job_create_twice_updates_with_the_update_spelling(
    apis: FakeApis, clients: SettingsClients, make_context: MakeContext
) -> None:
    apis.responder = synergist_fake
    store = MemoryLinkStore()
    params = {
        "varJobTemplate": "8/00800001",
        "jobClientCode": "8/1244",
        "jobHandleruserid": "3",
        "jobDescription": "New",
        "jobStatus": "2",
        "jobCustomField218": "t",
    }
    assert run("synergist.job.create", params, clients, make_context(store=store))["jobNumber"] == "8/00MJP20"
    assert run("synergist.job.create", params, clients, make_context(store=store))["jobNumber"] == "8/00MJP20"
    update = {"jobNumber": "8/00MJP20", "jobComments": "c", "custom_fields": {"jobCustomField9": "n"}}
    run("synergist.job.update", update, clients, make_context())
    (_, _, created), (_, _, retried), (_, _, updated) = calls(apis)
    assert created == params
    assert retried == {
        "jobClientCode": "8/1244",
        "jobDescription": "New",
        "jobStatus": "2",
        "jobCustomField218": "t",
        "jobHandlerUserID": "3",
        "jobNumber": "8/00MJP20",
    }
    assert updated == {"jobComments": "c", "jobCustomField9": "n", "jobNumber": "8/00MJP20"}


def test_calendar_create_update_delete(apis: FakeApis, clients: SettingsClients, make_context: MakeContext) -> None:
    apis.responder = synergist_fake
    store = MemoryLinkStore()
    booking = {
        "calTimeSummaryInternal": "1005543",
        "calIsoDateTimeStart": "2017-07-10T14:30:00",
        "calIsoDateTimeEnd": "2017-07-10T15:30:00",
        "calDurationDecimalHours": "1",
        "calResourceId": "5",
    }
    run("synergist.calendar.create", booking, clients, make_context(store=store))
    run("synergist.calendar.create", booking, clients, make_context(store=store))
    run(
        "synergist.calendar.update",
        {
            "calDiaryInternal": 56570,
            "calIsoDateTimeStart": "2017-07-10T14:30:00",
            "calIsoDateTimeEnd": "2017-07-10T15:45:00",
            "calAllDay": "false",
            "calResourceId": "5",
        },
        clients,
        make_context(),
    )
    run("synergist.calendar.delete", {"diary_diaryinternal": 56570}, clients, make_context())
    actions = [(act, data) for _, act, data in calls(apis)]
    assert actions[0] == ("create", booking)
    assert actions[1] == (
        "update",
        {
            "calIsoDateTimeStart": "2017-07-10T14:30:00",
            "calIsoDateTimeEnd": "2017-07-10T15:30:00",
            "calResourceId": "5",
            "calAllDay": "false",
            "calDiaryInternal": "56570",
        },
    )
    assert [a for a, _ in actions[2:]] == ["update", "delete"]
    assert actions[3][1] == {"diary_diaryinternal": 56570}


def test_timesheet_create_twice(apis: FakeApis, clients: SettingsClients, make_context: MakeContext) -> None:
    apis.responder = synergist_fake
    store = MemoryLinkStore()
    params = {
        "tspJobAndPhase": "1/00000772.001",
        "tspTimeDate": "2018-07-18",
        "tspResourceCode": "1/USER",
        "tspWorkDone": "fixed",
    }
    run("synergist.timesheet.create", params, clients, make_context(store=store))
    run("synergist.timesheet.create", params, clients, make_context(store=store))
    assert [(act, d.get("tspEntryNo")) for _, act, d in calls(apis)] == [("create", None), ("update", 3636)]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("synergist.activity.create", {"activityActivitytypeCode": "Notes"}),
        (
            "synergist.activity.create",
            {"activityActivitytypeCode": "N", "activityClientCode": "1/C", "foo": 1},
        ),
        (
            "synergist.activity.create",
            {"activityActivitytypeCode": "N", "activityClientCode": "1/C", "jobCustomField1": "wrong prefix"},
        ),
        ("synergist.job.update", {"jobNumber": "1/1", "jobStatus": "9"}),
        ("synergist.job.update", {"jobNumber": "1/1", "custom_fields": {"jobFoo": 1}}),
        ("synergist.job.create", {"jobClientCode": "8/1244"}),
        ("synergist.calendar.update", {"calDiaryInternal": 1}),
        ("synergist.timesheet.create", {"tspJobAndPhase": "1/1.001", "tspTimeDate": "2018-07-18"}),
    ],
)
def test_invalid_params_are_rejected(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ACTIONS[name].params.model_validate(params)
