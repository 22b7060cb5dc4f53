"""Type and id decide which record a worker reads: the receiver turns away what cannot form a path,
keeps the uri as sent, and clamps timestamps from the future."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from fieldrelay.queues import EVENTS_QUEUE
from fieldrelay.settings import Settings
from receiver.app import create_app
from tests.queued import queued_events
from workers.actions.registry import action_params

ROOT = Path(__file__).parents[2]
VERBATIM = json.loads((ROOT / "examples" / "webhook-sample-verbatim.json").read_text())
ONE: dict[str, Any] = {
    "messageId": "m-1",
    "timestamp": "1401833057",
    "data": [
        {
            "action": "updated",
            "timestamp": 1401833052,
            "entity": {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/job/35769"},
            "changeset": [],
        }
    ],
}


@pytest.fixture
def client(redis_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(redis_url=redis_url, webhook_tokens="tok-0123456789abcdef", data_dir=tmp_path, clock_skew=300)
    with TestClient(create_app(settings, action_params())) as c:
        yield c


def with_entity(**entity: Any) -> dict[str, Any]:
    message = copy.deepcopy(ONE)
    message["data"][0]["entity"].update(entity)
    return message


@pytest.mark.parametrize(
    ("entity", "detail"),
    [
        ({"id": "39?x=1"}, "data.0.entity.id: Input should be a valid integer"),
        ({"id": "%2e%2e"}, "data.0.entity.id: Input should be a valid integer"),
        ({"id": "39"}, "data.0.entity.id: Input should be a valid integer"),
        ({"id": 39.5}, "data.0.entity.id: Input should be a valid integer"),
        ({"type": "%2e%2e"}, "data.0.entity.type: '%2e%2e' is not an entity type name (letters and underscores)"),
        ({"type": "job/../auth"}, "data.0.entity.type: 'job/../auth' is not an entity type name"),
        ({"type": "job?x=1"}, "data.0.entity.type: 'job?x=1' is not an entity type name"),
    ],
)
def test_an_id_or_type_that_cannot_form_a_path_is_400_and_nothing_is_enqueued(
    client: TestClient, redis_client: redis.Redis, entity: dict[str, Any], detail: str
):
    response = client.post("/webhooks/servicetrade/tok-0123456789abcdef", json=with_entity(**entity))
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert redis_client.llen(EVENTS_QUEUE) == 0


def test_the_docs_sample_is_accepted_as_written_and_keeps_its_uri(client: TestClient, redis_client: redis.Redis):
    assert client.post("/webhooks/servicetrade/tok-0123456789abcdef", json=VERBATIM).json() == {"accepted": 4}
    job = next(e for e in queued_events(redis_client) if e["entity"]["id"] == 35769)
    # Type and id name the record; the uri (an invoice's, in the doc) stays only for display.
    assert job["entity"] == {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/invoice/35789"}


def test_a_timestamp_far_in_the_future_is_clamped_to_the_receive_time(client: TestClient, redis_client: redis.Redis):
    message = copy.deepcopy(ONE)
    message["data"][0]["timestamp"] = 4102444800  # 2100-01-01
    message["data"].append({**copy.deepcopy(ONE["data"][0]), "timestamp": int(time.time()) + 60})
    before = int(time.time())
    assert client.post("/webhooks/servicetrade/tok-0123456789abcdef", json=message).status_code == 200
    future, near = queued_events(redis_client)
    assert future["clamped_from"] == 4102444800 and before <= future["occurred_at"] <= int(time.time())
    assert near["clamped_from"] is None  # within the allowed skew: kept as sent
