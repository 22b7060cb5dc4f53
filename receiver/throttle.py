"""Failed webhook tokens and console sign-ins, counted per client address; an address that fails too often waits.

Kept in each receiver process's memory, not in Redis: refusing a request must not depend on Redis,
and the webhook path stays one Redis write per request. With several receiver processes an address
gets that many times the budget, which is still nowhere near enough to guess a 16-character token.

    >>> t = Throttle(limit=2, window=60)
    >>> t.failed("203.0.113.9"), t.failed("203.0.113.9"), t.blocked("203.0.113.9") > 0
    (1, 2, True)

An address that presented a valid webhook token (ServiceTrade's own) is `trusted` for a day: a stale
token on another of its hooks then cannot get its valid deliveries refused, while an address that has
only ever guessed is refused outright once it is blocked, even if a guess is right.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

TRUST_SECONDS = 86400.0


class Throttle:
    """`limit` failures within `window` seconds block an address for `window` seconds."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit, self.window, self.max_addresses, self.clock = limit, window, max_addresses, clock
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (window start, count)
        self._blocked: dict[str, float] = {}
        self._trusted: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()  # the console counts in Starlette's thread pool

    def blocked(self, address: str) -> float:
        """Seconds the address still has to wait, or 0."""
        with self._lock:
            until = self._blocked.get(address, 0.0)
            left = until - self.clock()
            if left <= 0 and address in self._blocked:
                del self._blocked[address]
            return max(0.0, left)

    def failed(self, address: str) -> int:
        """Count one failure; returns how many the address has in its window (it is blocked at `limit`)."""
        now = self.clock()
        with self._lock:
            start, count = self._failures.pop(address, (now, 0))
            if now - start > self.window:
                start, count = now, 0
            count += 1
            self._failures[address] = (start, count)
            if count >= self.limit:
                self._blocked[address] = now + self.window
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
            if len(self._blocked) > self.max_addresses:
                for stale in [a for a, until in self._blocked.items() if until <= now]:
                    del self._blocked[stale]
            return count

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)

    def trust(self, address: str) -> None:
        with self._lock:
            self._trusted.pop(address, None)
            self._trusted[address] = self.clock() + TRUST_SECONDS
            while len(self._trusted) > self.max_addresses:
                self._trusted.popitem(last=False)

    def trusted(self, address: str) -> bool:
        with self._lock:
            return self._trusted.get(address, 0.0) > self.clock()
