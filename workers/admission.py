"""Admission to a target: wait on the shared gate, learn from rate headers, turn 429s into deferrals.

What each target allows is data (`fieldrelay.targets`); nothing here names a target.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fieldrelay.targets import TargetLimits, next_reset
from workers.connectors.errors import QuotaExceeded, RateInfo, RateLimited
from workers.gate import RunScript, StepLock, TargetGate

Alert = Callable[[str, dict[str, str]], None]

# Rate waits this short are slept in the task; longer ones go back to the delayed queue.
SLEEP_AT_MOST = 2.0


class Deferred(Exception):
    """The target cannot take the call now (rate, 429, quota, pause): run it again later, no retry spent."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(seconds, reason)
        self.seconds, self.reason = seconds, reason


def admit(
    gate: TargetGate,
    target: str,
    lock: StepLock | None = None,
    *,
    then: Callable[[], tuple[list[Any], Callable[[], None]]] | None = None,
    run: RunScript | None = None,
) -> Callable[[], None] | None:
    """Wait for the target's shared gate, and take the step's `lock` with its slot: sleep through short
    rate waits, defer anything longer, and a lock another task holds (`busy`). `then()` gives the writes
    made with the slot and lock, made again for each try, and what to do once they were (log them), which
    is returned; `run` sends the gate's script."""
    while True:
        writes, made = then() if then is not None else ([], None)
        wait = gate.acquire(target, lock, then=writes, run=run)
        if wait is None:
            return made
        if wait.reason != "rate" or wait.seconds > SLEEP_AT_MOST:
            raise Deferred(wait.seconds, wait.reason)
        time.sleep(wait.seconds)


def quota_reset(limits: TargetLimits, now: float) -> float:
    """When the target's quota comes back: its documented reset (UTC midnight), or in a day if it has none."""
    return next_reset(now, limits.quota_period or 86400.0)


def observe(gate: TargetGate, limits: TargetLimits, rate: RateInfo | None, alert: Alert) -> None:
    """Teach the gate what the target's rate-limit headers just said (for targets that send them)."""
    if not limits.rate_headers or rate is None:
        return
    exhausted = gate.observe(
        limits.name,
        limit=rate.limit,
        remaining=rate.remaining,
        reset_at=rate.reset_at,
        quota_remaining=rate.quota_remaining,
        quota_reset_at=quota_reset(limits, time.time()),
    )
    if exhausted:
        alert(
            f"{limits.name} daily quota used up; its actions wait until the reset",
            {"target": limits.name, "alert": "quota"},
        )


def deferral(gate: TargetGate, limits: TargetLimits, exc: RateLimited, alert: Alert) -> Deferred:
    """A 429 blocks the whole target until its reset; an exhausted quota pauses it until the quota's reset."""
    now = time.time()
    if isinstance(exc, QuotaExceeded):
        until = quota_reset(limits, now)
        if gate.quota_exhausted(limits.name, until):
            alert(
                f"{limits.name} daily quota used up; its actions wait until the reset",
                {"target": limits.name, "alert": "quota"},
            )
        return Deferred(max(1.0, until - now), "quota")
    until = exc.reset_at if exc.reset_at and exc.reset_at > now else now + 1.0
    gate.block_until(limits.name, until)
    return Deferred(until - now, "blocked")
