"""When a task's step runs again and when it fails for good: the one retry policy every task uses.

a target asked us to wait (Deferred)       -> again after its wait, no retry spent
network error, timeout, 5xx (Unavailable)   -> again after a backoff, until the retries run out
anything else, or retries used up           -> failed for good: the caller dead-letters and alerts
Redis itself unreachable                    -> wait for it and run the step again (never ack)

`run_step` applies this to a task's step; `run_once` runs a step that has no retries (ingest, a
debounced run, a poll): anything it raises but Redis trouble fails it for good at once. Either way
nothing a step raises escapes into Celery's "raised unexpected" log line alone.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis
from celery.exceptions import Reject

from fieldrelay.batch import VersionConflict
from workers.admission import Deferred
from workers.alerts import alert_exception
from workers.connectors.errors import RateLimited, Unavailable

log = logging.getLogger("fieldrelay.retry")
# How long a task waits for Redis to come back before handing its message back to Redis.
REDIS_OUTAGE_BUDGET = 120.0
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


@dataclass(frozen=True)
class Next:
    """What follows a failed attempt: `defer` or `retry` after `delay` seconds as `attempt`, or `fail`."""

    kind: Literal["defer", "retry", "fail"]
    attempt: int
    delay: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` retries of an unavailable target, with full-jitter backoff up to `max_backoff` seconds.

    >>> RetryPolicy(max_retries=0, max_backoff=10).decide(ValueError("bad"), attempt=0).kind
    'fail'
    """

    max_retries: int
    max_backoff: float

    def backoff(self, attempt: int, exc: Exception) -> float:
        """Exponential with full jitter; a rate limit waits for its documented reset instead."""
        if isinstance(exc, RateLimited) and exc.reset_at:
            return max(1.0, exc.reset_at - time.time()) + random.uniform(0, 1)
        ceiling = min(self.max_backoff, 2.0 ** (attempt + 1))
        return random.uniform(min(0.5, ceiling), ceiling)

    def decide(self, exc: Exception, attempt: int) -> Next:
        if isinstance(exc, Deferred):
            return Next("defer", attempt, exc.seconds + random.uniform(0, 0.25), exc.reason)
        if isinstance(exc, VersionConflict):  # another event of the record wrote first: evaluate again, soon
            return Next("defer", attempt, 1.0 + random.uniform(0, 0.25), "busy")
        if isinstance(exc, Unavailable) and attempt < self.max_retries:
            return Next("retry", attempt + 1, self.backoff(attempt, exc), str(exc))
        return Next("fail", attempt + 1, reason=f"{type(exc).__name__}: {exc}")


def run_step(
    step: Callable[[], object],
    attempt: int,
    policy: RetryPolicy,
    *,
    again: Callable[[Next], None],
    fail: Callable[[Exception, int], object],
) -> None:
    """Run a task's step under the policy: `again(next)` schedules the next attempt, `fail(exc, attempts)`
    ends it for good. Nothing a step raises escapes, so a task never acks work it neither did nor recorded."""

    def guarded() -> None:
        try:
            step()
        except REDIS_ERRORS:
            raise
        except Exception as exc:
            decision = policy.decide(exc, attempt)
            if decision.kind == "fail":
                fail_safely(fail, exc, decision.attempt)
            else:
                again(decision)

    through_redis_outages(guarded)


def run_once(step: Callable[[], object], fail: Callable[[Exception, int], object]) -> None:
    """Run a step with no retries: anything but Redis trouble ends in `fail(exc, 1)`."""

    def guarded() -> None:
        try:
            step()
        except REDIS_ERRORS:
            raise
        except Exception as exc:
            fail_safely(fail, exc, 1)

    through_redis_outages(guarded)


def fail_safely(fail: Callable[[Exception, int], object], exc: Exception, attempts: int) -> None:
    """`fail(exc, attempts)`; should recording the failure itself fail, a person still hears of both."""
    try:
        fail(exc, attempts)
    except REDIS_ERRORS:
        raise  # through_redis_outages waits for Redis and runs the step again
    except Exception as broken:
        log.exception("recording a failure failed: %s: %s", type(exc).__name__, exc)
        alert_exception(
            broken,
            f"a failure could not be recorded ({type(broken).__name__}: {broken}); "
            f"the original failure was {type(exc).__name__}: {exc}",
            {"alert": "unrecorded-failure"},
            ["fieldrelay-unrecorded-failure", type(broken).__name__],
        )
        raise


def through_redis_outages(step: Callable[[], object]) -> None:
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
        except REDIS_ERRORS as exc:
            if time.monotonic() > deadline:
                raise Reject(exc, requeue=True) from exc
            log.warning("Redis unavailable (%s); running the step again in %.1f s", type(exc).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)
