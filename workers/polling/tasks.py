"""Celery task for the pollers: a thin wrapper that runs one poller and enqueues its events like webhooks."""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import Any

from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK
from workers.celery_app import app
from workers.polling.pollers import POLL_TASK, PollContext
from workers.process import redis_client, settings


def enqueue_event(event: dict[str, Any]) -> None:
    """The webhook path's second half: one `process_event` task per event, claimed by event id."""
    app.send_task(PROCESS_EVENT_TASK, args=(event,), queue=EVENTS_QUEUE)


@cache
def context() -> PollContext:
    client = redis_client()
    return PollContext(settings(), client, enqueue=enqueue_event, reconcile=True)


@app.task(name=POLL_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def poll(poller: str) -> dict[str, Any]:
    """Run one poller (`servicetrade.job`...); the Redis lease makes extra runs return `locked`."""
    return asdict(context().poller(poller).run())
