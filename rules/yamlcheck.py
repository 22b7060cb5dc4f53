"""Refuse YAML bombs before anything is built: file size, nesting depth, aliases and what they expand to.

A billion-laughs file (each level an anchor aliased ten times by the next) is a few hundred bytes that
expand to a billion nodes when the loader copies them; a list nested 5,000 deep overflows the recursive
composer. Both are found here, on the parser's event stream (which does not recurse), and reported
at the line and column where the limit was passed.

    >>> check_yaml("a: &x [1, 2]\\nb: *x\\n") is None
    True
"""

from __future__ import annotations

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    ScalarEvent,
)

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 500_000  # after every alias is expanded


class YamlLimitError(Exception):
    """A rule file past one of the limits above; `line` and `col` are 1-based."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(line, col, message)
        self.line, self.col, self.message = line, col, message


def check_yaml(text: str) -> None:
    """Raise `YamlLimitError` for a file too large, too deep, with too many aliases or too large expanded.

    Syntax errors are left to the loader, which reports them with their own marks.
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise YamlLimitError(1, 1, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    sizes: dict[str, int] = {}  # anchor -> nodes it expands to
    stack: list[list[int | str | None]] = [[0, None]]  # [nodes so far, anchor] per open collection
    aliases = 0
    try:
        for event in YAML(typ="rt").parse(text):
            mark = event.start_mark
            where = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            if isinstance(event, CollectionStartEvent):
                if len(stack) > MAX_DEPTH:
                    raise YamlLimitError(where[0], where[1], f"nested deeper than {MAX_DEPTH} levels")
                stack.append([1, event.anchor])
            elif isinstance(event, CollectionEndEvent):
                count, anchor = stack.pop()
                assert isinstance(count, int)
                if anchor:
                    sizes[str(anchor)] = count
                _add(stack, count, where)
            elif isinstance(event, ScalarEvent):
                if event.anchor:
                    sizes[str(event.anchor)] = 1
                _add(stack, 1, where)
            elif isinstance(event, AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise YamlLimitError(where[0], where[1], f"more than {MAX_ALIASES} aliases")
                _add(stack, sizes.get(str(event.anchor), 1), where)
    except MarkedYAMLError:
        return  # the loader parses again and reports the syntax error where it is


def _add(stack: list[list[int | str | None]], count: int, where: tuple[int, int]) -> None:
    total = stack[-1][0]
    assert isinstance(total, int)
    stack[-1][0] = total + count
    expanded = sum(int(level[0] or 0) for level in stack)
    if expanded > MAX_NODES:
        raise YamlLimitError(where[0], where[1], f"aliases expand this document past {MAX_NODES:,} nodes")
