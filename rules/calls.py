"""One step of a rule's `then` or `on_failure`, as written: the action's name, its id and raw params."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ActionCall:
    """One step of `then`/`on_failure`: `{synchroteam.job.upsert: {...}, id: job}`; params are raw.

    `loop_ok` is the author's reason why a write back to the rule's own source is safe (it silences
    the loop warning); None when none was given.
    """

    name: str
    id: str | None
    params: Any
    line: int
    loop_ok: str | None = None
