"""The `when` trigger, compiled at load into plain tuples; reasons are only written on a miss.

    view = EventView(event, entity)                  # once per event
    reason = Trigger(rule.when).match(view)          # None, or the first failing clause
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fieldrelay.events import ChangeEvent
from rules.catalog import canonical_entity
from rules.context import LazyEntity

if TYPE_CHECKING:
    from rules.models import WhenBase

Checks = tuple[tuple[str, Any], ...]


class EventView:
    """What every trigger reads of one event, worked out once per event rather than once per rule."""

    __slots__ = ("_changed_names", "action", "changes", "entity", "entity_key", "event", "source", "via")

    def __init__(self, event: ChangeEvent, entity: LazyEntity) -> None:
        self.event, self.entity = event, entity
        self.source, self.via, self.action = event.source, event.via, event.action
        self.entity_key = canonical_entity(event.entity.type)
        self.changes = event.changes
        self._changed_names: str | None = None

    @property
    def changed_names(self) -> str:
        """`status, type` for reasons; written once per event, and only if some rule misses on it."""
        if self._changed_names is None:
            self._changed_names = show(", ".join(sorted(self.changes or ())), quote=False) or "nothing"
        return self._changed_names


class Trigger:
    """A `when` as the engine runs it: the same clauses, in the same order, as plain Python values."""

    __slots__ = ("actions", "changed", "entities", "source", "via", "when")

    def __init__(self, when: WhenBase) -> None:
        self.when = when
        self.source = when.source
        self.via = None if when.via == "any" else when.via
        self.entities = when.entity_keys
        self.actions = None if when.action is None else frozenset(when.action)
        self.changed: tuple[tuple[str, Checks, tuple[_Check, ...], str], ...] = tuple(
            (name, tuple(t.checks), tuple(_Check(name, kind, wanted) for kind, wanted in t.checks),
             f"when.changed.{name}: the event did not change {name!r} (changed: ")
            for name, t in when.changed.items()
        )

    def match(self, view: EventView) -> str | None:
        """None when the trigger matches the event, else the first failing clause and what was seen."""
        if self.source != view.source:
            return f"when.source: wanted {self.source!r}, event had {view.source!r}"
        if self.via is not None and self.via != view.via:
            return f"when.via: wanted {self.via!r}, event had {view.via!r}"
        if self.entities is not None and view.entity_key not in self.entities:
            wanted = _wanted(_one(self.when.entity or []))
            return f"when.entity: wanted {wanted}, event had {show(view.event.entity.type)}"
        if self.actions is not None and view.action not in self.actions:
            return f"when.action: wanted {_wanted(_one(list(self.when.action or ())))}, event had {view.action!r}"
        changes = view.changes
        for name, checks, compiled, missing in self.changed:
            if changes is None:
                reason = _without_changeset(name, checks, compiled, view.entity)
                if reason is not None:
                    return reason
                continue
            change = changes.get(name)
            if change is None:
                return missing + view.changed_names + ")"
            for check in compiled:
                if not check.passes(change.old, change.new):
                    return check.reason(change.old, change.new, "event had")
        return None


def match_when(when: WhenBase, event: ChangeEvent, entity: LazyEntity) -> str | None:
    """`Trigger(when).match(EventView(event, entity))`, for one-off checks."""
    return Trigger(when).match(EventView(event, entity))


def _without_changeset(name: str, checks: Checks, compiled: tuple[_Check, ...], entity: LazyEntity) -> str | None:
    where = f"when.changed.{name}"
    for kind, _ in checks or (("any", None),):
        if kind not in ("to", "not_to"):
            what = "any change" if kind == "any" else repr(kind)
            return f"{where}: the event carried no changeset, so {what} cannot be checked"
    if entity.value is None:
        return f"{where}: the event carried no changeset and the entity could not be loaded"
    found, current = field_value(entity.value, name)
    if not found:
        return f"{where}: the event carried no changeset and the entity has no field {name!r}"
    for check in compiled:
        if not check.passes(None, current):
            return check.reason(None, current, "the entity has")
    return None


class _Check:
    """One of `from`/`to`/`not_from`/`not_to`, with its reason's opening written at load."""

    __slots__ = ("negate", "old", "opening", "scalar", "wanted")

    def __init__(self, name: str, kind: str, wanted: Any) -> None:
        self.wanted, self.old, self.negate = wanted, kind in ("from", "not_from"), kind.startswith("not_")
        self.scalar = not isinstance(wanted, list)
        but = "anything but " if self.negate else ""
        self.opening = f"when.changed.{name}.{kind}: wanted {but}{_wanted(wanted)}, "

    def passes(self, old: Any, new: Any) -> bool:
        seen = old if self.old else new
        hit = (self.scalar and self.wanted == seen) or same(self.wanted, seen)
        return not hit if self.negate else bool(hit)

    def reason(self, old: Any, new: Any, had: str) -> str:
        return f"{self.opening}{had} {show(old if self.old else new)}"


def show(value: Any, *, quote: bool = True, limit: int = 120) -> str:
    """A value for a reason line: repr'd, and cut short so one huge field cannot flood the logs."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def same(wanted: Any, seen: Any) -> bool:
    """YAML `to: 5` should match a changeset that carries "5"."""
    if isinstance(wanted, list):
        return any(same(w, seen) for w in wanted)
    if wanted == seen:
        return True
    scalar = (str, int, float)
    return isinstance(wanted, scalar) and isinstance(seen, scalar) and str(wanted) == str(seen)


def _wanted(value: Any) -> str:
    if isinstance(value, list):
        return "one of " + ", ".join(repr(v) for v in value)
    return repr(value)


def _one(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values


def field_value(record: Mapping[str, Any], field: str) -> tuple[bool, Any]:
    """Dotted lookup (`source.status`); (found, value)."""
    if field in record:
        return True, record[field]
    value: Any = record
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value
