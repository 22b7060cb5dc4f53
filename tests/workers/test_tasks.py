"""The Celery tasks' own guard; what they run is tested in test_pipeline, test_retry and test_runs."""

from __future__ import annotations

import importlib

import pytest

EVENT = {
    "source": "servicetrade",
    "via": "webhook",
    "action": "updated",
    "occurred_at": 1700000000,
    "entity": {"type": "job", "id": 35769, "uri": None},
    "message_id": "m-1",
    "changes": None,
}


def test_process_event_without_a_task_id_or_claim_refuses_to_claim(
    monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    # Celery gives every task it runs an id; only a direct call, outside a worker, has none, and the
    # event's claim (its task id, stored in Redis) cannot be made without one.
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)  # the Celery app reads it when first imported
    tasks = importlib.import_module("workers.tasks")
    with pytest.raises(RuntimeError, match="needs a task id"):
        tasks.process_event(EVENT)
