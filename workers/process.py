"""This worker process's runtime, built once from the Celery app's settings, for the tasks and signals."""

from __future__ import annotations

from functools import cache

import redis

from fieldrelay.queues import ALL_QUEUES, RUN_ACTION_TASK
from fieldrelay.redaction import redactor_for
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.targets import target_limits
from workers.celery_app import app
from workers.inline import inline_queues
from workers.retry import RetryPolicy
from workers.runtime import Runtime, build_runtime


def settings() -> Settings:
    configured: Settings = app.conf.fieldrelay_settings
    return configured


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings().redis_url or "", socket_timeout=10)


def send_action(event_id: str, digest: str, index: int, queue: str) -> None:
    """Enqueue `fieldrelay.run_action` by name on its target's queue."""
    app.send_task(RUN_ACTION_TASK, args=(event_id, digest, index), queue=queue)


def policy() -> RetryPolicy:
    """The retry policy from the settings, without Redis: known even while Redis is down."""
    s = settings()
    return RetryPolicy(s.action_max_retries, s.retry_max_backoff)


@cache
def failure_state() -> PipelineState:
    """What recording a failure needs, without the runtime: it works even when the runtime cannot be built."""
    return PipelineState(redis_client(), redactor=redactor_for(settings()))


@cache
def inline_action_queues() -> frozenset[str]:
    """Queues whose actions this process runs inline, in the task before them (workers/inline.py).

    The worker's `-Q` selection (`consume_from`) is made before the pool forks; none means all queues.
    """
    selected = app.amqp.queues.consume_from
    consumed = set(selected) if selected else set(ALL_QUEUES)
    return inline_queues(target_limits(settings()), consumed)


@cache
def runtime() -> Runtime:
    """Built on first use, in each pool process (clients and sessions are not shared across a fork)."""
    return build_runtime(settings(), redis_client(), enqueue_action=send_action)
