"""Rule: the JSON form the worker stores and recompiles in another process."""

from __future__ import annotations

import json
from pathlib import Path

from rules import build_context, load_rules, render_params, rule_from_json
from tests.rules.conftest import job_record

EXAMPLES = Path(__file__).parents[2] / "rules" / "examples"


def test_rule_json_round_trip_is_cached(action_params, make_event):
    ruleset = load_rules(EXAMPLES, action_params)
    rule = ruleset.rules[0]
    data = json.loads(json.dumps(rule.to_json()))
    again = rule_from_json(data)
    assert again.name == rule.name and again.digest == rule.digest and again.needs_entity
    assert [(c.name, c.id, c.params, c.line) for c in again.then] == [
        (c.name, c.id, c.params, c.line) for c in rule.then
    ]
    assert rule_from_json(data) is again
    event = make_event(changes={"status": ("scheduled", "completed")})
    context = build_context(event, job_record(), steps={"customer": {"myId": "st-company-39"}})
    assert render_params(again.then[1], context) == {
        "myId": "st-job-35769",
        "description": "Job 112233",
        "customer": {"myId": "st-company-39"},
    }


def test_from_json_keeps_the_compiled_condition_and_flags(load, make_event):
    ruleset = load(
        "vars: {v: 1}\nrules:\n  - name: r\n    priority: 2\n    mode: parallel\n    debounce: 3\n"
        "    when: {source: servicetrade, changed: {status: {to: done}}}\n"
        '    if: {not: "entity.x"}\n'
        "    then: [{http.request: {url: x}}]\n    on_failure: [{http.request: {url: y}}]\n"
    )
    rule = ruleset.rules[0]
    again = rule_from_json(json.loads(json.dumps(rule.to_json())))
    assert (again.priority, again.mode, again.debounce, again.vars, again.needs_entity) == (
        2,
        "parallel",
        3,
        {"v": 1},
        True,
    )
    assert again.when == rule.when and again.if_ == rule.if_
    assert [c.params for c in again.on_failure] == [{"url": "y"}]
