"""The compiled trigger the engine runs says exactly what the reference `Trigger.match` says."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from fieldrelay.entitystate import EntityVersion
from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from rules.context import LazyEntity
from rules.trigger import EventView, Trigger
from rules.when import When

WHEN: TypeAdapter[Any] = TypeAdapter(When)
FIELDS = ["status", "type", "source.status"]
values = st.one_of(
    st.none(),
    st.sampled_from(["completed", "scheduled", "5", ""]),
    st.integers(-2, 6),
    st.booleans(),
    st.floats(allow_nan=False, width=16),
)
wanted = st.one_of(values, st.lists(values, max_size=3))
transition = st.one_of(
    st.just(True),
    st.dictionaries(st.sampled_from(["from", "to", "not_from", "not_to"]), wanted, max_size=3),
)
whens = st.fixed_dictionaries(
    {"source": st.sampled_from(["servicetrade", "synergist"])},
    optional={
        "via": st.sampled_from(["webhook", "poll", "any"]),
        "entity": st.sampled_from(["job", ["job", "activity"], "activity"]),  # synergist has both
        "action": st.sampled_from(["updated", ["created", "updated"], "deleted"]),
        "changed": st.dictionaries(st.sampled_from(FIELDS), transition, max_size=2),
    },
)
events = st.builds(
    lambda source, via, action, entity, changes: ChangeEvent(
        source=source,
        via=via,
        action=action,
        entity=EntityRef(type=entity, id=7),
        occurred_at=1,
        changes=None if changes is None else {k: FieldChange(old=o, new=n) for k, (o, n) in changes.items()},
    ),
    st.sampled_from(["servicetrade", "synergist"]),
    st.sampled_from(["webhook", "poll"]),
    st.sampled_from(["created", "updated", "deleted"]),
    st.sampled_from(["job", "activity", "job_item"]),
    st.none() | st.dictionaries(st.sampled_from(FIELDS), st.tuples(values, values), max_size=3),
)
records = st.none() | st.fixed_dictionaries(
    {}, optional={"status": values, "type": values, "source": st.fixed_dictionaries({"status": values})}
)
# The version seen before the event: none, or some fields of it (a partial one knows fewer).
previous = st.none() | st.builds(EntityVersion, records.filter(lambda r: r is not None), st.booleans())


@settings(max_examples=500, deadline=None)
@given(when=whens, event=events, record=records, before=previous)
def test_compiled_and_reference_agree(when, event, record, before):
    """Changeset, a poll's complete changeset, snapshot against current value, and first sightings."""
    if when["source"] == "servicetrade" and "entity" in when:
        when["entity"] = "job"
    trigger = Trigger(WHEN.validate_python(when))
    view = EventView(event, LazyEntity(lambda: record), before)
    assert trigger.compiled(view) == trigger.match(view)
    again = EventView(event, LazyEntity(lambda: record), before)  # a fresh view: nothing cached
    assert trigger.match(again) == trigger.match(view)


@settings(max_examples=300, deadline=None)
@given(when=whens, event=events, record=records, before=previous)
def test_a_changeset_entry_is_the_truth_whatever_the_snapshot_says(when, event, record, before):
    """For fields the changeset lists, neither the record nor the earlier version changes the verdict."""
    if when["source"] == "servicetrade" and "entity" in when:
        when["entity"] = "job"
    trigger = Trigger(WHEN.validate_python(when))
    if event.changes is None or not set(trigger.when.changed) <= set(event.changes):
        return
    with_snapshot = EventView(event, LazyEntity(lambda: record), before)
    without = EventView(event, LazyEntity(lambda: None), None)
    assert trigger.match(with_snapshot) == trigger.match(without)
