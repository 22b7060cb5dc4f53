"""Changesets from snapshots: which top-level fields of a record changed, as `{field: {old, new}}`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def _canonical(value: Any) -> bytes:
    # Key order inside nested objects is not a change.
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=str)


def comparable(record: Mapping[str, Any], ignore: Iterable[str]) -> dict[str, Any]:
    """The record without its volatile fields (`updated`, `dateModified`, version numbers...)."""
    skip = set(ignore)
    return {k: v for k, v in record.items() if k not in skip}


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
