"""Every Celery signal handler of the worker and beat, in one module that Celery loads through `include`.

Celery imports `include` modules before it sends `celeryd_init`, `setup_logging` and `beat_init`
(`WorkController.__init__` and `Beat.run` call `loader.init_worker()` first), so nothing else has
to import this module to connect them.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from fieldrelay.logs import capture_prints, setup_logging
from fieldrelay.observability import init_sentry
from fieldrelay.queues import RUN_ACTION_TASK
from fieldrelay.tally import TALLY
from workers.clients import SettingsClients
from workers.delayed import DelayedMover, DelayedTasks
from workers.polling.tasks import context as poll_context
from workers.process import redis_client, runtime, settings

log = logging.getLogger("fieldrelay.signals")


@signals.setup_logging.connect
def _setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """JSON logs in the worker and beat, at `--loglevel`; connecting this also stops Celery configuring its own."""
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else (loglevel or "INFO")
    setup_logging(settings(), level=str(level).upper())
    capture_prints()  # what Celery prints itself ("worker: Warm shutdown") becomes a record too


@signals.celeryd_init.connect
@signals.worker_process_init.connect
def _worker_sentry(**_: Any) -> None:
    init_sentry(settings(), "worker")


@signals.beat_init.connect
def _beat_sentry(**_: Any) -> None:
    """Sentry in beat too: its Celery integration adds Crons monitor headers to every scheduled task."""
    init_sentry(settings(), "beat")


@signals.celeryd_after_setup.connect
def _log_worker_start(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """What Celery's banner says (it is off: `--quiet`), as one log line like every other."""
    queues = getattr(getattr(getattr(instance, "app", None), "amqp", None), "queues", None)
    consuming = sorted(queues.consume_from) if queues is not None and queues.consume_from else []
    log.info(
        "worker starting",
        extra={"node": str(sender), "queues": consuming, "concurrency": getattr(instance, "concurrency", None)},
    )


@signals.beat_init.connect
def _log_beat_start(sender: Any = None, **_: Any) -> None:
    scheduler = getattr(sender, "scheduler", None)
    entries = sorted(getattr(scheduler, "schedule", None) or {})
    log.info("beat starting", extra={"entries": entries, "schedule_file": getattr(sender, "schedule_filename", None)})


class _Mover:
    """The delayed-task mover of this worker's main process (several, one per worker, are safe)."""

    thread: DelayedMover | None = None


@signals.worker_ready.connect
def _start_mover(**_: Any) -> None:
    _Mover.thread = DelayedMover(DelayedTasks(redis_client()))
    _Mover.thread.start()


@signals.worker_shutting_down.connect
def _stop_mover(**_: Any) -> None:
    if _Mover.thread is not None:
        _Mover.thread.stop()


@signals.worker_process_shutdown.connect
def _write_metrics(**_: Any) -> None:
    """What this pool process counted since its last write (fieldrelay/tally.py): its atexit does not run."""
    TALLY.flush()


@signals.worker_process_shutdown.connect
def _close_sessions(**_: Any) -> None:
    """Close the ServiceTrade sessions this pool process opened (seed 002, "Authentication": a user may hold
    100 sessions, soft, and 200, hard); the clients are built per process, on first use only."""
    for built in (runtime, poll_context):
        if built.cache_info().currsize:
            clients = built().clients
            if isinstance(clients, SettingsClients):
                clients.close()


@signals.task_postrun.connect
def _record_rates(sender: Any = None, **_: Any) -> None:
    """Keep the rate budget and quota each target last reported, for `target status` and the console."""
    if getattr(sender, "name", None) != RUN_ACTION_TASK:
        return
    try:
        runtime().record_rates()
    except Exception as exc:  # status for the console must never fail a task
        log.warning("could not record target rates: %s", type(exc).__name__)
