"""The Celery application: JSON only, late acks, one queue for events and one per target."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from celery import Celery
from celery.loaders.app import AppLoader
from kombu import Queue

from fieldrelay.queues import ALL_QUEUES, EVENTS_QUEUE, PROCESS_EVENT_TASK, PROCESS_EVENTS_TASK
from fieldrelay.settings import Settings, load_settings
from workers.polling.pollers import polling_schedule

# Redis hands an unacknowledged message to another worker after this long. No task waits
# inside a worker (every delay goes through workers/delayed.py) and none may run longer
# than TASK_TIME_LIMIT, so a message unacked this long was stranded: a lost connection, a
# dead worker. Short enough that stranded work comes back within minutes, not an hour.
VISIBILITY_TIMEOUT = 300
TASK_TIME_LIMIT = 240
# Raised inside a task that runs this long (SoftTimeLimitExceeded): the retry policy fails it for good,
# so it is dead-lettered and alerted instead of being killed at the hard limit without a word.
TASK_SOFT_TIME_LIMIT = 210
# The task modules and the module of every signal handler (see workers/signals.py).
TASK_MODULES = ("workers.tasks", "workers.polling.tasks", "workers.signals")


class Loader(AppLoader):
    """Celery's loader, except that it imports task modules from the installed packages only.

    Celery's own puts the working directory first on `sys.path` while it imports them (celery
    `utils.imports.import_from_cwd`): a worker started in an ops repository with a `rules/` folder
    would then import that folder instead of fieldrelay's `rules` package, and crash-loop.
    """

    def import_from_cwd(
        self, module: str, imp: Callable[..., ModuleType] | None = None, package: str | None = None
    ) -> ModuleType:
        return (imp or self.import_module)(module, package=package)


def create_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise RuntimeError(
            "FIELDRELAY_REDIS_URL is unset: start the worker with `fieldrelay worker`, "
            "which starts or reuses the embedded Redis"
        )
    app = Celery("fieldrelay", broker=settings.redis_url, include=list(TASK_MODULES), loader=Loader)
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
        task_routes={PROCESS_EVENT_TASK: {"queue": EVENTS_QUEUE}, PROCESS_EVENTS_TASK: {"queue": EVENTS_QUEUE}},
        # kombu's Redis transport, plus a lease per consumer: a dead worker's messages come back in
        # seconds, and a live worker's never (workers/broker.py, fieldrelay/consumers.py).
        broker_transport="workers.broker:Transport",
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        task_time_limit=TASK_TIME_LIMIT,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
        broker_connection_retry_on_startup=True,
        # Tasks running when the connection to Redis breaks are ended: their acks could not reach Redis,
        # and their messages go back to the queue (workers/broker.py), so they must not run on meanwhile.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
        beat_schedule=polling_schedule(settings),
    )
    conf: Any = app.conf
    conf.fieldrelay_settings = settings
    return app


app = create_celery(load_settings())
