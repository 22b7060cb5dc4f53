"""The reference pipeline fieldrelay's workers are measured against: a bare Celery app on the same Redis.

acks_late, prefetch 1, JSON, one task that POSTs its body to the sink with a reused httpx client.
Started by bench/pipeline_throughput.py as `celery -A bench.reference_celery worker -c N -Q reference`.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from celery import Celery

app = Celery("reference", broker=os.environ.get("REFERENCE_BROKER", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_default_queue="reference",
    worker_hijack_root_logger=False,
)
_client: httpx.Client | None = None


@app.task(name="reference.post")
def post(url: str, body: dict[str, Any]) -> None:
    global _client
    if _client is None:
        _client = httpx.Client(timeout=10)
    _client.post(url, json=body).raise_for_status()
