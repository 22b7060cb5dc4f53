"""Celery tasks: thin wrappers that handle serialization, retries and final failure around `pipeline`."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import orjson
import redis
import sentry_sdk
from celery import Task, signals
from celery.exceptions import Reject

from fieldrelay.events import ChangeEvent
from fieldrelay.observability import init_sentry
from fieldrelay.queues import (
    ACTION_QUEUES,
    EVENTS_QUEUE,
    INGEST_TASK,
    NEXT_RUN_TASK,
    PROCESS_EVENT_TASK,
    RUN_ACTION_TASK,
)
from fieldrelay.redaction import redactor_for
from fieldrelay.settings import Settings
from rules.engine import allowed_env
from workers import pipeline
from workers.actions.context import SettingsClients
from workers.actions.registry import ACTIONS
from workers.celery_app import app
from workers.connectors.errors import RateLimited, Unavailable
from workers.delayed import DelayedMover, DelayedTasks
from workers.echo import EchoGuard
from workers.gate import TargetGate
from workers.rulebook import RuleBook
from workers.runs import RunCoordinator
from workers.state import PipelineState

log = logging.getLogger("fieldrelay.tasks")
# Final failures are sent to Sentry explicitly, with tags; this logger is kept out of
# Sentry's logging integration (see fieldrelay.observability) so each failure alerts once.
failures = logging.getLogger("fieldrelay.failures")
# How long a task waits for Redis to come back before handing its message back to Redis.
REDIS_OUTAGE_BUDGET = 120.0


def settings() -> Settings:
    configured: Settings = app.conf.fieldrelay_settings
    return configured


@signals.celeryd_init.connect
@signals.worker_process_init.connect
def _init_sentry(**_: Any) -> None:
    init_sentry(settings(), "worker")


@cache
def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings().redis_url or "", socket_timeout=10)


@cache
def runtime() -> pipeline.Runtime:
    """One per worker process: clients keep their sessions (ServiceTrade PHPSESSID) across tasks."""
    s = settings()
    client = redis_client()
    rulebook = RuleBook(s.rules_dir, {name: spec.params for name, spec in ACTIONS.items()},
                        on_reload=publish_rules_status, env_names=s.rules_env)
    publish_rules_status(rulebook)
    return pipeline.Runtime(
        state=PipelineState(client, redactor=redactor_for(s)),
        clients=SettingsClients(s),
        rulebook=rulebook,
        enqueue_action=enqueue_action,
        queue_for_target=ACTION_QUEUES.__getitem__,
        gate=TargetGate(client, {"synchroteam": (s.synchroteam_rate_limit, s.synchroteam_rate_window)},
                        {"synchroteam": s.synchroteam_domain}),
        runs=RunCoordinator(client),
        echoes=EchoGuard(client),
        schedule=DelayedTasks(client).schedule,
        alert=alert,
        env=allowed_env(s.rules_env),
        quota_period=s.synchroteam_quota_period,
    )


RULES_STATUS_KEY = "fieldrelay:rules:status"


def publish_rules_status(book: RuleBook) -> None:
    """Share the rule set's health with `/readyz` and operators; a broken reload alerts once per error set."""
    status = book.status()
    client = redis_client()
    client.set(RULES_STATUS_KEY, orjson.dumps(status))
    if not status["ok"]:
        errors = "\n".join(status["errors"])  # type: ignore[arg-type]
        digest = hashlib.blake2b(errors.encode(), digest_size=8).hexdigest()
        if client.set(f"{RULES_STATUS_KEY}:alerted:{digest}", 1, nx=True, ex=86400):
            alert(f"rules reload failed; the last good set stays in force:\n{errors}", {"alert": "rules"})


def alert(message: str, tags: dict[str, str]) -> None:
    failures.error(message, extra=tags)
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        sentry_sdk.capture_message(message, level="error")


_mover: DelayedMover | None = None


@signals.worker_ready.connect
def _start_mover(**_: Any) -> None:
    """Every worker moves due delayed tasks to their queues (several movers are safe)."""
    global _mover
    _mover = DelayedMover(DelayedTasks(redis_client()))
    _mover.start()


@signals.worker_shutting_down.connect
def _stop_mover(**_: Any) -> None:
    if _mover is not None:
        _mover.stop()


def enqueue_action(event_id: str, digest: str, index: int, queue: str) -> None:
    run_action.apply_async((event_id, digest, index), queue=queue)


def backoff(attempt: int, exc: Exception) -> float:
    """Exponential with full jitter; a rate limit waits for its documented reset instead."""
    if isinstance(exc, RateLimited) and exc.reset_at:
        return max(1.0, exc.reset_at - time.time()) + random.uniform(0, 1)
    ceiling = min(settings().retry_max_backoff, 2.0 ** (attempt + 1))
    return random.uniform(min(0.5, ceiling), ceiling)


def later(task: str, args: list[object], queue: str, delay: float) -> None:
    # Every wait goes through the delayed queue: a countdown/ETA task would sit unacknowledged in
    # the worker, and Redis would hand it to another worker after the visibility timeout.
    DelayedTasks(redis_client()).schedule(task, args, queue, delay)


def through_redis_outages(step: Callable[[], None]) -> None:
    """Run a pipeline step; if Redis goes away meanwhile, wait for it and run the step again.

    Every step is idempotent (claims, ledger, step locks), so running it again is safe. Past
    `REDIS_OUTAGE_BUDGET` the message is handed back unacknowledged: Redis keeps it in its
    unacked set and redelivers it after the visibility timeout. A failure here must never
    ack, or the event or action would be lost.
    """
    deadline = time.monotonic() + REDIS_OUTAGE_BUDGET
    pause = 0.5
    while True:
        try:
            step()
            return
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise Reject(exc, requeue=True) from exc
            log.warning("Redis unavailable (%s); running the step again in %.1f s", type(exc).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)


