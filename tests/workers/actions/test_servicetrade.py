"""ServiceTrade actions: comment once, job update, appointment create-or-update."""

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


def servicetrade_fake(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/api/auth":
        return httpx.Response(200, json={"data": {"authToken": "tok"}})
    assert request.headers["Cookie"] == "PHPSESSID=tok"
    body = json.loads(request.content) if request.content else {}
    return httpx.Response(200, json={"data": {"id": 77, **body}})


def writes(apis: FakeApis) -> list[tuple[str, str, Any]]:
    return [(r.method, r.url.path, json.loads(r.content)) for r in apis.requests if r.url.path != "/api/auth"]


def test_comment_is_posted_once_per_call(apis: FakeApis, clients: SettingsClients, make_context: MakeContext) -> None:
    apis.responder = servicetrade_fake
    store = MemoryLinkStore()
    params = {"jobId": 34872, "content": "Scheduled in Synchroteam", "visibility": ["tech"]}
    ctx = make_context(store=store)
    first = run("servicetrade.job.comment", params, clients, ctx)
    again = run("servicetrade.job.comment", params, clients, make_context(store=store))
    assert first["id"] == again["id"] == 77 and again["repeated"] is True
    # The marker lets a retry after a crash recognise the comment (tests/contracts/test_read_backs.py).
    content = f"Scheduled in Synchroteam\n[fieldrelay:{ctx.call_key()[:12]}]"
    assert writes(apis) == [("POST", "/api/job/34872/comment", {"content": content, "visibility": ["tech"]})]


def test_a_comment_without_the_marker_is_posted_as_written(
    apis: FakeApis, clients: SettingsClients, make_context: MakeContext
) -> None:
    apis.responder = servicetrade_fake
    run("servicetrade.job.comment", {"jobId": 5, "content": "Done", "marker": False}, clients, make_context())
    assert writes(apis) == [("POST", "/api/job/5/comment", {"content": "Done"})]


def test_a_later_event_on_the_same_job_comments_again(
    apis: FakeApis, clients: SettingsClients, make_context: MakeContext
) -> None:
    apis.responder = servicetrade_fake
    store = MemoryLinkStore()
    key = "servicetrade:job:34872:notify:0"
    params = {"jobId": 34872, "content": "Status changed"}
    for event_id in ("ev1", "ev2"):
        run("servicetrade.job.comment", params, clients, ActionContext(event_id, "notify", 0, key, store))
    assert len(writes(apis)) == 2


def test_job_update(apis: FakeApis, clients: SettingsClients, make_context: MakeContext) -> None:
    apis.responder = servicetrade_fake
    result = run(
        "servicetrade.job.update",
        {"jobId": 5, "customerPo": "PO-1", "status": "completed"},
        clients,
        make_context(),
    )
    assert result["customerPo"] == "PO-1"
    assert writes(apis) == [("PUT", "/api/job/5", {"customerPo": "PO-1", "status": "completed"})]


def test_appointment_create_then_update_on_retry(
    apis: FakeApis, clients: SettingsClients, make_context: MakeContext
) -> None:
    apis.responder = servicetrade_fake
    store = MemoryLinkStore()
    params = {"jobId": 30, "windowStart": 1322143200, "windowEnd": 1322176260, "techIds": [4]}
    run("servicetrade.appointment.create", params, clients, make_context(store=store))
    run("servicetrade.appointment.create", params, clients, make_context(store=store))
    assert writes(apis) == [
        ("POST", "/api/appointment", params),
        ("PUT", "/api/appointment/77", {"windowStart": 1322143200, "windowEnd": 1322176260, "techIds": [4]}),
    ]


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("servicetrade.job.comment", {"jobId": 1}),
        ("servicetrade.job.comment", {"jobId": 1, "content": "x", "visibility": ["everyone"]}),
        ("servicetrade.job.update", {"jobId": 1, "customerPo": "x" * 41}),
        ("servicetrade.job.update", {"jobId": 1, "number": 5}),
        ("servicetrade.appointment.create", {"windowStart": 1}),
    ],
)
def test_invalid_params_are_rejected(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ACTIONS[name].params.model_validate(params)
