"""One step of a rule's `then` or `on_failure`, as written: the action's name, its id and raw params."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ActionCall:
    """One step of `then`/`on_failure`: `{synchroteam.job.upsert: {...}, id: job}`; params are raw."""

    name: str
    id: str | None
    params: Any
    line: int
