"""Changesets from snapshots: which top-level fields of a record changed, as `{field: {old, new}}`."""

from __future__ import annotations

from typing import Any

from fieldrelay.entitystate import canonical as _canonical
from fieldrelay.entitystate import comparable as comparable


def changeset(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Changed top-level fields; a never-seen record has every field go from None.

    >>> changeset({"status": "scheduled", "n": 1}, {"status": "completed", "n": 1})
    {'status': {'old': 'scheduled', 'new': 'completed'}}
    """
    before = old or {}
    changes = {}
    for name in sorted(set(before) | set(new)):
        if name not in new:
            changes[name] = {"old": before[name], "new": None}
        elif name not in before or _canonical(before[name]) != _canonical(new[name]):
            changes[name] = {"old": before.get(name), "new": new[name]}
    return changes
