"""The Celery application: JSON only, late acks, one queue for events and one per target."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from fieldrelay.queues import ACTION_QUEUES, ALL_QUEUES, EVENTS_QUEUE, PROCESS_EVENT_TASK
from fieldrelay.settings import Settings, load_settings

# Redis hands an unacknowledged message to another worker after this long. No task waits
# inside a worker (every delay goes through workers/delayed.py) and none may run longer
# than TASK_TIME_LIMIT, so a message unacked this long was stranded: a lost connection, a
# dead worker. Short enough that stranded work comes back within minutes, not an hour.
VISIBILITY_TIMEOUT = 300
TASK_TIME_LIMIT = 240


def create_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise RuntimeError(
            "FIELDRELAY_REDIS_URL is unset: start the worker with `fieldrelay worker`, "
            "which starts or reuses the embedded Redis"
        )
    app = Celery("fieldrelay", broker=settings.redis_url, include=["workers.tasks", "workers.polling_tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=EVENTS_QUEUE,
        task_queues=[Queue(name) for name in ALL_QUEUES],
        task_routes={PROCESS_EVENT_TASK: {"queue": EVENTS_QUEUE}},
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        task_time_limit=TASK_TIME_LIMIT,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
    )
    app.conf.fieldrelay_settings = settings
    from receiver.polling.pollers import polling_schedule  # lazy: the pollers import the connectors

    app.conf.beat_schedule = polling_schedule(settings)
    return app


def action_queue(target: str) -> str:
    return ACTION_QUEUES[target]


app = create_celery(load_settings())
import workers.operations  # noqa: E402, F401  (JSON logs, beat Sentry Crons, target rates: Celery signals)
