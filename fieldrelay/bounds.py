"""Caps on what is kept for people to read: a trace entry or dead letter never holds a string over `MAX_TEXT`.

An action's parameters and result are stored in its trace, shown on the console and logged. A rule that
renders 100 MB, or an endpoint that answers with 5 MB, must not make a 100 MB trace; each string is cut
and says how long it was.

    >>> bounded({"text": "a" * 10}, limit=4)
    {'text': 'aaaa… [cut: 10 characters, the first 4 kept]'}
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_TEXT = 64 * 1024
MAX_ITEMS = 1000
MAX_DEPTH = 32


def bounded(value: Any, limit: int = MAX_TEXT, *, depth: int = 0) -> Any:
    """`value` with every string cut to `limit` characters, lists and mappings to `MAX_ITEMS` entries."""
    if depth == 0 and type(value) is dict and _within(value, limit):
        return value
    return _bounded(value, limit, depth=depth)


def _bounded(value: Any, limit: int, *, depth: int) -> Any:
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}… [cut: {len(value)} characters, the first {limit} kept]"
    if isinstance(value, bytes | bytearray):
        return _bounded(bytes(value).decode("utf-8", errors="replace"), limit, depth=depth)
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        return f"[cut: nested deeper than {MAX_DEPTH} levels]"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:limit]: _bounded(v, limit, depth=depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"[cut: {len(items)} entries, the first {MAX_ITEMS} kept]"
        return out
    if isinstance(value, list | tuple):
        kept = [_bounded(v, limit, depth=depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            kept.append(f"[cut: {len(value)} items, the first {MAX_ITEMS} kept]")
        return kept
    return value


def _within(value: dict[Any, Any], limit: int) -> bool:
    """True when nothing in `value` needs cutting, told from its JSON text (a trace entry's usual case, where
    walking it cost a trace step a quarter of its time): no longer than `limit` (so is each string and key),
    nor than 2 x MAX_ITEMS (a longer list or mapping takes more), with at most MAX_DEPTH brackets (so no
    deeper nesting; a bracket inside a string only counts against it). Bytes, keys that are not strings and
    objects JSON cannot hold raise, and are walked."""
    try:
        line = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return False
    return len(line) <= min(limit, 2 * MAX_ITEMS) and line.count(b"[") + line.count(b"{") <= MAX_DEPTH
