"""Errors and warnings of the rule language, each pointing into a rule file.

    Exception
     +-- RuleError            one problem in a rule file (file:line:col: path: message)
     +-- RuleLoadError        every RuleError of a load; nothing from the load is usable
     +-- TemplateError        a template or expression failed at render time
          +-- TemplateSecurityError   the template tried to escape the sandbox

`RuleWarning` is not an exception: it rides on `RuleSet.warnings`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rules.catalog import did_you_mean


def format_path(loc: Iterable[str | int]) -> str:
    """`('rules', 0, 'then', 1, 'x')` -> `rules[0].then[1].x`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class RuleError(Exception):
    """One problem in a rule file.

    >>> str(RuleError("rules/sync.yaml", 5, 9, "rules[0].name", "field required"))
    'rules/sync.yaml:5:9: rules[0].name: field required'
    """

    def __init__(self, file: str, line: int, col: int, path: str, message: str) -> None:
        super().__init__(file, line, col, path, message)
        self.file, self.line, self.col, self.path, self.message = file, line, col, path, message

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"

    @property
    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.col, self.path)


class RuleLoadError(Exception):
    """Every error found while loading; the load as a whole failed.

    >>> err = RuleLoadError([RuleError("a.yaml", 1, 1, "rules", "field required")])
    >>> err.errors[0].line
    1
    """

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = sorted(errors, key=lambda e: e.sort_key)
        super().__init__(self.errors)

    def __str__(self) -> str:
        count = len(self.errors)
        head = f"{count} error{'s' if count != 1 else ''} in rule files"
        return "\n".join([head, *(str(e) for e in self.errors)])


@dataclass(frozen=True)
class RuleWarning:
    """A legal but suspicious rule, e.g. a `changed:` field the API does not document."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {self.message}"


class TemplateError(Exception):
    """A template or expression failed; `path` names the parameter or condition.

    >>> str(TemplateError("then[0].myId", "'dict object' has no attribute 'id'"))
    "then[0].myId: 'dict object' has no attribute 'id'"
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)
        self.path, self.message = path, message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class TemplateSecurityError(TemplateError):
    """The template reached for something the sandbox forbids (`__class__`, `mro`, ...)."""


def describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as a sentence for ops: `'fast' is not one of 'queued', 'latest' or 'parallel'`."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind in ("missing", "union_tag_not_found"):
        return "field required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "union_tag_invalid":
        return f"{ctx['tag']!r} is not one of {ctx['expected_tags']}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "literal_error":
        message = f"{value!r} is not one of {ctx['expected']}"
        if isinstance(value, str):
            choices = [c.strip(" '") for c in str(ctx["expected"]).replace(" or ", ",").split(",")]
            message += did_you_mean(value, choices)
        return message
    msg: str = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    msg = msg[:1].lower() + msg[1:]
    if isinstance(value, str | int | float | bool) or value is None:
        msg += f", got {value!r}"
    return msg


def show(value: Any, *, quote: bool = True, limit: int = 120) -> str:
    """A value for a reason line: repr'd, and cut short so one huge field cannot flood the logs."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
