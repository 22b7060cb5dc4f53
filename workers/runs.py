"""When a matched rule's actions start, per rule and entity: `queued`, `latest` or `parallel`, after `debounce`.

- `parallel`: every matching event starts its own run at once (after `debounce`).
- `queued`: one run at a time per (rule, entity), in arrival order; the next starts when one ends.
- `latest`: one run at a time, and waiting events collapse to the newest, so a burst of
  updates costs one run on the newest state (a Synchroteam budget of 120 requests a
  minute goes further). Its first run waits `debounce` seconds, at least `LATEST_WINDOW`,
  so the burst has time to arrive.

State per (rule, entity) lives in Redis and every step is one Lua script, so any number
of worker processes agree on who starts what.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis

from fieldrelay.batch import WriterScript
from fieldrelay.events import ChangeEvent

# (script, keys, args) -> its answer, its call making a batch's writes first (PipelineState.run_after_writes)
RunAfter = Callable[[WriterScript, list[str], list[Any]], Any]
LATEST_WINDOW = 1.0
# Longer than any run should take; if a run is lost entirely, the entity's queue unblocks then.
ACTIVE_TTL = 3600

# KEYS: pending list, active, scheduled. A: mode, event id, debounce (s), active ttl.
_OFFER = """
if tonumber(A[3]) <= 0 and redis.call('SET', KEYS[2], A[2], 'NX', 'EX', tonumber(A[4])) then
  -- Nothing was active. Unless a run waits or a debounce is scheduled (a list that exists is not empty),
  -- this one starts now: one SET and one EXISTS, no trip through the list.
  if redis.call('EXISTS', KEYS[1], KEYS[3]) == 0 then return {'start', A[2]} end
  redis.call('DEL', KEYS[2])  -- not its turn: decided below, as if the SET had not been made
end
local active = redis.call('GET', KEYS[2])
-- A redelivered task whose run is the active one starts it again (the ledger skips done steps).
if active == A[2] then return {'start', A[2]} end
local waiting = redis.call('LLEN', KEYS[1])
if waiting > 0 and redis.call('LPOS', KEYS[1], A[2]) then return {'wait'} end
if A[1] == 'latest' and waiting > 0 then
  redis.call('DEL', KEYS[1])
  waiting = 0
end
local busy = active or redis.call('EXISTS', KEYS[3]) == 1
if not busy and waiting == 0 and tonumber(A[3]) <= 0 then
  redis.call('SET', KEYS[2], A[2], 'EX', tonumber(A[4]))
  return {'start', A[2]}
end
redis.call('RPUSH', KEYS[1], A[2])
redis.call('EXPIRE', KEYS[1], 86400)
if busy then return {'wait'} end
if tonumber(A[3]) > 0 then
  redis.call('SET', KEYS[3], 1, 'EX', math.ceil(tonumber(A[3])) + 3600)
  return {'schedule'}
end
local head = redis.call('LPOP', KEYS[1])
redis.call('SET', KEYS[2], head, 'EX', tonumber(A[4]))
return {'start', head}
"""

# KEYS: pending, active, scheduled. A: finished event id ('' for a due debounce), active ttl.
_NEXT = """
if A[1] == '' then
  redis.call('DEL', KEYS[3])
  if redis.call('EXISTS', KEYS[2]) == 1 then return {'wait'} end
elseif redis.call('GET', KEYS[2]) == A[1] then
  redis.call('DEL', KEYS[2])
else
  return {'wait'}
end
local head = redis.call('LPOP', KEYS[1])
if not head then return {'idle'} end
redis.call('SET', KEYS[2], head, 'EX', tonumber(A[2]))
return {'start', head}
"""


@dataclass(frozen=True)
class Decision:
    """`start` (run `event_id` with rule version `digest` now), `schedule` (after `delay`), `wait` or `idle`."""

    kind: Literal["start", "schedule", "wait", "idle"]
    event_id: str | None = None
    delay: float = 0.0
    digest: str | None = None


class RunCoordinator:
    """Decides when each matched rule's run starts.

    >>> runs.offer("mirror", "queued", 0, event)      # doctest: +SKIP
    Decision(kind='start', event_id='ab12…')
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._offer = WriterScript(client, _OFFER)
        self._next = WriterScript(client, _NEXT)

    @staticmethod
    def run_key(rule: str, source: str, entity_type: str, entity_id: str | int) -> str:
        return f"fieldrelay:run:{rule}:{source}:{entity_type}:{entity_id}"

    def _keys(self, run_key: str) -> list[str]:
        return [f"{run_key}:pending", f"{run_key}:active", f"{run_key}:scheduled"]

    @staticmethod
    def member(event_id: str, digest: str) -> str:
        # The rule version travels with the event: a reload between offer and start changes nothing.
        return f"{event_id}|{digest}"

    def offer(
        self, rule: str, mode: str, debounce: float, event: ChangeEvent, digest: str, *, after: RunAfter | None = None
    ) -> Decision:
        """Start, schedule or queue the run `event` brings. `after` runs the script behind the step's batched
        writes, in the same round trip (`PipelineState.run_after_writes`, or a variant that reads more)."""
        if mode == "latest":
            debounce = max(debounce, LATEST_WINDOW)
        if mode == "parallel":
            if debounce > 0:
                return Decision("schedule", event.id, debounce, digest)
            return Decision("start", event.id, 0.0, digest)
        key = self.run_key(rule, event.source, event.entity.type, event.entity.id)
        keys, args = self._keys(key), [mode, self.member(event.id, digest), str(debounce), str(ACTIVE_TTL)]
        result = self._offer(keys, args) if after is None else after(self._offer, keys, args)
        return self._decision(result, debounce)

    def next_run(self, run_key: str, finished_event_id: str = "", *, after: RunAfter | None = None) -> Decision:
        """After a run ends (its event id) or a debounce falls due (''): what starts next, if anything.

        `after` runs the script behind the step's batched writes, in the same round trip (the ledger of
        the step that ended the run goes first: `PipelineState.run_after_writes`).
        """
        keys, args = self._keys(run_key), [finished_event_id, str(ACTIVE_TTL)]
        result = self._next(keys, args) if after is None else after(self._next, keys, list(args))
        return self._decision(result, 0.0)

    @staticmethod
    def _decision(result: list[bytes | str], delay: float) -> Decision:
        kind = result[0].decode() if isinstance(result[0], bytes) else result[0]
        head = result[1] if len(result) > 1 else None
        member = head.decode() if isinstance(head, bytes) else head
        event_id, _, digest = member.partition("|") if member else (None, "", "")
        # `kind` is one of the four words the Lua script answers; a str read from Redis is not a Literal.
        return Decision(kind, event_id, delay if kind == "schedule" else 0.0, digest or None)  # type: ignore[arg-type]
