"""The `when` trigger, compiled at load into plain tuples; reasons are only written on a miss.

view = EventView(event, entity)                  # once per event
reason = Trigger(rule.when).match(view)          # None, or the first failing clause
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fieldrelay.events import ChangeEvent
from rules.catalog import canonical_entity
from rules.context import LazyEntity
from rules.errors import show
from rules.when import WhenBase

Checks = tuple[tuple[str, Any], ...]
_SCALAR = (str, int, float)


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

    __slots__ = ("actions", "changed", "compiled", "entities", "source", "via", "when")

    def __init__(self, when: WhenBase) -> None:
        self.when = when
        self.source = when.source
        self.via = None if when.via == "any" else when.via
        self.entities = when.entity_keys
        self.actions = None if when.action is None else frozenset(when.action)
        self.changed: tuple[tuple[str, Checks, tuple[_Check, ...], str], ...] = tuple(
            (
                name,
                tuple(t.checks),
                tuple(_Check(name, kind, wanted) for kind, wanted in t.checks),
                f"when.changed.{name}: the event did not change {name!r} (changed: ",
            )
            for name, t in when.changed.items()
        )
        self.compiled: Callable[[EventView], str | None] = _compile(self)

    def match(self, view: EventView) -> str | None:
        """None when the trigger matches the event, else the first failing clause and what was seen.

        This is the reference; the engine runs `compiled`, the same steps written out for this one rule.
        """
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
            for check in compiled:  # inlined `_Check.passes`: this loop runs for most candidate rules
                seen = change.old if check.old else change.new
                wanted, text = check.wanted, check.text
                if check.scalar:
                    hit = wanted == seen or (text is not None and isinstance(seen, _SCALAR) and text == str(seen))
                else:
                    hit = same(wanted, seen)
                if (not hit) if not check.negate else hit:
                    return f"{check.opening}event had {show(seen)}"
        return None


_MAKERS: dict[str, Callable[..., Callable[[EventView], str | None]]] = {}


def _compile(trigger: Trigger) -> Callable[[EventView], str | None]:
    """`trigger.match` as one function with this rule's clauses written out and its values bound.

    Every miss returns what `match` returns: the cheap clauses call `match` itself for the reason.
    Rules of the same shape share one code object; only the values they close over differ.
    """
    values: list[Any] = []

    def bind(value: Any) -> str:
        values.append(value)
        return f"k_{len(values)}"

    lines = [f"    if view.source != {bind(trigger.source)}: return reference(view)"]
    if trigger.via is not None:
        lines.append(f"    if view.via != {bind(trigger.via)}: return reference(view)")
    if trigger.entities is not None:
        lines.append(f"    if view.entity_key not in {bind(trigger.entities)}: return reference(view)")
    if trigger.actions is not None:
        lines.append(f"    if view.action not in {bind(trigger.actions)}: return reference(view)")
    if trigger.changed:
        lines += ["    changes = view.changes", "    if changes is None: return reference(view)"]
    for name, _, compiled, missing in trigger.changed:
        lines.append(f"    change = changes.get({bind(name)})")
        lines.append(f"    if change is None: return {bind(missing)} + view.changed_names + ')'")
        for check in compiled:
            lines.append(f"    seen = change.{'old' if check.old else 'new'}")
            wanted = bind(check.wanted)
            if not check.scalar:
                hit = f"same({wanted}, seen)"
            elif check.text is None:
                hit = f"{wanted} == seen"
            else:
                hit = f"({wanted} == seen or (isinstance(seen, _SCALAR) and {bind(check.text)} == str(seen)))"
            miss = hit if check.negate else f"not {hit}"
            lines.append(f"    if {miss}: return {bind(check.opening + 'event had ')} + show(seen)")
    lines.append("    return None")
    params = ", ".join(["reference", *(f"k_{i}" for i in range(1, len(values) + 1))])
    source = "\n".join([f"def make({params}):", "  def match(view):", *lines, "  return match"])
    make = _MAKERS.get(source)
    if make is None:
        namespace: dict[str, Any] = {"show": show, "same": same, "_SCALAR": _SCALAR}
        exec(compile(source, "<rule trigger>", "exec"), namespace)
        make = _MAKERS[source] = namespace["make"]
    return make(trigger.match, *values)


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

    __slots__ = ("negate", "old", "opening", "scalar", "text", "wanted")

    def __init__(self, name: str, kind: str, wanted: Any) -> None:
        self.wanted, self.old, self.negate = wanted, kind in ("from", "not_from"), kind.startswith("not_")
        self.scalar = not isinstance(wanted, list)
        self.text = str(wanted) if isinstance(wanted, _SCALAR) else None  # see `same`
        but = "anything but " if self.negate else ""
        self.opening = f"when.changed.{name}.{kind}: wanted {but}{_wanted(wanted)}, "

    def passes(self, old: Any, new: Any) -> bool:
        hit = same(self.wanted, old if self.old else new)
        return not hit if self.negate else hit

    def reason(self, old: Any, new: Any, had: str) -> str:
        return f"{self.opening}{had} {show(old if self.old else new)}"


def same(wanted: Any, seen: Any) -> bool:
    """YAML `to: 5` should match a changeset that carries "5"."""
    if isinstance(wanted, list):
        return any(same(w, seen) for w in wanted)
    if wanted == seen:
        return True
    return isinstance(wanted, _SCALAR) and isinstance(seen, _SCALAR) and str(wanted) == str(seen)


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
