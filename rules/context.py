"""What rules see at run time: the lazily fetched entity, step placeholders, the shared context."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fieldrelay.redaction import MIN_SECRET, Redactor


class LazyEntity(Mapping[str, Any]):
    """The fetched record, loaded on first use so rules that never look at it cost no API call."""

    def __init__(self, loader: Callable[[], Mapping[str, Any] | None]) -> None:
        self._loader = loader
        self._loaded = False
        self._value: dict[str, Any] | None = None
        self._error: BaseException | None = None

    @property
    def value(self) -> dict[str, Any] | None:
        if not self._loaded:
            if self._error is not None:
                raise self._error  # a failed fetch is not repeated within one event
            try:
                value = self._loader()
            except Exception as exc:
                self._error = exc
                raise
            # Anything but a mapping (a list, an error body) is no record to read fields from.
            self._value, self._loaded = (dict(value) if isinstance(value, Mapping) else None), True
        return self._value

    def __contains__(self, key: object) -> bool:
        value = self.value
        return value is not None and key in value

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def error(self) -> BaseException | None:
        """The failure of the one fetch, if it failed (an `if` that swallowed it must not hide it)."""
        return self._error

    def __getitem__(self, key: str) -> Any:
        if self.value is None:
            raise KeyError(key)
        return self.value[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.value or {})

    def __len__(self) -> int:
        return len(self.value or {})


@dataclass(frozen=True)
class LinkQuery:
    """`linked_id(kind, rule=..., step=...)` as asked: the record an earlier rule created in another
    system for a source entity (by default the event's own)."""

    kind: str  # `synergist.activity`: the target system and record type
    rule: str
    step: str | None
    source: str
    entity_type: str
    entity_id: int | str


LinkLookup = Callable[[LinkQuery], Any]


@dataclass(frozen=True)
class Placeholder:
    """A step result that does not exist yet (dry runs); renders as `<steps.customer.myId>`."""

    path: str

    def __getattr__(self, name: str) -> Placeholder:
        if name.startswith("_"):
            raise AttributeError(name)
        return Placeholder(f"{self.path}.{name}")

    def __getitem__(self, key: Any) -> Placeholder:
        return Placeholder(f"{self.path}[{key!r}]")

    def __str__(self) -> str:
        return f"<{self.path}>"


class RuleContext(dict[str, Any]):
    """The names a rule sees, already merged with the environment's globals (helpers, `range`, ...).

    Expressions evaluate in it without copying the globals again on every call.
    """


def redact(message: str, context: Mapping[str, Any] | None) -> str:
    """Mask every allowlisted env value in a message, in each form a template can give it (see
    fieldrelay.redaction: encoded, upper-cased, reversed, a prefix), and as it appears inside JSON text."""
    env = context.get("env") if context is not None else None
    values = {v for v in (env or {}).values() if isinstance(v, str) and len(v) >= 3}
    if not values:
        return message
    values |= {json.dumps(v, ensure_ascii=False)[1:-1] for v in values}
    # Values of three characters are masked as they are; the redactor needs four to spot forms.
    for value in sorted((v for v in values if len(v) < MIN_SECRET), key=len, reverse=True):
        message = message.replace(value, "***")
    return Redactor(values, mask="***").text(message)
