"""One step of a rule's `then` or `on_failure`, as written: the action's name, its id and raw params."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# What an action that keeps a link does when the record it created was deleted in the target.
ON_MISSING = ("fail", "recreate")


@dataclass(frozen=True)
class ActionCall:
    """One step of `then`/`on_failure`: `{synchroteam.job.upsert: {...}, id: job}`; params are raw.

    `loop_ok` is the author's reason why a write back to the rule's own source is safe (it silences
    the loop warning); None when none was given.
    `on_missing` (`fail`, the default, or `recreate`) is for actions that keep a link to the record
    they created: what to do when a later run finds that record deleted in the target.
    """

    name: str
    id: str | None
    params: Any
    line: int
    loop_ok: str | None = None
    on_missing: str = "fail"
