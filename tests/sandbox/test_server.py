"""The sandboxes over real sockets: uvicorn, free ports, real webhook POSTs and cut connections."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import servicetrade, synchroteam, synergist
from sandbox.runner import SandboxRunner
from sandbox.server import PORTS
from tests.sandbox.conftest import basic


def catcher_app(received: list[dict[str, Any]]) -> Starlette:
    async def catch(request: Request) -> Response:
        message = await request.json()
        if message["data"]:  # the confirmation probe carries no entities
            received.append(message)
        return Response(status_code=204)

    return Starlette(routes=[Route("/hook", catch, methods=["POST"])])


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[SandboxRunner, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    apps = {
        "servicetrade": servicetrade.create_app(),
        "synchroteam": synchroteam.create_app(),
        "synergist": synergist.create_app(),
        "catcher": catcher_app(received),
    }
    with SandboxRunner(apps) as runner:
        yield runner, received


def test_documented_ports_are_fixed() -> None:
    assert PORTS == {"servicetrade": 8781, "synchroteam": 8782, "synergist": 8783}


def test_all_three_answer_over_http(running: tuple[SandboxRunner, list[dict[str, Any]]]) -> None:
    runner, _ = running
    urls = runner.urls
    assert httpx.get(urls["servicetrade"] + "/").json()["data"]["version"]
    listed = httpx.get(urls["synchroteam"] + "/api/v3/job/list", headers=basic())
    assert listed.status_code == 200 and listed.headers["X-RateLimit-Limit"] == "120"
    version = httpx.get(
        urls["synergist"] + "/jsonapi/system.json",
        params={"user": "sandbox", "password": "sandbox-password", "action": "version"},
    )
    assert version.json()["data"][0]["variable_apiversion"] == "3.2"


def test_uris_follow_the_random_port_and_webhooks_arrive(
    running: tuple[SandboxRunner, list[dict[str, Any]]],
) -> None:
    runner, received = running
    with httpx.Client(base_url=runner.urls["servicetrade"]) as client:
        client.post("/auth", json={"username": "sandbox", "password": "sandbox-password"})
        assert "PHPSESSID" in client.cookies
        job = client.get("/job/35769").json()["data"]
        assert job["uri"] == f"{runner.urls['servicetrade']}/job/35769"
        assert httpx.get(job["customer"]["uri"], cookies=client.cookies).json()["data"]["id"] == 39
        hook = f"http://127.0.0.1:{runner.ports['catcher']}/hook"
        client.post("/webhook", json={"hookUrl": hook, "includeChangesets": True})
        started = time.monotonic()
        client.put("/job/35770", json={"status": "completed"})
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
    [message] = received
    assert message["data"][0]["entity"]["uri"] == f"{runner.urls['servicetrade']}/job/35770"
    assert message["data"][0]["changeset"][0]["newValue"] == "completed"


def test_dropped_connection_is_a_transport_error(running: tuple[SandboxRunner, list[dict[str, Any]]]) -> None:
    runner, _ = running
    base = f"http://127.0.0.1:{runner.ports['synchroteam']}"
    httpx.post(base + "/_sandbox/faults", json={"drop_connection": True, "count": 1})
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/api/v3/job/list", headers=basic())
    assert httpx.get(base + "/api/v3/job/list", headers=basic()).status_code == 200
