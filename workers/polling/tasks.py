"""Celery task for the pollers: a thin wrapper that runs one poller and enqueues its events like webhooks."""

from __future__ import annotations

from dataclasses import asdict
from functools import cache
from typing import Any

from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK
from workers.celery_app import app
from workers.lifecycle import fail_task
from workers.polling.pollers import POLL_TASK, PollContext
from workers.process import failure_state, redis_client, settings
from workers.retry import run_once


def enqueue_event(event: dict[str, Any]) -> None:
    """The webhook path's second half: one `process_event` task per event, claimed by event id."""
    app.send_task(PROCESS_EVENT_TASK, args=(event,), queue=EVENTS_QUEUE)


@cache
def context() -> PollContext:
    client = redis_client()
    return PollContext(settings(), client, enqueue=enqueue_event, reconcile=True)


@app.task(name=POLL_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def poll(poller: str) -> dict[str, Any]:
    """Run one poller (`servicetrade.job`...); the Redis lease makes extra runs return `locked`.

    A run that fails for good (a refusal, a bug) is dead-lettered and alerted once an hour per failure;
    its report (`fieldrelay:poll:run:<poller>`) says `failed` too. Network trouble is not a failure
    for good: the next tick reads the same window again.
    """
    report: dict[str, Any] = {}
    run_once(
        lambda: report.update(asdict(context().poller(poller).run())),
        lambda exc, _: fail_task(
            failure_state(),
            "poll",
            POLL_TASK,
            [poller],
            EVENTS_QUEUE,
            exc,
            what=f"poll {poller}",
            alert_once_per=3600,
        ),
    )
    return report
