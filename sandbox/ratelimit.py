"""Synchroteam's per-key request budget: a per-window rate limit plus a daily quota reset at UTC midnight."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DAY = 86400


@dataclass
class Usage:
    window_start: float
    window_count: int
    day: int
    day_count: int


@dataclass
class Verdict:
    """Whether a request may proceed, and the five headers every response carries."""

    allowed: bool
    reason: str
    headers: dict[str, str]


class RateLimiter:
    """Fixed windows of `window_seconds` starting at a key's first request, plus a per-UTC-day quota.

    `quota_period` is the quota "day" in seconds, counted from the epoch (UTC midnights by
    default); fault tests compress it together with fieldrelay's FIELDRELAY_SYNCHROTEAM_QUOTA_PERIOD.

    >>> limiter = RateLimiter(limit=2, window_seconds=60, daily_quota=100, clock=lambda: 1000.0)
    >>> [limiter.check("k").allowed for _ in range(3)]
    [True, True, False]
    """

    def __init__(
        self,
        *,
        limit: int,
        window_seconds: float,
        daily_quota: int,
        clock: Callable[[], float] = time.time,
        quota_period: float = DAY,
    ) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.daily_quota = daily_quota
        self.clock = clock
        self.quota_period = quota_period
        self._usage: dict[str, Usage] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._usage.clear()

    def peek(self, key: str) -> dict[str, str]:
        """The five headers for `key` without counting a request (answers refused before the budget)."""
        now = self.clock()
        day = int(now // self.quota_period)
        with self._lock:
            usage = self._usage.get(key)
            if usage is None or now >= usage.window_start + self.window_seconds:
                usage = Usage(now, 0, day, usage.day_count if usage and usage.day == day else 0)
            day_count = usage.day_count if usage.day == day else 0
            return self._headers(usage.window_start, usage.window_count, day_count)

    def _headers(self, window_start: float, window_count: int, day_count: int) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - window_count)),
            "X-RateLimit-Reset": str(math.ceil(window_start + self.window_seconds)),
            "X-Quota-Limit": str(self.daily_quota),
            "X-Quota-Remaining": str(max(0, self.daily_quota - day_count)),
        }

    def check(self, key: str) -> Verdict:
        """Count one request for `key` unless it is over budget; rejected requests are not counted."""
        now = self.clock()
        day = int(now // self.quota_period)
        with self._lock:
            usage = self._usage.get(key)
            if usage is None or now >= usage.window_start + self.window_seconds:
                usage = Usage(now, 0, day, usage.day_count if usage and usage.day == day else 0)
                self._usage[key] = usage
            if usage.day != day:
                usage.day, usage.day_count = day, 0
            if usage.day_count >= self.daily_quota:
                reason = "You have gone above your daily quota"
            elif usage.window_count >= self.limit:
                # Only the quota message is documented; this one is worded to match it.
                reason = "You have gone above your rate limit"
            else:
                reason = ""
                usage.window_count += 1
                usage.day_count += 1
            headers = self._headers(usage.window_start, usage.window_count, usage.day_count)
        return Verdict(not reason, reason, headers)
