"""Caps on what is kept for people to read: a trace entry or dead letter never holds a string over `MAX_TEXT`.

An action's parameters and result are stored in its trace, shown on the console and logged. A rule that
renders 100 MB, or an endpoint that answers with 5 MB, must not make a 100 MB trace; each string is cut
and says how long it was.

    >>> bounded({"text": "a" * 10}, limit=4)
    {'text': 'aaaa… [cut: 10 characters, the first 4 kept]'}
"""

from __future__ import annotations

from typing import Any

MAX_TEXT = 64 * 1024
MAX_ITEMS = 1000
MAX_DEPTH = 32


def bounded(value: Any, limit: int = MAX_TEXT, *, depth: int = 0) -> Any:
    """`value` with every string cut to `limit` characters, lists and mappings to `MAX_ITEMS` entries."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}… [cut: {len(value)} characters, the first {limit} kept]"
    if isinstance(value, bytes | bytearray):
        return bounded(bytes(value).decode("utf-8", errors="replace"), limit, depth=depth)
    if depth >= MAX_DEPTH and isinstance(value, dict | list | tuple):
        return f"[cut: nested deeper than {MAX_DEPTH} levels]"
    if isinstance(value, dict):
        items = list(value.items())
        out = {str(k)[:limit]: bounded(v, limit, depth=depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["…"] = f"[cut: {len(items)} entries, the first {MAX_ITEMS} kept]"
        return out
    if isinstance(value, list | tuple):
        kept = [bounded(v, limit, depth=depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            kept.append(f"[cut: {len(value)} items, the first {MAX_ITEMS} kept]")
        return kept
    return value
