"""One task step's trace entries, their metrics and its plain record writes, sent to Redis in one round trip.

A step used to write each trace entry (a script) and its metrics (a pipeline) as they came: two round
trips per entry, six or more per event. Inside `PipelineState.batched()` they are collected here and
sent together when the step ends, and before anything leaves the step: a task message (so a step
another task runs is never traced before the entries that led to it) or a call to a target (so the
trace shows what was sent before it is sent). Nothing here is read back before it is sent, except
through `known` (times this step recorded, which the metrics of a later entry of it need).

The writes go as one script call (`APPLY`), in the order they were collected: a client-side command
costs far more than a server-side one, and a step has twenty or more. Redis runs them as one step, so
no reader sees half of a step's writes.
"""

from __future__ import annotations

import functools
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

# Lua: apply(from) runs the commands in ARGV[from..], each as its length then its words. Two are ours:
# APPEND key ttl extend entries... (a trace list's new entries: the TTL is set when the list is made, and
# extended, never shortened, only when `extend` is 1, a failure's longer retention; every list is made with
# a TTL, so one that existed has one) and UNLOCK key token (delete a step lock only if it is still that
# token's). Shared by APPLY and by scripts that write a step's entries when they grant it (workers/gate.py).
APPLY_FUNCTION = """
local function apply(from)
  local i = from
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    local name = ARGV[i + 1]
    if name == 'APPEND' then
      local key, ttl = ARGV[i + 2], tonumber(ARGV[i + 3])
      local length = redis.call('RPUSH', key, unpack(ARGV, i + 5, i + n))
      if length == n - 4 or (ARGV[i + 4] == '1' and redis.call('TTL', key) < ttl) then
        redis.call('EXPIRE', key, ttl)
      end
    elseif name == 'UNLOCK' then
      if redis.call('GET', ARGV[i + 2]) == ARGV[i + 3] then redis.call('DEL', ARGV[i + 2]) end
    else
      redis.call(unpack(ARGV, i + 1, i + n))
    end
    i = i + n + 1
  end
end
"""
APPLY = APPLY_FUNCTION + "apply(1)\nreturn 1\n"


@functools.lru_cache(maxsize=64)
def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


class WriteBatch:
    """Writes collected for one send; `pipe` takes plain commands (it only records them), `trace` the
    entries of each trace list, `unlock` a step lock's release.

    >>> batch = WriteBatch(client)                          # doctest: +SKIP
    >>> batch.trace("fieldrelay:trace:ab12", b"{...}", 604800)   # doctest: +SKIP
    >>> batch.send()                                        # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.pipe: Any = client.pipeline(transaction=False)
        self.traces: dict[str, tuple[int, bool, list[bytes]]] = {}
        self.known: dict[str, float] = {}
        self.held = False  # kept open past its step (PipelineState.batched's `hold`): a failed send keeps it

    def unlock(self, key: str, token: str) -> None:
        self.pipe.command_stack.append((("UNLOCK", key, token), {}))

    def run(self, source: str, keys: list[str], args: list[Any], *, reads: Callable[[Any], None] | None = None) -> Any:
        """Send the writes collected, then run a Lua script whose answer the step needs; return it (and with
        `reads`, what they add after it: [answer, *theirs])."""
        call = ("EVALSHA", _sha(source), len(keys), *keys, *args)

        def script(pipe: Any) -> None:
            pipe.execute_command(*call)
            if reads is not None:
                reads(pipe)

        answers = self.send(script, fallback=(source, [len(keys), *keys, *args]))
        return answers if reads is not None else answers[0]

    def trace(self, key: str, entry: bytes, ttl: int, *, extend: bool = False) -> None:
        """Append `entry` to list `key`, made with TTL `ttl`; `extend`: raise an existing list's TTL to `ttl`."""
        longest, extending, entries = self.traces.get(key, (0, False, []))
        entries.append(entry)
        self.traces[key] = (max(longest, ttl), extending or extend, entries)

    def words(self) -> list[Any]:
        """Everything collected, as `APPLY_FUNCTION`'s words, in the order it came; the batch is empty after."""
        stack, traces = self.pipe.command_stack, self.traces
        self.pipe, self.traces = self.r.pipeline(transaction=False), {}
        words: list[Any] = []
        for command, _ in stack:
            words += [len(command), *command]
        for key, (ttl, extend, entries) in traces.items():
            words += [4 + len(entries), "APPEND", key, ttl, int(extend), *entries]
        return words

    def send(
        self, reads: Callable[[Any], None] | None = None, *, fallback: tuple[str, list[Any]] | None = None
    ) -> list[Any]:
        """Send everything collected, in the order it came, then what `reads(pipe)` adds (reads, or a script
        whose answer the step needs, with the writes before it); returns the answers to those. `fallback`
        is the (source, numkeys+keys+args) of a script `reads` runs by its digest. The batch is empty after."""
        stack, traces = list(self.pipe.command_stack), self.traces
        words = self.words()
        pipe: Any = self.r.pipeline(transaction=False)
        if words:
            # EVAL with the source, never EVALSHA: a Redis that does not know the script yet (new, restarted,
            # flushed) would refuse the writes and still run the reads after them, which then read what was
            # there before the writes. (A pipeline's own script handling asks SCRIPT EXISTS first: a round trip.)
            pipe.execute_command("EVAL", APPLY, 0, *words)
        writes = len(pipe)
        if reads is not None:
            reads(pipe)
        if not len(pipe):
            return []
        try:
            results: list[Any] = pipe.execute(raise_on_error=False)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            if self.held:  # writes of a step that ended already: nobody would write them again
                self.pipe.command_stack[:0] = stack
                for key, (ttl, extend, entries) in traces.items():
                    for entry in entries:
                        self.trace(key, entry, ttl, extend=extend)
            raise
        self.held = False  # sent: what comes after it is the current step's own
        for position, result in enumerate(results):
            if isinstance(result, redis.exceptions.NoScriptError):  # a restarted or flushed Redis forgot it
                # `reads` goes after the writes, which went: running it now keeps the order.
                if fallback is not None:
                    results[position] = self.r.eval(fallback[0], *fallback[1])
                else:
                    raise result
            elif isinstance(result, Exception):
                raise result
        return results[writes:]
