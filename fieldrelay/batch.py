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
from collections.abc import Callable
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
        self.held = False  # kept open past its step (PipelineState.batched's `hold`): a failed send keeps it

    def script(self, source: str, keys: list[str], args: list[Any]) -> None:
        """Run a Lua script (its EVALSHA) in the batch's order (its answer, through `send`'s `reads`)."""
        self.scripts[len(self.pipe)] = (source, [len(keys), *keys, *args])
        self.pipe.execute_command("EVALSHA", _sha(source), len(keys), *keys, *args)

    def run(self, source: str, keys: list[str], args: list[Any]) -> Any:
        """Send the writes collected, then run a Lua script whose answer the step needs; return it."""
        [answer] = self.send(lambda _: self.script(source, keys, args))
        return answer

    def trace(self, key: str, entry: bytes, ttl: int) -> None:
        longest, entries = self.traces.get(key, (0, []))
        entries.append(entry)
        self.traces[key] = (max(longest, ttl), entries)

    def send(self, reads: Callable[[Any], None] | None = None) -> list[Any]:
        """Send everything collected, in the order it came, then what `reads(pipe)` adds (reads, or a script
        whose answer the step needs, with the writes before it); returns the answers to those. The batch is
        empty afterwards."""
        traces, self.traces = self.traces, {}
        for key, (ttl, entries) in traces.items():
            self.script(TRACE_APPEND, [key], [ttl, *entries])
        writes = len(self.pipe)
        if reads is not None:
            reads(self.pipe)
        if not len(self.pipe):
            return []
        pipe, scripts = self.pipe, self.scripts
        self.pipe, self.scripts = self.r.pipeline(transaction=False), {}
        stack = list(pipe.command_stack)[:writes]
        try:
            # EVALSHA straight: a pipeline's own script handling asks SCRIPT EXISTS first, a round trip more.
            results: list[Any] = pipe.execute(raise_on_error=False)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if self.held:  # writes of a step that ended already: nobody would write them again
                self.pipe.command_stack.extend(stack)
                self.scripts = {p: c for p, c in scripts.items() if p < writes}
            raise
        self.held = False  # sent: what comes after it is the current step's own
        for position, result in enumerate(results):
            if isinstance(result, redis.exceptions.NoScriptError) and position in scripts:
                source, arguments = scripts[position]  # a restarted or flushed Redis forgot it
                results[position] = self.r.eval(source, *arguments)
            elif isinstance(result, Exception):
                raise result
        return results[writes:]
