"""RuleSet: run order and the (source, entity, action) candidate index."""

from __future__ import annotations

from rules import evaluate, load_rules
from tests.rules.conftest import THEN, CountingLoader


def test_rules_run_by_priority_then_file_order(write_rules, action_params, make_event):
    write_rules(
        "rules:\n  - name: b-low\n    when: {source: servicetrade}\n"
        + THEN
        + "  - name: b-high\n    priority: 5\n    when: {source: servicetrade, entity: job}\n"
        + THEN,
        "b.yaml",
    )
    path = write_rules("rules:\n  - name: a-low\n    when: {source: servicetrade, action: updated}\n" + THEN, "a.yaml")
    ruleset = load_rules(path.parent, action_params)
    assert [r.name for r in ruleset.rules] == ["b-high", "a-low", "b-low"]
    assert [v.rule.name for v in evaluate(ruleset, make_event(), CountingLoader())] == ["b-high", "a-low", "b-low"]


def test_candidates_use_the_index_with_wildcards(load, make_event):
    ruleset = load(
        "rules:\n"
        "  - name: job-updated\n    when: {source: servicetrade, entity: job, action: updated}\n"
        + THEN
        + "  - name: any-job\n    when: {source: servicetrade, entity: [job, invoice]}\n"
        + THEN
        + "  - name: any-updated\n    when: {source: servicetrade, action: [created, updated]}\n"
        + THEN
        + "  - name: any-servicetrade\n    when: {source: servicetrade}\n"
        + THEN
        + "  - name: invoice\n    when: {source: servicetrade, entity: invoice}\n"
        + THEN
        + "  - name: synergist\n    when: {source: synergist}\n"
        + THEN
    )
    names = [r.name for r in ruleset.candidates(make_event())]
    assert names == ["job-updated", "any-job", "any-updated", "any-servicetrade"]
    assert [r.name for r in ruleset.candidates(make_event(entity="invoice", action="deleted"))] == [
        "any-job",
        "any-servicetrade",
        "invoice",
    ]
    assert [r.name for r in ruleset.candidates(make_event(source="synchroteam"))] == []
