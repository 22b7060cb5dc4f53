"""Waiting on a running pipeline in tests: is anything queued, unacked or delayed, and until when."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from fieldrelay.queues import ALL_QUEUES
from workers.delayed import KEY as DELAYED_KEY


class PipelineWaits:
    """Mixed into test handles that have `self.redis`, a client of the pipeline's Redis."""

    redis: redis.Redis

    def busy(self) -> bool:
        """Work is queued, held unacked by a worker, or waiting in the delayed queue."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in ALL_QUEUES:
            pipe.llen(queue)
        pipe.hlen("unacked")
        pipe.zcard(DELAYED_KEY)
        return any(pipe.execute())

    def wait_until(
        self, predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition", every: float = 0.1
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_idle(self, timeout: float = 60.0, quiet: float = 1.5) -> None:
        """Until nothing is queued, unacked or delayed for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        while time.monotonic() < deadline:
            if self.busy():
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= quiet:
                return
            time.sleep(0.05)
        raise AssertionError(f"pipeline did not go idle within {timeout}s")
