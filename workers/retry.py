"""When a task's step runs again and when it fails for good: the one retry policy every task uses.

a target asked us to wait (Deferred)       -> again after its wait, no retry spent
network error, timeout, 5xx (Unavailable)   -> again after a backoff, until the retries run out
anything else, or retries used up           -> failed for good: the caller dead-letters and alerts
Redis itself unreachable                    -> wait for it and run the step again (never ack)
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

from workers.admission import Deferred
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
        if isinstance(exc, Unavailable) and attempt < self.max_retries:
            return Next("retry", attempt + 1, self.backoff(attempt, exc), str(exc))
        return Next("fail", attempt + 1, reason=f"{type(exc).__name__}: {exc}")


def run_step(
    step: Callable[[], object],
    attempt: int,
    policy: RetryPolicy,
    *,
    again: Callable[[Next], None],
    fail: Callable[[Exception, int], None],
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
                fail(exc, decision.attempt)
            else:
                again(decision)

    through_redis_outages(guarded)


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
        except REDIS_ERRORS as exc:
            if time.monotonic() > deadline:
                raise Reject(exc, requeue=True) from exc
            log.warning("Redis unavailable (%s); running the step again in %.1f s", type(exc).__name__, pause)
            time.sleep(pause)
            pause = min(pause * 2, 10.0)
