"""Limits on what a rule template may build: no gigabyte strings, no endless renders, at load or at run time.

Jinja folds constants when it compiles (`{{ 'a' * 10**9 }}` used to take 4 GB at load) and Python
builds whatever a template asks for at render (`'a' * (event.entity.id * 30000)`). The sandbox lets an
environment intercept operators and calls; `RuleEnvironment` (rules/templating.py) routes through here:

- `*`, `**`, `+` and `%` are intercepted, so Jinja cannot fold them at compile time, and each is
  checked before it runs: no string, list or bytes over `MAX_SIZE` items, no integer over `MAX_INT_BITS`;
- `~` and every captured block go through `concat`, which checks the total first;
- widths and repeats (`center`, `ljust`, `indent`, `'%9999999s'`, `'{:>9999999}'`), `join` and
  `replace` are checked before they run; every filter's and call's result is checked after;
- `range` is the sandbox's (at most 100,000 items) and counts against the render's time budget;
- a render has `RENDER_SECONDS` of time, checked wherever the template calls, loops or writes.

Each refusal is a `jinja2.sandbox.SecurityError` with a message for the rule's author; the loader
reports a constant bomb at the template's `file:line`, a render reports it in the action's failure.
"""

from __future__ import annotations

import contextlib
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2 import Environment
from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import safe_range

MAX_SIZE = 1_000_000  # characters in a string, items in a list, bytes
MAX_INT_BITS = 8192  # about 2,500 decimal digits
RENDER_SECONDS = 10.0
SIZED = (str, bytes, list, tuple)
_deadline: ContextVar[float | None] = ContextVar("rule_render_deadline", default=None)
# Arguments that say how wide or how many times: checked before the call, not after.
WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
COUNT_FILTERS = frozenset({"center", "batch", "slice"})
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_DIGITS = re.compile(r"\d+")


def too_big(what: str, size: int) -> SecurityError:
    return SecurityError(f"{what} would be {size:,} long; rule templates may build at most {MAX_SIZE:,}")


def check_size(value: Any, what: str = "the result") -> Any:
    if isinstance(value, SIZED) and len(value) > MAX_SIZE:
        raise too_big(what, len(value))
    return value


def check_logical_size(value: Any, what: str = "a value") -> Any:
    """Lists can share items (`[b] * 1000` of `[a] * 1000` of ...): count what printing or copying
    `value` would visit, and refuse it past `MAX_SIZE` before anything is built from it."""
    if not isinstance(value, list | tuple | Mapping):
        return check_size(value, what)
    seen, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            seen += len(item)
        elif isinstance(item, Mapping):
            seen += len(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            seen += len(item)
            stack.extend(item)
        else:
            seen += 1
        if seen > MAX_SIZE:
            raise SecurityError(f"{what} is larger than rule templates may build ({MAX_SIZE:,} items or characters)")
    return value


def check_time() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise SecurityError(f"the template ran longer than {RENDER_SECONDS:g} s and was stopped")


@contextlib.contextmanager
def time_budget(seconds: float | None = None) -> Iterator[None]:
    """The render inside has `seconds` (`RENDER_SECONDS`); an outer budget that ends sooner is kept."""
    outer = _deadline.get()
    deadline = time.monotonic() + (RENDER_SECONDS if seconds is None else seconds)
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, SIZED) else len(str(value))


def binop(operator: str, left: Any, right: Any, table: dict[str, Callable[[Any, Any], Any]]) -> Any:
    """`left <operator> right`, refused before it runs when the result would be too large."""
    check_time()
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, SIZED) and isinstance(times, int) and len(seq) * max(times, 0) > MAX_SIZE:
                raise too_big("a repeated value", len(seq) * times)
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"a product of integers past {MAX_INT_BITS} bits is not allowed in rule templates")
    elif operator == "**":
        whole = isinstance(left, int) and isinstance(right, int)
        if whole and abs(left) > 1 and right > 0 and right * left.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"a power past {MAX_INT_BITS} bits is not allowed in rule templates")
    elif operator == "+":
        if isinstance(left, SIZED) and isinstance(right, SIZED) and len(left) + len(right) > MAX_SIZE:
            raise too_big("a joined value", len(left) + len(right))
    elif operator == "%" and isinstance(left, str):
        check_printf(left, right if isinstance(right, tuple) else (right,))
    return check_size(table[operator](left, right))


def check_printf(fmt: str, args: Iterable[Any]) -> None:
    """Widths and precisions in a `%`-format: `'%999999999s'` would build a gigabyte."""
    starred = False
    for match in _PRINTF.finditer(fmt):
        for group in match.groups():
            if group == "*":
                starred = True
            elif group and int(group) > MAX_SIZE:
                raise too_big("a formatted width", int(group))
    if starred:
        for arg in args:
            if isinstance(arg, int) and arg > MAX_SIZE:
                raise too_big("a formatted width", arg)


