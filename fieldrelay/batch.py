"""One task step's trace entries, their metrics and its plain record writes, sent to Redis in one command.

A step used to write each trace entry (a script) and its metrics (a pipeline) as they came: two round
trips per entry, six or more per event. Inside `PipelineState.batched()` they are collected here and
sent together when the step ends, and before anything leaves the step: a task message (so a step
another task runs is never traced before the entries that led to it) or a call to a target (so the
trace shows what was sent before it is sent). Nothing here is read back before it is sent, except
through `known` (times this step recorded, which the metrics of a later entry of it need).

The writes go as one script call (`APPLY`), in the order they were collected: a client-side command
costs far more than a server-side one, and a step has twenty or more. Redis runs them as one step, so
no reader sees half of a step's writes. When the step needs a script's answer (a run's offer, a target's
slot), the writes go inside that script's own call (`WriterScript`): one command, not two. A record's new
version (`WriteBatch.guard`) goes first and is checked there: if another writer changed the record since it
was read, the call makes none of the step's writes and the send raises VersionConflict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

# Appends entries and extends the list's TTL, never shortening it (a failure keeps its trace longer).
# EXPIRE ... GT needs Redis 7; the embedded server is 6.2.
TRACE_APPEND = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
"""

# Lua: apply(t, from, to) runs the commands in t[from..to], each as its length then its words. Three are ours:
# APPEND key ttl extend entries... (a trace list's new entries), UNLOCK key token (delete a step lock
# only if it is still that token's) and GUARD key token value ttl length (SET a record's version if the
# stored one still starts with `token`, else make nothing: apply answers false, and its script refuses
# the whole call with CONFLICT; a batch sends its guards before anything else). A script's APPENDs are kept
# until `appended()` at its end, which makes one RPUSH per list for all of them: a step lock's grant and
# the writes before it add to one trace list.
# A list's TTL is set when the list is made, and extended, never shortened, only when an entry's `extend`
# is 1 (a failure's longer retention); every list is made with a TTL, so one that existed has one.
# Shared by APPLY, by every WriterScript, and by the gate's script, which writes a step's `action.started`
# entry only when it grants the step (workers/gate.py).
APPLY_FUNCTION = """
local appends, appended_keys = {}, {}
local function apply(t, from, to)
  local i = from
  while i <= to do
    local n = tonumber(t[i])
    local name = t[i + 1]
    if name == 'APPEND' then
      local key, ttl = t[i + 2], tonumber(t[i + 3])
      local list = appends[key]
      if not list then
        list = {ttl = ttl, extend = false, entries = {}}
        appends[key] = list
        appended_keys[#appended_keys + 1] = key
      end
      if ttl > list.ttl then list.ttl = ttl end
      if t[i + 4] == '1' then list.extend = true end
      for j = i + 5, i + n do list.entries[#list.entries + 1] = t[j] end
    elseif name == 'UNLOCK' then
      if redis.call('GET', t[i + 2]) == t[i + 3] then redis.call('DEL', t[i + 2]) end
    elseif name == 'GUARD' then
      local current = redis.call('GET', t[i + 2])
      local token = ''
      if current then token = string.sub(current, 1, tonumber(t[i + 6])) end
      if token ~= t[i + 3] then return false end
      redis.call('SET', t[i + 2], t[i + 4], 'EX', tonumber(t[i + 5]))
    else
      redis.call(unpack(t, i + 1, i + n))
    end
    i = i + n + 1
  end
  return true
end
local function appended()
  for _, key in ipairs(appended_keys) do
    local list = appends[key]
    local length = redis.call('RPUSH', key, unpack(list.entries))
    if length == #list.entries or (list.extend and redis.call('TTL', key) < list.ttl) then
      redis.call('EXPIRE', key, list.ttl)
    end
  end
end
"""
CONFLICT = "FIELDRELAY_VERSION_CONFLICT"
APPLY = (
    APPLY_FUNCTION
    + f"if not apply(ARGV, 1, #ARGV) then return redis.error_reply('{CONFLICT}') end\nappended()\nreturn 1\n"
)

# A WriterScript's ARGV: how many words of writes, the words, then the script's own arguments (`A` in its body).
_WRITER_PRELUDE = f"""
local written = tonumber(ARGV[1])
if not apply(ARGV, 2, written + 1) then return redis.error_reply('{CONFLICT}') end
local A = {{unpack(ARGV, written + 2)}}
"""


class VersionConflict(Exception):
    """A guarded write (`WriteBatch.guard`) found another version stored: the send made none of its writes."""


class WriterScript:
    """A Lua script whose call first makes a step's collected writes (`WriteBatch.words`), then runs `body`,
    which reads its own arguments from `A` (ARGV is the writes' and its own together), with APPLY_FUNCTION's
    `apply` at hand. Called alone, it makes no writes.

    >>> offer = WriterScript(client, "return redis.call('GET', KEYS[1]) == A[1]")   # doctest: +SKIP
    >>> offer(["k"], ["v"])                                                         # doctest: +SKIP
    """

    def __init__(self, client: redis.Redis, body: str) -> None:
        self.source = (
            APPLY_FUNCTION
            + _WRITER_PRELUDE
            + "local function body()\n"
            + body
            + "\nend\nlocal answer = body()\nappended()\nreturn answer\n"
        )
        self._script = client.register_script(self.source)

    def __call__(self, keys: list[str], args: Sequence[Any]) -> Any:
        return self._script(keys=keys, args=[0, *args])


