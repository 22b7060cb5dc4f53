"""An event's record in Redis: one hash for the event, its console summary and its step results.

Its fields: `event` (the event's JSON); the console summary's (fieldrelay/metrics.py: source, via, entity, at,
`rule:<name>`, `s:<rule>:<index>`, …); and `r:<rule digest>:<index or step id>`, a step's result, which by
index is the step's ledger entry. Records written before this layout kept the event, the step results and each
ledger entry in keys of their own; they are still read (LEGACY) until they expire.

>>> result_field("ab12", 0)
'r:ab12:0'
"""

from __future__ import annotations

import enum
from typing import Any

import orjson
import redis

EVENT_FIELD = "event"
RESULT_PREFIX = "r:"
# Each record's fields but the event and the step results (PipelineState.summaries): a list of thousands of
# events reads only what it shows.
SUMMARIES = f"""
local out = {{}}
for i, key in ipairs(KEYS) do
  local all, kept = redis.call('HGETALL', key), {{}}
  for j = 1, #all, 2 do
    if all[j] ~= '{EVENT_FIELD}' and string.sub(all[j], 1, {len(RESULT_PREFIX)}) ~= '{RESULT_PREFIX}' then
      kept[#kept + 1] = all[j]
      kept[#kept + 1] = all[j + 1]
    end
  end
  out[i] = kept
end
return out
"""

# (step `index`'s result if it is done, every step result of the rule version by index and by step id)
Results = tuple[dict[str, Any] | None, dict[str, Any]]


def result_field(digest: str, step: int | str) -> str:
    """A step result's field in its event's record: by index (its ledger entry) or by step id."""
    return f"{RESULT_PREFIX}{digest}:{step}"


class Claim(enum.Enum):
    """How claiming an event went: NEW (its first claim), AGAIN (this token held it already: a redelivery or
    a retry), TAKEN (another token holds it: a duplicate), NONE (nothing was claimed: a replay)."""

    NEW = "new"
    AGAIN = "again"
    TAKEN = "taken"
    NONE = "none"

    @property
    def claimed(self) -> bool:
        return self in (Claim.NEW, Claim.AGAIN)


def step_results(
    client: redis.Redis,
    fields: dict[Any, Any],
    digest: str,
    index: int | None,
    *,
    legacy_steps: str,
    legacy_ledger: str | None,
) -> Results:
    """The step results of rule version `digest` in a record's `fields` (HGETALL), and step `index`'s if it is
    done. A record without its event was written before it held them: its LEGACY keys are read too."""
    prefix = result_field(digest, "").encode()
    steps = {k[len(prefix) :].decode(): orjson.loads(v) for k, v in fields.items() if k.startswith(prefix)}
    done = steps.get(str(index)) if index is not None else None
    if fields and EVENT_FIELD.encode() not in fields:
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(legacy_steps)
        if legacy_ledger is not None:
            pipe.get(legacy_ledger)
        old, *ledger = pipe.execute()
        steps = {**{_text(k): orjson.loads(v) for k, v in old.items()}, **steps}
        if done is None and ledger and ledger[0] is not None:  # then, the ledger alone said a step was done
            done = orjson.loads(ledger[0])
    return done, steps


def result_fields(names: list[bytes | str], digest: str | None, index: int | None) -> list[str]:
    """Which of a record's field `names` are step results: of step `index` of rule version `digest`, of every
    step of `digest`, or of every version."""
    if digest is None:
        return [n for n in map(_text, names) if n.startswith(RESULT_PREFIX)]
    if index is None:
        return [n for n in map(_text, names) if n.startswith(result_field(digest, ""))]
    return [n for n in map(_text, names) if n == result_field(digest, index)]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