def check_format(fmt: str, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    """Widths in a `str.format` string; a nested `{}` width takes an argument, so those are checked."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises its own error
    for _, _, spec, _ in fields:
        if not spec:
            continue
        if "{" in spec:
            for arg in [*args, *kwargs.values()]:
                if isinstance(arg, int) and arg > MAX_SIZE:
                    raise too_big("a formatted width", arg)
        for number in _DIGITS.findall(spec):
            if int(number) > MAX_SIZE:
                raise too_big("a formatted width", int(number))


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Before a method call on a string: widths, `join` and `replace` are sized first."""
    check_time()
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if not isinstance(owner, str | bytes):
        return
    numbers = [a for a in (*args, *kwargs.values()) if isinstance(a, int)]
    if name in WIDTH_METHODS:
        width = max(numbers, default=0)
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        size = width * (tabs + 1) if name == "expandtabs" else width
        if size > MAX_SIZE:
            raise too_big(f"{name}()", size)
    elif name == "join" and args and isinstance(args[0], list | tuple):
        items = args[0]
        size = len(owner) * max(len(items) - 1, 0) + sum(_length(i) for i in items)
        if size > MAX_SIZE:
            raise too_big("join()", size)
    elif name == "replace" and len(args) >= 2 and type(args[0]) is type(owner) and args[0]:
        old, new = args[0], args[1]
        size = len(owner) + owner.count(old) * (_length(new) - len(old))  # type: ignore[arg-type]
        if size > MAX_SIZE:
            raise too_big("replace()", size)


def bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that is sized before (its input, widths, counts, join, replace) and after it runs."""

    @wraps(func)  # keeps `jinja_pass_arg`, so Jinja still passes the environment or context
    def filtered(*args: Any, **kwargs: Any) -> Any:
        check_time()
        # Leading environment / eval context / context arguments are not the filter's values.
        skip = 0
        while skip < len(args) and isinstance(args[skip], Environment | EvalContext | Context):
            skip += 1
        values = list(args[skip:])
        for value in (*values, *kwargs.values()):
            check_logical_size(value, f"the input of |{name}")
        numbers = [a for a in (*values[1:], *kwargs.values()) if isinstance(a, int)]
        if name in COUNT_FILTERS and max(numbers, default=0) > MAX_SIZE:
            raise too_big(f"|{name}", max(numbers))
        if name == "indent" and values:
            width = values[1] if len(values) > 1 else kwargs.get("width", 4)
            size = (width if isinstance(width, int) else _length(width)) * (str(values[0]).count("\n") + 1)
            if size > MAX_SIZE:
                raise too_big("|indent", size)
        elif name == "join" and values:
            items = list(values[0])
            sep = values[1] if len(values) > 1 else kwargs.get("d", "")
            size = _length(sep) * max(len(items) - 1, 0) + sum(_length(i) for i in items)
            if size > MAX_SIZE:
                raise too_big("|join", size)
            args = (*args[:skip], items, *values[1:])
        elif name == "replace" and len(values) >= 3 and isinstance(values[1], str) and values[1]:
            text, old, new = str(values[0]), values[1], values[2]
            size = len(text) + text.count(old) * (_length(new) - len(old))
            if size > MAX_SIZE:
                raise too_big("|replace", size)
        elif name == "sum" and values:
            items = list(values[0])
            size = sum(len(i) for i in items if isinstance(i, SIZED))
            if size > MAX_SIZE:
                raise too_big("|sum", size)
            args = (*args[:skip], items, *values[1:])
        elif name == "format" and values and isinstance(values[0], str):
            check_printf(values[0], (*values[1:], *kwargs.values()))
        return check_size(func(*args, **kwargs), f"|{name}")

    return filtered


class BoundedRange(Sequence[int]):
    """The sandbox's `range` (at most 100,000 items); iterating it counts against the render's time."""

    def __init__(self, *args: int) -> None:
        self._range = safe_range(*args)

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: Any) -> Any:
        return self._range[index]

    def __iter__(self) -> Iterator[int]:
        for i, value in enumerate(self._range):
            if i & 1023 == 0:
                check_time()
            yield value

    def __repr__(self) -> str:
        return repr(self._range)


def concat(values: Iterable[Any]) -> str:
    """`~`, captured blocks (`{% set x %}…{% endset %}`, macros) and a template's whole output: stopped as
    soon as the text passes `MAX_SIZE`, or the render its time."""
    check_time()
    parts, total = [], 0
    for value in values:
        part = value if type(value) is str else str(check_logical_size(value, "a joined value"))
        total += len(part)
        if total > MAX_SIZE:
            raise too_big("a text", total)
        parts.append(part)
        if len(parts) & 255 == 0:
            check_time()
    check_time()
    return "".join(parts)
