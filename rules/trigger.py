"""The `when` trigger, compiled at load into plain tuples; reasons are only written on a miss.

view = EventView(event, entity, previous)        # once per event
reason = Trigger(rule.when).match(view)          # None, or the first failing clause

Where a `changed:` field's old and new values come from (`EventView.resolve`, the one place):
- the field is in the event's changeset: the changeset is the truth for it;
- a poller's changeset lists every changed field, so a field missing from it did not change;
- otherwise (ServiceTrade tracks few fields, sends `[]`, or no changeset at all): the new value is the
  record's current value (fetched once per event) and the old one the version fieldrelay saw last
  (`previous`); with no earlier version, only `to`/`not_to` can be judged, on the current value.
`EventView.known` is the same resolution where the event alone decides; the value index
(`rules.candidates`) asks it before any rule runs, and `Trigger.index` is what it files each rule under.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

from fieldrelay.entitystate import EntityVersion, canonical, lookup
from fieldrelay.events import ChangeEvent, FieldChange
from rules.catalog import canonical_entity
from rules.context import LazyEntity
from rules.errors import show
from rules.when import WhenBase

Checks = tuple[tuple[str, Any], ...]
_SCALAR = (str, int, float)

# Where a transition's value came from, as traces and dry runs say it.
CHANGESET = "changeset"
SNAPSHOT = "snapshot"
CURRENT = "current value"
UNKNOWN = "no earlier version known"


class Resolved(NamedTuple):
    """One field's transition for one event: its values, and where each came from."""

    old: Any
    new: Any
    old_from: str
    new_from: str

    def describe(self) -> dict[str, Any]:
        """For traces: `{old, new, old_from, new_from}`."""
        return self._asdict()


class EventView:
    """What every trigger reads of one event, worked out once per event rather than once per rule.

    `previous` is the version of the record fieldrelay saw before this event (None: no earlier
    version known); `entity` is the current record, fetched only if some field needs it.
    """

    __slots__ = (
        "_changed_names",
        "action",
        "changes",
        "complete",
        "entity",
        "entity_key",
        "event",
        "previous",
        "resolved",
        "source",
        "via",
    )

    def __init__(self, event: ChangeEvent, entity: LazyEntity, previous: EntityVersion | None = None) -> None:
        self.event, self.entity, self.previous = event, entity, previous
        self.source, self.via, self.action = event.source, event.via, event.action
        self.entity_key = canonical_entity(event.entity.type)
        self.changes = event.changes
        self.complete = event.complete_changes
        self.resolved: dict[str, Resolved | str] = {}
        self._changed_names: str | None = None

    @property
    def changed_names(self) -> str:
        """`status, type` for reasons; written once per event, and only if some rule misses on it."""
        if self._changed_names is None:
            self._changed_names = show(", ".join(sorted(self.changes or ())), quote=False) or "nothing"
        return self._changed_names

    def resolve(self, name: str) -> Resolved | str:
        """The transition of `name` for this event, or why it has none (a reason, for every rule alike).

        A failed fetch of the current record raises: the event is retried, never judged on nothing.
        """
        found = self.resolved.get(name)
        if found is None:
            found = self._from_event(name)
            if found is None:
                found = self._from_record(name)
            self.resolved[name] = found
        return found

    def known(self, name: str) -> Resolved | str | None:
        """`resolve(name)` when the event alone answers it; None when that needs the current record.

        Never fetches, so the value index may ask before any rule runs (see `rules.candidates`).
        """
        found = self.resolved.get(name)
        if found is None:
            found = self._from_event(name)
            if found is not None:
                self.resolved[name] = found
        return found

    def read(self, name: str) -> Resolved | str:
        """`resolve(name)` for a field `known` left to the record: reads it (once per event) and compares."""
        found = self.resolved.get(name)
        if found is None:
            found = self.resolved[name] = self._from_record(name)
        return found

    def seen(self, name: str) -> Resolved | None:
        """The transition of `name` if it is already known or is in the changeset; never fetches (traces)."""
        found = self.resolved.get(name)
        changes = self.changes
        if found is None and changes and (name in changes or name.partition(".")[0] in changes):
            found = self.resolve(name)
        return found if isinstance(found, Resolved) else None

    def _from_event(self, name: str) -> Resolved | str | None:
        """The changeset's answer, or the reason there is none that needs no record; None: read the record."""
        changes = self.changes
        if changes is not None:
            change = changes.get(name)
            if change is not None:
                return Resolved(change.old, change.new, CHANGESET, CHANGESET)
            top, _, inner = name.partition(".")
            if inner and top in changes:
                return _inside(changes[top], inner, f"when.changed.{name}", name)
            if self.complete:
                return f"when.changed.{name}: the event did not change {name!r} (changed: {self.changed_names})"
        if self.action == "deleted":
            return f"when.changed.{name}: {self._why()}, and a deleted record has no current value"
        return None

    def _why(self) -> str:
        changes = self.changes
        if changes == {}:
            return "the event's changeset was empty"
        return "not in the event's changeset" if changes else "the event carried no changeset"

    def _from_record(self, name: str) -> Resolved | str:
        """The current record against the version seen last (fetches the record, once per event)."""
        record = self.entity.value
        if record is None:
            return f"when.changed.{name}: {self._why()}, and the entity could not be loaded"
        found, new = lookup(record, name)
        if not found:
            return f"when.changed.{name}: {self._why()}, and the entity has no field {name!r}"
        previous = self.previous
        known, old = previous.field(name) if previous is not None else (False, None)
        if not known:
            if previous is not None and previous.unchanged(name, record):
                return (
                    f"when.changed.{name}: {name!r} did not change since the version fieldrelay saw last "
                    f"(still {show(new)}; compared by digest, the field being past FIELDRELAY_ENTITY_STATE_MAX_BYTES)"
                )
            return Resolved(None, new, UNKNOWN, CURRENT)
        if canonical(old) == canonical(new):
            return (
                f"when.changed.{name}: {name!r} did not change since the version fieldrelay saw last "
                f"(still {show(new)})"
            )
        return Resolved(old, new, SNAPSHOT, CURRENT)