@app.task(name=INGEST_TASK, acks_late=True, reject_on_worker_lost=True)
def ingest(events: list[dict[str, Any]]) -> None:
    """Split one webhook's events into one `process_event` task each (the receiver writes one message)."""
    for event in events:
        ChangeEvent.model_validate(event)  # a malformed event fails here, visibly, not in a child

    def fan_out() -> None:
        for event in events:
            process_event.apply_async((event,), queue=EVENTS_QUEUE)

    through_redis_outages(fan_out)


@app.task(name=PROCESS_EVENT_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def process_event(self: Task, event: dict[str, Any], replay: bool = False, attempt: int = 0,
                  claim: str | None = None) -> None:
    """Evaluate the rules for one normalized event (plain JSON, never a pickle).

    `claim` is the id of the first delivery's task: a retry keeps it, so it may claim again.
    """
    parsed = ChangeEvent.model_validate(event)
    token = claim or self.request.id

    def step() -> None:
        rt = runtime()
        try:
            pipeline.process_event(parsed, token, rt, replay=replay)
        except Unavailable as exc:
            if attempt >= settings().action_max_retries:
                rt.state.trace(parsed.id, "event.failed", error=f"{type(exc).__name__}: {exc}",
                               attempts=attempt + 1)
                alert(f"event {parsed.id} could not be evaluated: {exc}; `fieldrelay replay {parsed.id}` "
                      "runs it again", {"event_id": parsed.id, "alert": "event"})
                return
            rt.state.trace(parsed.id, "event.retry", error=str(exc), attempt=attempt + 1)
            later(PROCESS_EVENT_TASK, [event, replay, attempt + 1, token], EVENTS_QUEUE, backoff(attempt, exc))

    through_redis_outages(step)


@app.task(name=NEXT_RUN_TASK, acks_late=True, reject_on_worker_lost=True)
def next_run(run_key: str, rule_digest: str) -> None:
    """A debounce fell due: start the waiting run of that rule and entity."""
    through_redis_outages(lambda: pipeline.next_run(run_key, rule_digest, "", runtime()))


@app.task(name=RUN_ACTION_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_action(self: Task, event_id: str, rule_digest: str, index: int, attempt: int = 0) -> None:
    """Run one action of a matched rule; arguments are ids, the state lives in Redis."""
    queue = self.request.delivery_info.get("routing_key") or "actions.http"

    def step() -> None:
        rt = runtime()
        try:
            pipeline.run_action(event_id, rule_digest, index, rt, owner=self.request.id)
        except pipeline.Deferred as wait:
            # Not a failure: the target asked us to wait. No retry is spent.
            delay = wait.seconds + random.uniform(0, 0.25)
            later(RUN_ACTION_TASK, [event_id, rule_digest, index, attempt], queue, delay)
            rt.state.trace(event_id, "action.deferred", index=index, reason=wait.reason, seconds=round(delay, 3))
        except Unavailable as exc:
            if attempt >= settings().action_max_retries:
                fail_for_good(rt, event_id, rule_digest, index, exc, attempt + 1)
                return
            delay = backoff(attempt, exc)
            rt.state.trace(event_id, "action.retry", index=index, error=str(exc), attempt=attempt + 1,
                           seconds=round(delay, 3))
            later(RUN_ACTION_TASK, [event_id, rule_digest, index, attempt + 1], queue, delay)
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # Redis itself: through_redis_outages runs the step again
        except Exception as exc:
            fail_for_good(rt, event_id, rule_digest, index, exc, attempt + 1)

    through_redis_outages(step)


def fail_for_good(
    rt: pipeline.Runtime, event_id: str, digest: str, index: int, exc: Exception, attempts: int
) -> None:
    """Dead-letter the action and alert once, grouped by rule and target."""
    rule_json = rt.state.load_rule(digest)
    parsed = pipeline.Rule.from_json(rule_json) if rule_json is not None else None
    rule, action = (parsed.name, parsed.then[index].name) if parsed is not None else (digest, "")
    target = ACTIONS[action].target if action in ACTIONS else "unknown"
    error = f"{type(exc).__name__}: {exc}"
    detail = {"event_id": event_id, "rule": rule, "rule_digest": digest, "index": index,
              "action": action, "target": target, "error": error, "attempts": attempts}
    rt.state.dead_letter(detail)
    rt.state.trace(event_id, "action.failed", **{k: v for k, v in detail.items() if k != "event_id"})
    failures.error("action failed for good: %s", rt.state.redactor.text(str(exc)),
              extra={"event_id": event_id, "rule": rule})
    if parsed is not None:
        pipeline.run_on_failure(event_id, digest, index, error, rt)
        raw_event = rt.state.load_event(event_id)
        if raw_event is not None:  # the entity's next queued run may start now
            pipeline.end_run(ChangeEvent.model_validate(raw_event), parsed, digest, rt)
    with sentry_sdk.new_scope() as scope:
        scope.set_tag("rule", rule)
        scope.set_tag("event_id", event_id)
        scope.set_tag("target", target)
        scope.set_tag("action", action)
        scope.fingerprint = ["fieldrelay-action-failed", rule, target]
        sentry_sdk.capture_exception(exc)
