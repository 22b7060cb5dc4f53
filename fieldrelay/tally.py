"""A worker's metric counts, summed in the process and written to Redis about once a second.

The counters a trace step adds to (fieldrelay.metrics) were written with the step's other writes: eight
of the seventy Redis commands one event cost, each a hash field to pack, send and apply, for numbers
nothing reads but a scrape. In a worker's steps (`PipelineState.batched`) they are summed here per hash
field instead, and a thread of the process writes the sums in one MULTI/EXEC every `EVERY` seconds, with
the trims of the console's event index. A scrape may so lag a second behind, and a process killed with
SIGKILL loses what it counted in its last second (a Prometheus client's in-process counters lose all of
theirs); a clean exit writes what is left (`flush`, from the worker's process-shutdown signal and atexit).
While Redis is out of reach the sums are kept and written when it is back.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable

import redis

from fieldrelay.logs import OutageLog

log = logging.getLogger("fieldrelay.metrics")
EVERY = 1.0


class Tally:
    """Sums of HINCRBY and HINCRBYFLOAT by (key, field), and the latest trim of each sorted set.

    >>> tally = Tally()
    >>> tally.bind(client)                                   # doctest: +SKIP
    >>> tally.hincrby("fieldrelay:metrics:fieldrelay_retries_total", "[]", 1)   # doctest: +SKIP
    >>> tally.flush()                                        # doctest: +SKIP
    """

    def __init__(self, every: float | None = EVERY) -> None:
        self.every = every
        self.pid = 0
        self._reset(None)

    def _reset(self, client: redis.Redis | None) -> None:
        # Also a forked child's start: the parent's sums, lock and thread are not its own.
        self.lock = threading.Lock()
        self.ints: dict[tuple[str, str], int] = {}
        self.floats: dict[tuple[str, str], float] = {}
        self.trims: dict[str, tuple[int, float]] = {}
        self.client = client
        self.stopping = threading.Event()
        self.outage = OutageLog(
            log, "metrics not written, Redis is unreachable (kept until it is back)", "metrics written again"
        )

    def bind(self, client: redis.Redis) -> None:
        """Write to `client`, from a thread started in this process the first time."""
        if self.pid:  # set in this process: a forked child starts with 0 (`_forked`)
            return
        self._reset(client)
        self.pid = os.getpid()
        if self.every is not None:  # None: written only by `flush` (the tests' tallies)
            threading.Thread(target=self._run, args=(self.every,), name="fieldrelay-metrics", daemon=True).start()
        atexit.register(self.flush)

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        with self.lock:
            self.ints[key, field] = self.ints.get((key, field), 0) + amount

    def hincrbyfloat(self, key: str, field: str, amount: float) -> None:
        with self.lock:
            self.floats[key, field] = self.floats.get((key, field), 0.0) + amount

    def trim(self, key: str, keep: int, below: float) -> None:
        """Keep the newest `keep` members of sorted set `key`, none scored below `below`."""
        with self.lock:
            self.trims[key] = (keep, below)

    def then(self, do: Callable[[], None]) -> None:
        """Do it now: what a recorder does once its step's writes are in (they are as far as the tally knows)."""
        do()

    def _run(self, every: float) -> None:
        while not self.stopping.wait(every):
            self.flush()

    def flush(self) -> None:
        """Write the sums now; kept for the next time if Redis does not take them."""
        with self.lock:
            ints, floats, trims = self.ints, self.floats, self.trims
            self.ints, self.floats, self.trims = {}, {}, {}
        if self.client is None or not (ints or floats or trims):
            return
        pipe = self.client.pipeline(transaction=True)  # all or none: a retry never counts twice
        for (key, field), n in ints.items():
            pipe.hincrby(key, field, n)
        for (key, field), x in floats.items():
            pipe.hincrbyfloat(key, field, x)
        for key, (keep, below) in trims.items():
            pipe.zremrangebyrank(key, 0, -keep - 1)
            pipe.zremrangebyscore(key, 0, below)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            with self.lock:
                for k, n in ints.items():
                    self.ints[k] = self.ints.get(k, 0) + n
                for k, x in floats.items():
                    self.floats[k] = self.floats.get(k, 0.0) + x
                for key, trim in trims.items():
                    self.trims.setdefault(key, trim)
            self.outage.failed(exc)
            return
        self.outage.recovered()


TALLY = Tally()


def _forked() -> None:
    TALLY.pid = 0  # the parent's sums, lock and thread are not the child's: bind starts its own


os.register_at_fork(after_in_child=_forked)
