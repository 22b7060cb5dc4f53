"""Synchroteam actions: parameter models and runs against a MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from tests.workers.actions.conftest import FakeApis
from workers.actions.context import ActionContext, MemoryLinkStore
from workers.actions.registry import ACTIONS
from workers.clients import SettingsClients


def run(name: str, params: dict[str, object], clients: SettingsClients, ctx: ActionContext) -> dict[str, object]:
    spec = ACTIONS[name]
    return spec.run(clients, spec.params.model_validate(params), ctx)


def echo(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content) if request.content else {}
    return httpx.Response(200, json={"id": body.get("id", 42), **body})


def test_job_upsert_sends_only_given_fields(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = lambda r: httpx.Response(200, json={"id": "265_1", "num": 3, "myId": "st-34872"})
    params: dict[str, object] = {
        "myId": "st-34872",
        "description": "Fix",
        "priority": "high",
        "customer": {"myId": "st-39"},
    }
    result = run("synchroteam.job.upsert", params, clients, make_context())
    assert result["id"] == "265_1"
    assert apis.requests[0].url.path == "/api/v3/job/send"
    assert apis.bodies() == [params]


def test_customer_upsert(apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]) -> None:
    apis.responder = echo
    result = run("synchroteam.customer.upsert", {"myId": "st-39", "name": "Big Bang"}, clients, make_context())
    assert result == {"id": 42, "myId": "st-39", "name": "Big Bang"}
    assert apis.requests[0].url.path == "/api/v3/customer/send"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("synchroteam.job.upsert", {"description": "no key"}),
        ("synchroteam.job.upsert", {"myId": "1", "priority": "urgent"}),
        ("synchroteam.job.upsert", {"myId": "1", "jobDescription": "wrong api's name"}),
        ("synchroteam.customer.upsert", {"name": "no key"}),
        ("synchroteam.site.upsert", {"myId": "s", "customer": {"myid": "typo"}}),
        ("synchroteam.job.schedule", {"myId": "1", "scheduledStart": "2024-01-01 10:00:00"}),
        ("synchroteam.activity.upsert", {"dateStart": "2024-01-01 10:00", "dateEnd": "2024-01-01 11:00"}),
    ],
)
def test_invalid_params_are_rejected(name: str, params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ACTIONS[name].params.model_validate(params)


def test_site_and_equipment_upsert(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = echo
    run(
        "synchroteam.site.upsert",
        {"myId": "l-1", "name": "Foo", "customer": {"myId": "c"}},
        clients,
        make_context(),
    )
    run("synchroteam.equipment.upsert", {"myId": "a-1", "site": {"myId": "l-1"}}, clients, make_context())
    assert [r.url.path for r in apis.requests] == ["/api/v3/site/send", "/api/v3/equipment/send"]


def test_activity_upsert_reuses_the_linked_id(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = lambda r: httpx.Response(200, json={"id": 5697, **json.loads(r.content)})
    store = MemoryLinkStore()
    params: dict[str, object] = {
        "activityType": {"id": 596},
        "dateStart": "2018-01-01 14:22",
        "dateEnd": "2018-01-01 14:50",
        "user": {"login": "tech"},
    }
    run("synchroteam.activity.upsert", params, clients, make_context(store=store))
    run("synchroteam.activity.upsert", params, clients, make_context(store=store))
    first, second = apis.bodies()
    assert "id" not in first and second["id"] == 5697
    assert store.links == {"synchroteam.activity.upsert:ev1:rule:0": "5697"}


def test_lifecycle_actions(
    apis: FakeApis, clients: SettingsClients, make_context: Callable[..., ActionContext]
) -> None:
    apis.responder = lambda r: httpx.Response(200, json=[{"id": "265_1", "status": "x"}])
    ctx = make_context()
    window = {"scheduledStart": "2018-12-12 15:00:00", "scheduledEnd": "2018-12-12 17:00:00"}
    result = run("synchroteam.job.schedule", {"myId": "j", **window, "technician": {"id": 1551}}, clients, ctx)
    assert result == {"id": "265_1", "status": "x"}
    actual = {"actualStart": "2019-11-06 13:13", "actualEnd": "2019-11-06 14:28"}
    run("synchroteam.job.complete", {"num": 3, **actual}, clients, ctx)
    for op in ("unschedule", "cancel", "validate", "confirm"):
        run(f"synchroteam.job.{op}", {"myId": "j"}, clients, ctx)
    paths = [r.url.path.rsplit("/", 1)[1] for r in apis.requests]
    assert paths == ["schedule", "complete", "unschedule", "cancel", "validate", "confirm"]
    assert apis.bodies()[0]["technician"] == {"id": 1551}
    assert apis.bodies()[2] == {"myId": "j"}
