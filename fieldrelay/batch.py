"""One task step's trace entries, their metrics and its plain record writes, sent to Redis in one round trip.

A step used to write each trace entry (a script) and its metrics (a pipeline) as they came: two round
trips per entry, six or more per event. Inside `PipelineState.batched()` they are collected here and
sent together when the step ends, and before anything leaves the step: a task message (so a step
another task runs is never traced before the entries that led to it) or a call to a target (so the
trace shows what was sent before it is sent). Nothing here is read back before it is sent, except
through `known` (times this step recorded, which the metrics of a later entry of it need).
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis

# Appends entries and extends the list's TTL, never shortening it (a failure keeps its trace longer).
# EXPIRE ... GT needs Redis 7; the embedded server is 6.2.
TRACE_APPEND = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
"""
TRACE_APPEND_SHA = hashlib.sha1(TRACE_APPEND.encode()).hexdigest()


class WriteBatch:
    """Writes collected for one send; `pipe` takes plain commands, `trace` the entries of each trace list.

    >>> batch = WriteBatch(client)                          # doctest: +SKIP
    >>> batch.trace("fieldrelay:trace:ab12", b"{...}", 604800)   # doctest: +SKIP
    >>> batch.send()                                        # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.pipe: Any = client.pipeline(transaction=False)
        self.traces: dict[str, tuple[int, list[bytes]]] = {}
        self.known: dict[str, float] = {}

    def trace(self, key: str, entry: bytes, ttl: int) -> None:
        longest, entries = self.traces.get(key, (0, []))
        entries.append(entry)
        self.traces[key] = (max(longest, ttl), entries)

    def send(self) -> None:
        """Send everything collected, in the order it came; the batch is empty afterwards."""
        traces, self.traces = self.traces, {}
        calls = [(key, ttl, entries) for key, (ttl, entries) in traces.items()]
        for key, ttl, entries in calls:
            # EVALSHA straight: a pipeline's own script handling asks SCRIPT EXISTS first, a round trip more.
            self.pipe.execute_command("EVALSHA", TRACE_APPEND_SHA, 1, key, ttl, *entries)
        if not len(self.pipe):
            return
        pipe, self.pipe = self.pipe, self.r.pipeline(transaction=False)
        results = pipe.execute(raise_on_error=False)
        offset = len(results) - len(calls)
        for (key, ttl, entries), result in zip(calls, results[offset:], strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):  # a restarted or flushed Redis
                self.r.eval(TRACE_APPEND, 1, key, ttl, *entries)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, redis.exceptions.NoScriptError):
                raise result