def _inside(change: FieldChange, inner: str, where: str, name: str) -> Resolved | str:
    """`source.status` when the changeset lists `source` as a whole (a poller's top-level diff)."""
    had_old, old = lookup(change.old, inner) if isinstance(change.old, Mapping) else (False, None)
    had_new, new = lookup(change.new, inner) if isinstance(change.new, Mapping) else (False, None)
    if (had_old, canonical(old)) == (had_new, canonical(new)):
        return f"{where}: the event changed {name.partition('.')[0]!r} but not {name!r}"
    return Resolved(old, new, CHANGESET, CHANGESET)


# What a reason says about the value it judged, by where the value came from.
_HAD = {CHANGESET: "event had", SNAPSHOT: "the version seen last had", CURRENT: "the record has"}


class Trigger:
    """A `when` as the engine runs it: the same clauses, in the same order, as plain Python values."""

    __slots__ = ("actions", "changed", "compiled", "entities", "index", "source", "via", "when")

    def __init__(self, when: WhenBase) -> None:
        self.when = when
        self.source = when.source
        self.via = None if when.via == "any" else when.via
        self.entities = when.entity_keys
        self.actions = None if when.action is None else frozenset(when.action)
        self.changed: tuple[tuple[str, Checks, tuple[_Check, ...]], ...] = tuple(
            (name, tuple(t.checks), tuple(_Check(name, kind, wanted) for kind, wanted in t.checks))
            for name, t in when.changed.items()
        )
        self.compiled: Callable[[EventView], str | None] = _compile(self)
        self.index = _index(self.changed)

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
        for name, checks, compiled in self.changed:
            change = view.resolve(name)
            if type(change) is str:
                return change
            assert isinstance(change, Resolved)
            if change.old_from == UNKNOWN:
                for kind, _wanted_value in checks or (("any", None),):
                    if kind not in ("to", "not_to"):
                        what = "any change" if kind == "any" else repr(kind)
                        return (
                            f"when.changed.{name}: no earlier version known (fieldrelay has no earlier value "
                            f"of {name!r} for this record), so {what} cannot be checked"
                        )
            for check in compiled:  # inlined `_Check.passes`: this loop runs for most candidate rules
                seen = change.old if check.old else change.new
                wanted, text = check.wanted, check.text
                if check.scalar:
                    hit = wanted == seen or (text is not None and isinstance(seen, _SCALAR) and text == str(seen))
                else:
                    hit = same(wanted, seen)
                if (not hit) if not check.negate else hit:
                    had = _HAD[change.old_from if check.old else change.new_from]
                    return f"{check.opening}{had} {show(seen)}"
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
    for name, _, compiled in trigger.changed:
        # Only a changeset entry is checked here; a field resolved any other way is the reference's.
        lines.append(f"    change = changes.get({bind(name)})")
        lines.append("    if change is None: return reference(view)")
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


def value_keys(value: Any) -> tuple[Hashable, ...] | None:
    """Where the value index files `value`: whenever `same(wanted, seen)`, the two share a key.

    A string is filed under itself; a number or bool under its text and its value (`to: 5` finds "5", 5 and
    5.0; True finds 1); None under its own key. Anything else (a list, a mapping, a subclass) gives None:
    the index cannot tell, and leaves the verdict to `same`.
    """
    kind = type(value)
    if kind is str:
        return (value,)
    if kind is int or kind is float or kind is bool:
        return (str(value), ("number", value))
    if value is None:
        return (_NONE_KEY,)
    return None


_NONE_KEY = ("none",)


class Index(NamedTuple):
    """What the value index knows of a trigger: the literal values its first `changed:` field must take.

    `Index("status", old=False, keys=..., needs_old=True)` for `changed: {status: {from: a, to: b}}`: the
    new value must be `b`; and with no earlier version known the trigger reports that instead (kept).
    """

    name: str
    old: bool  # the values are `from`'s (the old value); else `to`'s (the new one)
    keys: frozenset[Hashable]
    needs_old: bool  # some check of the field reads the old value (`from`, `not_from`, or any change)


def _index(changed: tuple[tuple[str, Checks, tuple[_Check, ...]], ...]) -> Index | None:
    """The first field only: it is resolved first, so selecting by it reads nothing the trigger would not."""
    if not changed:
        return None
    name, checks, _ = changed[0]
    kinds = dict(checks)
    needs_old = not kinds or any(kind not in ("to", "not_to") for kind in kinds)
    for kind in ("to", "from"):
        if kind in kinds:
            wanted = kinds[kind]
            keys: set[Hashable] = set()
            for value in wanted if isinstance(wanted, list) else [wanted]:
                found = value_keys(value)
                if found is None:
                    break
                keys.update(found)
            else:
                return Index(name, kind == "from", frozenset(keys), needs_old)
    return None


def _wanted(value: Any) -> str:
    if isinstance(value, list):
        return "one of " + ", ".join(repr(v) for v in value)
    return repr(value)


def _one(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else values
