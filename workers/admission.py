"""Admission to a target: wait on the shared gate, learn from rate headers, turn 429s into deferrals."""

from __future__ import annotations

import time
from collections.abc import Callable

from workers.actions.context import Clients
from workers.connectors.errors import RateLimited
from workers.connectors.synchroteam import SynchroteamQuotaExceeded
from workers.gate import TargetGate

Alert = Callable[[str, dict[str, str]], None]

# Rate waits this short are slept in the task; longer ones go back to the delayed queue.
SLEEP_AT_MOST = 2.0


class Deferred(Exception):
    """The target cannot take the call now (rate, 429, quota, pause): run it again later, no retry spent."""

    def __init__(self, seconds: float, reason: str) -> None:
        super().__init__(seconds, reason)
        self.seconds, self.reason = seconds, reason


def admit(gate: TargetGate, target: str) -> None:
    """Wait for the target's shared gate: sleep through short rate waits, defer anything longer."""
    while (wait := gate.acquire(target)) is not None:
        if wait.reason != "rate" or wait.seconds > SLEEP_AT_MOST:
            raise Deferred(wait.seconds, wait.reason)
        time.sleep(wait.seconds)


def observe(gate: TargetGate, target: str, clients: Clients, quota_period: float, alert: Alert) -> None:
    """Teach the gate what the target's rate-limit headers just said."""
    if target != "synchroteam":
        return  # the only target that documents rate-limit headers
    rate = clients.synchroteam.last_rate
    if rate is None:
        return
    exhausted = gate.observe(target, limit=rate.limit, remaining=rate.remaining, reset_at=rate.reset_at,
                             quota_remaining=rate.quota_remaining,
                             quota_reset_at=next_utc_midnight(period=quota_period))
    if exhausted:
        alert(f"{target} daily quota used up; its actions wait until the reset",
                 {"target": target, "alert": "quota"})


def deferral(gate: TargetGate, target: str, exc: RateLimited, quota_period: float, alert: Alert) -> Deferred:
    """A 429 blocks the whole target until its reset; an exhausted quota pauses it until midnight UTC."""
    now = time.time()
    if isinstance(exc, SynchroteamQuotaExceeded):
        until = next_utc_midnight(period=quota_period) if quota_period != 86400.0 else (
            exc.reset_at or next_utc_midnight())
        if gate.quota_exhausted(target, until):
            alert(f"{target} daily quota used up; its actions wait until the reset",
                     {"target": target, "alert": "quota"})
        return Deferred(max(1.0, until - now), "quota")
    until = exc.reset_at if exc.reset_at and exc.reset_at > now else now + 1.0
    gate.block_until(target, until)
    return Deferred(until - now, "blocked")


def next_utc_midnight(now: float | None = None, period: float = 86400.0) -> float:
    """The next quota reset: UTC midnight, or the next multiple of a compressed `period` since the epoch."""
    now = time.time() if now is None else now
    return (now // period + 1) * period
