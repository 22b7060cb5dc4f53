"""Per-target admission in Redis: one rate limiter, rate-limit blocks, quota pauses and manual pauses.

Celery's `rate_limit` is per worker process (celery #5732): four workers at 120/min send
480/min. The gate is one GCRA limiter per target credential in Redis, shared by every
process on every host. It paces requests evenly at `SAFETY` x the documented rate,
because Synchroteam counts fixed windows from a key's first request: a burst, or requests
bunched by network jitter, can put one too many into a window. It also learns from each
response: `X-RateLimit-Remaining: 0` or a 429 blocks the target until `X-RateLimit-Reset`,
and an exhausted daily quota pauses it until the reset (UTC midnight).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from fieldrelay.batch import WriterScript
from fieldrelay.targets import TargetLimits

# (script, keys, args) -> its answer: `PipelineState.run_after_writes`, whose call makes a step's writes first.
RunScript = Callable[[WriterScript, list[str], list[Any]], Any]

SAFETY = 0.97
# A step lock taken with a slot: (Redis key, owner token, lease in seconds); see PipelineState.step_lock.
StepLock = tuple[str, str, int]

_ACQUIRE = """
local function admit()
  local paused, quota, blocked = unpack(redis.call('MGET', KEYS[4], KEYS[3], KEYS[2]))
  if paused then return {30000, 'paused'} end
  local interval = tonumber(A[1])
  -- An unpaced target with no block and no used-up quota needs no clock: one command, not four.
  if interval <= 0 and not quota and not blocked then return {0, 'ok'} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  quota = tonumber(quota or '0')
  if quota > now then return {quota - now, 'quota'} end
  blocked = tonumber(blocked or '0')
  if blocked > now then return {blocked - now, 'blocked'} end
  if interval <= 0 then return {0, 'ok'} end
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  -- A slot nobody was ready to take stays usable for A[2] ms (a few slots), instead of lost.
  local floor = now - tonumber(A[2])
  if tat < floor then tat = floor end
  if tat > now then return {tat - now, 'rate'} end
  redis.call('SET', KEYS[1], tat + interval, 'PX', interval + 60000)
  return {0, 'ok'}
end
local answer = admit()
if answer[1] > 0 or #KEYS < 5 then return answer end
-- Admitted: take the step's lock (KEYS[5], owner A[3], lease A[4] s) in the same round trip, and
-- write what the step writes when it starts (A[5..], as APPLY's words).
if redis.call('SET', KEYS[5], A[3], 'NX', 'EX', tonumber(A[4])) then
  apply(A, 5, #A)
  return answer
end
if redis.call('GET', KEYS[5]) == A[3] then
  redis.call('EXPIRE', KEYS[5], tonumber(A[4]))
  apply(A, 5, #A)
  return answer
end
return {1000, 'busy'}
"""


@dataclass(frozen=True)
class Wait:
    """Not now: try again in `seconds`; `reason` is rate | blocked | quota | paused | busy (the step lock)."""

    seconds: float
    reason: str


class TargetGate:
    """Ask before each call to a target; tell it what the target's headers said afterwards.

    >>> gate = TargetGate(redis.Redis.from_url(url), target_limits(settings))   # doctest: +SKIP
    >>> gate.acquire("synchroteam") is None        # None: go ahead              # doctest: +SKIP
    True
    """

    def __init__(self, client: redis.Redis, targets: Mapping[str, TargetLimits]) -> None:
        self.r = client
        self.targets = dict(targets)
        self._acquire = WriterScript(client, _ACQUIRE)

    def _key(self, target: str, part: str) -> str:
        row = self.targets.get(target)
        return f"fieldrelay:gate:{target}:{row.credential if row else ''}:{part}"

    def _limit(self, target: str) -> tuple[int, float]:
        row = self.targets.get(target)
        return (row.rate, row.window) if row else (0, 0.0)

    def _interval_ms(self, target: str) -> int:
        requests, window = self._limit(target)
        if requests <= 0 or window <= 0:
            return 0  # an unpaced target stays unpaced, whatever its headers say
        learned = self.r.get(self._key(target, "limit"))
        if learned is not None:
            requests = int(learned)
        if requests <= 0 or window <= 0:
            return 0
        # Whole milliseconds: Lua numbers this size print in exponent form, and PX takes integers.
        return round(window * 1000.0 / (requests * SAFETY))

    def _credit_slots(self, target: str) -> int:
        # Up to the headroom SAFETY leaves, less one: at 120/window, 2 slots (116.4 + 2 < 120); at
        # 20/window, none. Without credit, four processes that each sleep to their slot miss
        # about one in ten (measured: 89.5% of the limit), because a slot nobody was ready for is gone.
        requests, _ = self._limit(target)
        return max(0, int(requests * (1 - SAFETY)) - 1)

    def acquire(
        self,
        target: str,
        lock: StepLock | None = None,
        *,
        then: list[Any] | None = None,
        run: RunScript | None = None,
    ) -> Wait | None:
        """Take a slot now, or say how long to wait. A paused target always waits.

        With `lock` (key, owner, lease), a slot taken also takes that step lock, or waits as `busy`
        when another owner holds it (the slot is spent either way, as when they were two calls); and
        `then`, writes (`fieldrelay.batch.WriteBatch.words`) made only when both are taken: the step's
        `action.started` entry. `run` sends the script (with a step's batched writes before it).
        """
        keys = [
            self._key(target, "tat"),
            self._key(target, "blocked"),
            self._key(target, "quota"),
            f"fieldrelay:paused:{target}",
        ]
        interval = self._interval_ms(target)
        args: list[str | int] = [interval, interval * self._credit_slots(target)]
        if lock is not None:
            keys.append(lock[0])
            args += [lock[1], lock[2], *(then or [])]
        wait_ms, reason = self._acquire(keys, args) if run is None else run(self._acquire, keys, args)
        if int(wait_ms) <= 0:
            return None
        return Wait(int(wait_ms) / 1000.0, reason.decode() if isinstance(reason, bytes) else str(reason))

    def observe(
        self,
        target: str,
        *,
        limit: int | None,
        remaining: int | None,
        reset_at: float | None,
        quota_remaining: int | None = None,
        quota_reset_at: float | None = None,
    ) -> bool:
        """Adapt to a response's headers. Returns True when this call exhausted the quota (alert once)."""
        if limit and limit > 0 and self._limit(target)[0] > 0:
            self.r.set(self._key(target, "limit"), limit, ex=86400)
        if remaining == 0 and reset_at:
            self.block_until(target, reset_at)
        if quota_remaining == 0 and quota_reset_at:
            return self.quota_exhausted(target, quota_reset_at)
        return False

    def block_until(self, target: str, until: float) -> None:
        ms = int(until * 1000)
        self.r.set(self._key(target, "blocked"), ms, pxat=max(ms, 1) + 1000)

    def quota_exhausted(self, target: str, until: float) -> bool:
        """Pause the target until `until`; True only for the first caller of this reset period."""
        ms = int(until * 1000)
        self.r.set(self._key(target, "quota"), ms, pxat=ms + 1000)
        return bool(self.r.set(self._key(target, f"quota-alert:{ms}"), 1, nx=True, pxat=ms + 86_400_000))