def _key_fields(command: tuple[Any, ...]) -> tuple[Any, set[Any] | None]:
    """(key, the hash fields it touches) of a recorded command; None for fields: the whole key, or not a hash."""
    name = str(command[0]).upper()
    if name == "HSET":
        return command[1], set(command[2::2])
    if name in ("HINCRBY", "HINCRBYFLOAT", "HSETNX", "HDEL"):
        return command[1], set(command[2:3] if name != "HDEL" else command[2:])
    return (command[1] if len(command) > 1 else None), None


_FIELD_WRITES = ("HSET", "HINCRBY", "HINCRBYFLOAT", "HSETNX")


def merged(stack: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The commands with each HSET folded into an earlier HSET of the same key, and an EXPIRE that repeats an
    earlier one dropped, when nothing in between could tell: an HSET may pass EXPIREs of its key (it exists
    since the earlier HSET) and hash commands on other fields; an EXPIRE may pass field writes, which leave
    a TTL as it is. An event's record then gets one HSET and one EXPIRE per step, not one per writer."""
    out: list[list[Any] | tuple[Any, ...]] = []
    for command in stack:
        name = str(command[0]).upper()
        if name == "HSET":
            key, fields = command[1], set(command[2::2])
            for position in range(len(out) - 1, -1, -1):
                earlier = out[position]
                other_key, other_fields = _key_fields(tuple(earlier))
                if other_key != key:
                    continue
                if str(earlier[0]).upper() == "HSET":
                    out[position] = [*earlier, *command[2:]]  # later values of a field win, as they would
                    break
                if str(earlier[0]).upper() == "EXPIRE" or (other_fields is not None and not other_fields & fields):
                    continue
                out.append(command)
                break
            else:
                out.append(command)
        elif name == "EXPIRE" and len(command) == 3:
            for earlier in reversed(out):
                if len(earlier) < 2 or earlier[1] != command[1]:
                    continue
                if str(earlier[0]).upper() in _FIELD_WRITES:
                    continue
                if str(earlier[0]).upper() != "EXPIRE" or tuple(earlier) != tuple(command):
                    out.append(command)
                break
            else:
                out.append(command)
        else:
            out.append(command)
    return [tuple(c) for c in out]


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
        self.guards: list[tuple[Any, ...]] = []
        # What to do once the writes are in, while a guard may still refuse them (a step's log lines, counts).
        self.after: list[Callable[[], None]] = []

    @property
    def guarded(self) -> bool:
        """Holds a guard not sent yet: what the step collects may still be refused whole."""
        return bool(self.guards)

    def guard(self, key: str, token: str, value: bytes, ttl: int, token_length: int) -> None:
        """SET `key` to `value` (TTL `ttl`) with this batch's writes, and make them only if the stored value
        still starts with `token` (its first `token_length` bytes; '' for none stored): else the send raises
        VersionConflict and makes none of them."""
        self.guards.append(("GUARD", key, token, value, ttl, token_length))

    def unlock(self, key: str, token: str) -> None:
        self.pipe.command_stack.append((("UNLOCK", key, token), {}))

    def run(
        self, script: WriterScript, keys: list[str], args: list[Any], *, reads: Callable[[Any], None] | None = None
    ) -> Any:
        """Run `script` with the writes collected inside its call, and return its answer (with `reads`, what
        they add after it too: [answer, *theirs])."""
        answers = self.send(reads, script=(script, keys, args))
        return answers if reads is not None else answers[0]

    def trace(self, key: str, entry: bytes, ttl: int, *, extend: bool = False) -> None:
        """Append `entry` to list `key`, made with TTL `ttl`; `extend`: raise an existing list's TTL to `ttl`."""
        longest, extending, entries = self.traces.get(key, (0, False, []))
        entries.append(entry)
        self.traces[key] = (max(longest, ttl), extending or extend, entries)

    def words(self) -> list[Any]:
        """Everything collected, as `APPLY_FUNCTION`'s words, in the order it came; the batch is empty after."""
        stack, traces, guards = self.pipe.command_stack, self.traces, self.guards
        self.pipe, self.traces, self.guards = self.r.pipeline(transaction=False), {}, []
        words: list[Any] = []
        for command in [*guards, *merged([command for command, _ in stack])]:
            words += [len(command), *command]
        for key, (ttl, extend, entries) in traces.items():
            words += [4 + len(entries), "APPEND", key, ttl, int(extend), *entries]
        return words

    def send(
        self,
        reads: Callable[[Any], None] | None = None,
        *,
        script: tuple[WriterScript, list[str], list[Any]] | None = None,
    ) -> list[Any]:
        """Send everything collected, in the order it came (inside `script`'s call, if given: (script, keys,
        args)), then what `reads(pipe)` adds; returns the answers to the script and the reads. The batch is
        empty after."""
        stack, traces, guards, after = list(self.pipe.command_stack), self.traces, self.guards, self.after
        words = self.words()
        self.after = []
        pipe: Any = self.r.pipeline(transaction=False)
        # EVAL with the source, never EVALSHA: a Redis that does not know the script yet (new, restarted,
        # flushed) would refuse the writes and still run the reads after them, which then read what was
        # there before the writes. (A pipeline's own script handling asks SCRIPT EXISTS first: a round trip.)
        if script is not None:
            writer, keys, args = script
            pipe.execute_command("EVAL", writer.source, len(keys), *keys, len(words), *words, *args)
        elif words:
            pipe.execute_command("EVAL", APPLY, 0, *words)
        writes = 1 if words and script is None else 0
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
                self.guards[:0], self.after[:0] = guards, after
            raise
        self.held = False  # sent: what comes after it is the current step's own
        for result in results:
            if isinstance(result, redis.exceptions.ResponseError) and str(result).startswith(CONFLICT):
                raise VersionConflict(str(result))
            if isinstance(result, Exception):
                raise result
        for then in after:
            then()
        return results[writes:]
