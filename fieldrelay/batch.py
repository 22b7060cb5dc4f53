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


def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


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
        self.scripts: dict[int, tuple[str, list[Any]]] = {}  # pipeline position -> (source, keys+args)

    def script(self, source: str, keys: list[str], args: list[Any]) -> None:
        """Run a Lua script (its EVALSHA) in the batch's order: for writes no step waits on."""
        self.scripts[len(self.pipe)] = (source, [len(keys), *keys, *args])
        self.pipe.execute_command("EVALSHA", _sha(source), len(keys), *keys, *args)

    def trace(self, key: str, entry: bytes, ttl: int) -> None:
        longest, entries = self.traces.get(key, (0, []))
        entries.append(entry)
        self.traces[key] = (max(longest, ttl), entries)

    def send(self) -> None:
        """Send everything collected, in the order it came; the batch is empty afterwards."""
        traces, self.traces = self.traces, {}
        for key, (ttl, entries) in traces.items():
            self.script(TRACE_APPEND, [key], [ttl, *entries])
        if not len(self.pipe):
            return
        pipe, scripts = self.pipe, self.scripts
        self.pipe, self.scripts = self.r.pipeline(transaction=False), {}
        # EVALSHA straight: a pipeline's own script handling asks SCRIPT EXISTS first, a round trip more.
        results = pipe.execute(raise_on_error=False)
        for position, result in enumerate(results):
            if isinstance(result, redis.exceptions.NoScriptError) and position in scripts:
                source, arguments = scripts[position]  # a restarted or flushed Redis forgot it
                self.r.eval(source, *arguments)
            elif isinstance(result, Exception):
                raise result
