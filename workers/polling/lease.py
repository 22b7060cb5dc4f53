"""One run per poller at a time, across processes and hosts: a Redis lock with a lease."""

from __future__ import annotations

import secrets
from types import TracebackType

import redis

# Only the holder may release or extend: a run that outlived its lease must not free the next one's lock.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_EXTEND = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


class Lease:
    """`SET NX PX` with a random token; a stuck holder's lease simply expires.

    >>> with Lease(r, "fieldrelay:poll:lock:servicetrade.job", seconds=300) as held:   # doctest: +SKIP
    ...     if held: poll()
    """

    def __init__(self, client: redis.Redis, key: str, seconds: float) -> None:
        self.r, self.key, self.ms = client, key, max(1, int(seconds * 1000))
        self.token = secrets.token_hex(16)
        self.held = False

    def acquire(self) -> bool:
        self.held = bool(self.r.set(self.key, self.token, nx=True, px=self.ms))
        return self.held

    def extend(self) -> bool:
        """Renew the lease for another full term; False when it was lost (expired and taken)."""
        self.held = bool(self.r.eval(_EXTEND, 1, self.key, self.token, self.ms))
        return self.held

    def release(self) -> None:
        if self.held:
            self.r.eval(_RELEASE, 1, self.key, self.token)
            self.held = False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
