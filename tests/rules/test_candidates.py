"""Candidates by value: the selection leaves out only rules that cannot match, and changes no verdict."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldrelay.entitystate import EntityVersion, lookup
from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from rules import RuleSet, evaluate, rule_from_json
from rules.context import LazyEntity
from rules.dryrun import explain
from rules.engine import EventScope, evaluate_rules, judge
from rules.models import Rule, Verdict
from rules.trigger import same, value_keys
from tests.rules.conftest import THEN, CountingLoader, job_record
from tests.rules.test_trigger import FIELDS, values

NOW = datetime(2024, 1, 1, tzinfo=UTC)
# The Transitions section promises these in traces: a rule that would say one is never left out.
TRANSITION_REASONS = ("no earlier version known", "did not change since", "could not be loaded", "has no field")


def make_rules(specs: list[dict[str, Any]]) -> list[Rule]:
    """Rules as the worker rebuilds them from JSON, one per spec, in file order."""
    out = []
    for line, spec in enumerate(specs, start=1):
        digest = hashlib.blake2b(json.dumps([line, spec], sort_keys=True).encode(), digest_size=12).hexdigest()
        data = {"digest": digest, "file": "gen.yaml", "line": line, "spec": spec, "vars": {}}
        out.append(rule_from_json({**data, "lines": {"then": [line], "on_failure": []}}))
    return out


def referenced(rule: Rule) -> Rule:
    """A copy of `rule` that runs the reference `Trigger.match` instead of the compiled trigger."""
    copy = dataclasses.replace(rule)
    copy.match = copy.trigger.match if copy.enabled else rule.match
    return copy


def shown(verdicts: list[Verdict]) -> list[tuple[str, bool, str]]:
    return [(v.rule.name, v.matched, v.reason) for v in verdicts]


# Few values, so that rules match often; with the pairs `same` equates across types (5, 5.0 and "5"; True,
# 1 and 1.0; "True"), and lists and mappings, which the index cannot file.
few = st.sampled_from(["completed", "scheduled", "5", "", 5, 5.0, 1, 1.0, True, 0, False, None, "True", "1"])
small = st.one_of(few, few, few, values)
carried = small | st.lists(small, max_size=2) | st.fixed_dictionaries({"a": small})
IFS = [None, "'type' in changes", "changes.status is defined", "entity.type == 'repair'", "event.entity.id > 3"]
events = st.builds(
    lambda source, via, action, changes: ChangeEvent(
        source=source,
        via=via,
        action=action,
        entity=EntityRef(type="job", id=7),
        occurred_at=1,
        changes=None if changes is None else {k: FieldChange(old=o, new=n) for k, (o, n) in changes.items()},
    ),
    st.sampled_from(["servicetrade", "synergist"]),
    st.sampled_from(["webhook", "poll"]),
    st.sampled_from(["created", "updated", "deleted"]),
    st.one_of(  # none, empty (ServiceTrade's `changeset: []`), or some fields
        st.none(),
        st.just({}),
        st.dictionaries(st.sampled_from(FIELDS), st.tuples(carried, carried), min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(FIELDS), st.tuples(carried, carried), min_size=1, max_size=3),
    ),
)
nested = {"source": st.fixed_dictionaries({"status": carried})}
records = st.one_of(  # none (could not be loaded), some fields, or the two rules mostly ask about
    st.none(),
    st.fixed_dictionaries({}, optional={"status": carried, "type": carried, **nested}),
    st.fixed_dictionaries({"status": carried, "type": carried}, optional=nested),
)
previous = st.none() | st.builds(EntityVersion, records.filter(lambda r: r is not None), st.booleans())


def twins(value: Any) -> list[Any]:
    """`value` and what `same` takes for it in another type: 5, 5.0 and "5"; True, 1, 1.0 and "True"."""
    out = [value]
    if type(value) in (int, float, bool) and value == value and abs(value) < 1e15:
        out += [str(value), float(value)] + ([int(value)] if value == int(value) else [])
        out += [value == 1] if value in (0, 1) else []
    elif type(value) is str and value.lstrip("-").isdigit():
        out += [int(value)]
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], ChangeEvent, Any, EntityVersion | None]:
    """An event, the record now and the version seen before, and rules that mostly listen for that event and
    want, field by field, the values it has (so that a left-out rule that could match would show)."""
    event, record, before = draw(events), draw(records), draw(previous)

    def values_of(field: str, old: bool) -> st.SearchStrategy[Any]:
        change = (event.changes or {}).get(field)
        found = [] if change is None else [change.old if old else change.new]
        version = (before.record if old and before else None) if old else record
        if version and field.partition(".")[0] in version:
            found.append(lookup(version, field)[1])
        pool = st.sampled_from([twin for value in found for twin in twins(value)]) if found else small
        return st.one_of(pool, pool, pool, small, st.lists(pool | small, max_size=3), st.just({"a": 1}))

    def transition(field: str) -> st.SearchStrategy[Any]:
        to, old = values_of(field, False), values_of(field, True)
        return st.one_of(
            st.just(True),
            st.fixed_dictionaries({}, optional={"from": old, "to": to, "not_from": old, "not_to": to}),
            st.fixed_dictionaries({"to": to}),
            st.fixed_dictionaries({"from": old}),
            st.fixed_dictionaries({"from": old, "to": to}),
        )

    def rule() -> st.SearchStrategy[dict[str, Any]]:
        fields = st.lists(st.sampled_from(FIELDS), unique=True, max_size=3)
        changed = fields.flatmap(lambda names: st.fixed_dictionaries({name: transition(name) for name in names}))
        when = st.fixed_dictionaries(
            {"source": st.sampled_from([event.source] * 3 + ["servicetrade", "synergist"]), "changed": changed},
            optional={
                "via": st.sampled_from(["webhook", "poll", "any"]),
                "entity": st.sampled_from(["job", ["job", "activity"], "activity"]),
                "action": st.sampled_from(["updated", ["created", "updated"], "deleted"]),
            },
        )
        return st.fixed_dictionaries(
            {
                "enabled": st.sampled_from([True, True, True, False]),
                "priority": st.integers(0, 2),
                "when": when,
                "if": st.sampled_from([None, None, None, *IFS]),
            }
        )

    # Often a rule first in run order whose `if` asks what `changes` holds: reading a field early would show.
    reader = st.fixed_dictionaries(
        {
            "enabled": st.just(True),
            "priority": st.just(3),
            "when": st.just({"source": event.source}),
            "if": st.sampled_from([i for i in IFS if i and "changes" in i]),
        }
    )
    return draw(st.lists(reader, max_size=1)) + draw(st.lists(rule(), min_size=1, max_size=8)), event, record, before


def build(specs: list[dict[str, Any]]) -> RuleSet:
    """The drawn specs as a rule set: named r0, r1, ... in file order, each with one action."""
    written = []
    for i, drawn in enumerate(specs):
        spec = {k: v for k, v in drawn.items() if v is not None} | {"name": f"r{i}"}
        spec["then"] = [{"http.request": {"url": "https://example.com"}}]
        if drawn["when"]["source"] == "servicetrade" and "entity" in drawn["when"]:
            spec["when"] = drawn["when"] | {"entity": "job"}  # the only one of the three ServiceTrade has
        written.append(spec)
    return RuleSet(make_rules(written), [], "generated")


def outcome(rules: Any, event: ChangeEvent, record: Any, before: EntityVersion | None, fails: bool) -> Any:
    """(verdicts, derived transitions, fetches), or the error the fetch raised."""

    def load() -> Any:
        loader.calls += 1
        if fails:
            raise ConnectionError("ServiceTrade is down")
        return record

    loader = CountingLoader()
    scope = EventScope(event, LazyEntity(load), NOW, {}, before)
    try:
        verdicts = judge(rules, scope)
    except ConnectionError:
        return "fetch failed", loader.calls
    return shown(verdicts), scope.derived(), loader.calls


@settings(max_examples=1000, deadline=None)
@given(scenario=scenarios(), fails=st.sampled_from([False, False, False, True]))
def test_selection_by_value_keeps_every_verdict_of_the_plain_selection(scenario, fails):
    """Changeset-covered or not (empty, none, a poll's), first sighting or not, a failing fetch, disabled
    rules, priorities, `if`s that read `changes` or the record: selecting by value gives the verdicts the
    reference matcher gives over the plain (source, type, action) selection, less rules that cannot match."""
    specs, event, record, before = scenario
    ruleset = build(specs)
    plain = [referenced(rule) for rule in ruleset.candidates(event)]
    expected = outcome(plain, event, record, before, fails)
    selected = outcome(ruleset.candidate_tuple(event), event, record, before, fails)
    if expected[0] == "fetch failed":
        assert selected == expected  # the same fetch, failing the same way
        return
    assert selected[0] != "fetch failed"
    (want, want_derived, want_calls), (got, got_derived, got_calls) = expected, selected
    assert got_calls == want_calls  # the record is read exactly when the plain selection reads it
    assert got_derived == want_derived  # what the pipeline stores with the event, and `changes` shows
    kept = {name for name, _, _ in got}
    assert got == [v for v in want if v[0] in kept]  # same verdicts, same order
    for name, matched, reason in want:
        if name in kept:
            continue
        rule = ruleset.get(name)
        assert rule is not None and rule.enabled and not matched
        first = next(iter(rule.when.changed), None)
        assert reason.startswith("when.via:") or reason.startswith(f"when.changed.{first}"), reason
        assert not any(sentence in reason for sentence in TRANSITION_REASONS), reason


@settings(max_examples=500, deadline=None)
@given(w=small | st.lists(small, max_size=3) | st.just({"a": 1}), seen=carried)
def test_value_keys_find_every_value_same_accepts(w, seen):
    """`same(w, seen)` implies the index files them under a shared key (or cannot file one of them)."""
    found = [value_keys(x) for x in (w if isinstance(w, list) else [w])]
    mine = value_keys(seen)
    if same(w, seen) and mine is not None and None not in found:
        assert {k for keys in found if keys for k in keys} & set(mine)


def test_a_job_update_meets_only_the_rules_for_its_new_status(load, make_event):
    ruleset = load(
        "rules:\n"
        + "".join(
            f"  - name: to-{s}\n    when: {{source: servicetrade, entity: job, changed: {{status: {{to: {s}}}}}}}\n"
            + THEN
            for s in ("completed", "canceled", "scheduled")
        )
        + "  - name: number\n    when: {source: servicetrade, changed: {status: {to: 5}}}\n"
        + THEN
        + "  - name: either\n    when: {source: servicetrade, changed: {status: {to: [canceled, completed]}}}\n"
        + THEN
        + "  - name: not-canceled\n    when: {source: servicetrade, changed: {status: {not_to: canceled}}}\n"
        + THEN
        + "  - name: from-scheduled\n    when: {source: servicetrade, changed: {status: {from: scheduled}}}\n"
        + THEN
        + "  - name: any-change\n    when: {source: servicetrade, changed: {status: true}}\n"
        + THEN
        + "  - name: off\n    enabled: false\n    when: {source: servicetrade, changed: {status: {to: canceled}}}\n"
        + THEN
        + "  - name: polls\n    when: {source: servicetrade, via: poll}\n"
        + THEN
    )

    def names(changes: dict[str, tuple[Any, Any]]) -> list[str]:
        return [v.rule.name for v in evaluate(ruleset, make_event(changes=changes), CountingLoader())]

    assert names({"status": ("scheduled", "completed")}) == [
        "to-completed",
        "either",
        "not-canceled",
        "from-scheduled",
        "any-change",
        "off",  # disabled: still judged, and says so
    ]
    assert names({"status": ("new", "5")}) == ["number", "not-canceled", "any-change", "off"]  # `to: 5` takes "5"
    assert [(v.rule.name, v.reason) for v in evaluate(ruleset, make_event(changes={}), CountingLoader())][-1] == (
        "off",
        "disabled",
    )
    assert len(ruleset.candidate_tuple(make_event())) == 9  # `polls` wants another via
    assert len(ruleset.candidates(make_event())) == 10  # the dry run's candidates: source, entity, action


def test_rules_on_a_field_the_changeset_leaves_out_are_judged_on_the_record(load, make_event):
    ruleset = load(
        "rules:\n"
        "  - name: done\n    when: {source: servicetrade, changed: {status: {to: completed}}}\n"
        + THEN
        + "  - name: canceled\n    when: {source: servicetrade, changed: {status: {to: canceled}}}\n"
        + THEN
        + "  - name: from-scheduled\n    when: {source: servicetrade, changed: {status: {from: scheduled, to: x}}}\n"
        + THEN
    )

    def judged(changes: Any, previous: dict[str, Any] | None, action: str = "updated") -> list[tuple[str, str]]:
        loader = CountingLoader(job_record(status="completed"))
        stored = None if previous is None else EntityVersion(previous)
        verdicts = evaluate(ruleset, make_event(changes=changes, action=action), loader, previous=stored)
        assert loader.calls == (0 if action == "deleted" else 1)
        return [(v.rule.name, v.reason) for v in verdicts]

    for changes in ({}, None, {"type": ("a", "b")}):
        assert judged(changes, {"status": "scheduled"}) == [("done", "matched")]  # the record says completed
        first = judged(changes, None)  # no earlier version: `from` cannot be judged, and the rule says so
        assert [name for name, _ in first] == ["done", "from-scheduled"]
        assert "no earlier version known" in first[1][1]
        same_as_before = judged(changes, {"status": "completed"})
        assert [name for name, _ in same_as_before] == ["done", "canceled", "from-scheduled"]
        assert all("did not change since the version fieldrelay saw last" in r for _, r in same_as_before)
    assert judged(None, {"status": "scheduled"}, action="deleted") == []  # no record, no changeset: none can match


def test_a_field_waits_for_its_turn_when_an_earlier_if_reads_changes(load, make_event):
    """Reading `type` before `first` runs would show it in `changes` to `first`'s `if`; it must not."""
    ruleset = load(
        "rules:\n"
        "  - name: first\n    priority: 1\n    when: {source: servicetrade}\n    if: \"'type' in changes\"\n"
        + THEN
        + "  - name: on-type\n    when: {source: servicetrade, changed: {type: {to: repair}}}\n"
        + THEN
        + "  - name: on-other-type\n    when: {source: servicetrade, changed: {type: {to: cleaning}}}\n"
        + THEN
    )
    loader = CountingLoader(job_record(type="repair"))
    event = make_event(changes={"status": ("scheduled", "completed")})
    verdicts = evaluate(ruleset, event, loader, previous=EntityVersion({"type": "inspection"}))
    assert [(v.rule.name, v.matched) for v in verdicts] == [("first", False), ("on-type", True)]
    assert loader.calls == 1
    every = evaluate_rules(ruleset.candidates(event), event, loader, previous=EntityVersion({"type": "inspection"}))
    assert [(v.rule.name, v.matched) for v in every] == [("first", False), ("on-type", True), ("on-other-type", False)]


def test_the_dry_run_still_reports_every_rule(load, make_event):
    ruleset = load(
        "rules:\n"
        "  - name: done\n    when: {source: servicetrade, changed: {status: {to: completed}}}\n"
        + THEN
        + "  - name: canceled\n    when: {source: servicetrade, changed: {status: {to: canceled}}}\n"
        + THEN
        + "  - name: polls\n    when: {source: servicetrade, via: poll}\n"
        + THEN
    )
    text = explain(ruleset, make_event(changes={"status": ("scheduled", "completed")}), job_record(), now=NOW)
    assert "no    canceled" in text and "  when.changed.status.to: wanted 'canceled', event had 'completed'" in text
    assert "no    polls" in text and "  when.via: wanted 'poll', event had 'webhook'" in text


@pytest.mark.parametrize("value", ["completed", 5, 5.0, True, None, "5"])
def test_value_keys_of_plain_values(value):
    assert value_keys(value) is not None
    assert value_keys([value]) is None and value_keys({"a": value}) is None
