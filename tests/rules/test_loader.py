"""Rule files: every mistake is reported with its exact message and position."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from rules import RuleLoadError, load_rule_file, load_rules
from rules.loader import rule_from_json

EXAMPLES = Path(__file__).parents[2] / "rules" / "examples"

OK_THEN = "    then: [{http.request: {url: 'https://example.com'}}]\n"


def rule(*lines: str, then: str = OK_THEN) -> str:
    return "rules:\n  - name: a\n" + "".join(f"    {line}\n" for line in lines) + then


MISTAKES = [
    pytest.param(
        "rules:\n  - name: [x\n",
        "rules.yaml:3:1: <yaml>: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence at line 2)",
        id="yaml-syntax",
    ),
    pytest.param(
        "rules:\n  - name: a\n    name: b\n",
        'rules.yaml:3:5: <yaml>: found duplicate key "name" with value "b" (original value: "a") '
        "(while constructing a mapping at line 2)",
        id="yaml-duplicate-key",
    ),
    pytest.param(
        "rulez: []\nrules: []\n",
        "rules.yaml:1:1: rulez: unknown field 'rulez'; did you mean 'rules'?",
        id="unknown-top-level-key",
    ),
    pytest.param(
        "rules:\n  - when: {source: servicetrade}\n" + OK_THEN,
        "rules.yaml:2:5: rules[0].name: field required",
        id="missing-name",
    ),
    pytest.param(
        rule("when: {source: servicetrad}"),
        "rules.yaml:3:12: rules[0].when.source: 'servicetrad' is not one of "
        "'servicetrade', 'synchroteam', 'synergist'; did you mean 'servicetrade'?",
        id="unknown-source",
    ),
    pytest.param(
        rule("when: {entity: job}"),
        "rules.yaml:3:5: rules[0].when.source: field required",
        id="missing-source",
    ),
    pytest.param(
        rule("when:", "  source: servicetrade", "  entity: jobb"),
        "rules.yaml:5:7: rules[0].when.entity: 'jobb' is not a ServiceTrade entity type; did you mean 'job'?",
        id="unknown-entity",
    ),
    pytest.param(
        rule("when:", "  source: synchroteam", "  entity: [job, custommer]"),
        "rules.yaml:5:21: rules[0].when.entity[1]: 'custommer' is not a Synchroteam entity type; "
        "did you mean 'customer'?",
        id="unknown-entity-in-list",
    ),
    pytest.param(
        rule("when: {source: servicetrade, action: update}"),
        "rules.yaml:3:34: rules[0].when.action: 'update' is not one of 'created', 'updated' or 'deleted'; "
        "did you mean 'updated'?",
        id="bad-action",
    ),
    pytest.param(
        rule("when:", "  source: servicetrade", "  changed:", "    status: completed"),
        "rules.yaml:6:9: rules[0].when.changed.status: expected a mapping with any of "
        "from/to/not_from/not_to, or true for any change; got 'completed'",
        id="bad-changed-shape",
    ),
    pytest.param(
        rule("when:", "  source: servicetrade", "  changed:", "    status: {too: completed}"),
        "rules.yaml:6:18: rules[0].when.changed.status.too: unknown field 'too'; did you mean 'to'?",
        id="bad-changed-key",
    ),
    pytest.param(
        rule("when: {source: servicetrade, entities: job}"),
        "rules.yaml:3:34: rules[0].when.entities: unknown field 'entities'; did you mean 'entity'?",
        id="unknown-when-key",
    ),
    pytest.param(
        rule("descripton: x", "when: {source: servicetrade}"),
        "rules.yaml:3:5: rules[0].descripton: unknown field 'descripton'; did you mean 'description'?",
        id="unknown-rule-key",
    ),
    pytest.param(
        rule("when: {source: servicetrade}", then="    then:\n      - synchroteam.job.upsrt: {myId: x}\n"),
        "rules.yaml:5:9: rules[0].then[0].synchroteam.job.upsrt: unknown action 'synchroteam.job.upsrt'; "
        "did you mean 'synchroteam.job.upsert'?",
        id="unknown-action",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - synchroteam.job.upsert:\n          customer: {myId: x}\n",
        ),
        "rules.yaml:5:9: rules[0].then[0].synchroteam.job.upsert.myId: field required",
        id="missing-required-param",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - synchroteam.customer.upsert:\n"
            "          myId: x\n          name: y\n          adress: z\n",
        ),
        "rules.yaml:8:11: rules[0].then[0].synchroteam.customer.upsert.adress: unknown parameter 'adress'; "
        "did you mean 'address'?",
        id="unknown-param",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - synchroteam.job.upsert:\n"
            "          myId: x\n          customer: {myid: '{{ entity.id }}'}\n",
        ),
        "rules.yaml:7:22: rules[0].then[0].synchroteam.job.upsert.customer.myid: unknown parameter 'myid'; "
        "did you mean 'myId'?",
        id="unknown-nested-param-beside-template",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - synchroteam.job.upsert:\n"
            "          myId: x\n          customer: {myId: y}\n          duration: soon\n",
        ),
        "rules.yaml:8:11: rules[0].then[0].synchroteam.job.upsert.duration: input should be a valid integer, "
        "unable to parse string as an integer, got 'soon'",
        id="wrong-literal-type",
    ),
    pytest.param(
        rule("when: {source: servicetrade}", then="    then: [{http.request: {url: x, method: post}}]\n"),
        "rules.yaml:4:36: rules[0].then[0].http.request.method: 'post' is not one of "
        "'GET', 'POST', 'PUT', 'PATCH' or 'DELETE'; did you mean 'POST'?",
        id="wrong-literal-choice",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - http.request:\n          url: 'https://x/{{ event.entity.id }'\n",
        ),
        "rules.yaml:6:11: rules[0].then[0].http.request.url: template syntax error: unexpected '}'",
        id="template-syntax",
    ),
    pytest.param(
        rule("when: {source: servicetrade}", "if:", "  - entity.type == 'repair'", "  - entity.type =="),
        "rules.yaml:6:9: rules[0].if[1]: template syntax error: unexpected 'end of print statement'",
        id="if-syntax",
    ),
    pytest.param(
        rule("when: {source: servicetrade}", "if: {either: [a, b]}"),
        "rules.yaml:4:5: rules[0].if: expected an expression string, a list, or a mapping with one of all/any/not",
        id="if-shape",
    ),
    pytest.param(
        rule("mode: fast", "when: {source: servicetrade}"),
        "rules.yaml:3:5: rules[0].mode: 'fast' is not one of 'queued', 'latest' or 'parallel'; did you mean 'latest'?",
        id="bad-mode",
    ),
    pytest.param(
        rule("debounce: -5", "when: {source: servicetrade}"),
        "rules.yaml:3:5: rules[0].debounce: input should be greater than or equal to 0, got -5",
        id="negative-debounce",
    ),
    pytest.param(
        rule("priority: high", "when: {source: servicetrade}"),
        "rules.yaml:3:5: rules[0].priority: input should be a valid integer, unable to parse string as an "
        "integer, got 'high'",
        id="bad-priority",
    ),
    pytest.param(
        rule("when: {source: servicetrade}", then="    then: []\n"),
        "rules.yaml:4:5: rules[0].then: must not be empty",
        id="empty-then",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - http.request: {url: a}\n"
            "        servicetrade.job.comment: {jobId: 1, content: x}\n",
        ),
        "rules.yaml:6:9: rules[0].then[0].servicetrade.job.comment: one action per step; "
        "put each action in its own list item",
        id="two-actions-in-one-step",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - id: customer\n"
            "        synchroteam.customer.upsert: {myId: a, name: b}\n"
            "      - http.request:\n          url: '{{ steps.custmer.myId }}'\n",
        ),
        "rules.yaml:7:9: rules[0].then[1]: steps.custmer is not the id of an earlier step; did you mean 'customer'?",
        id="unknown-step-id",
    ),
    pytest.param(
        rule(
            "when: {source: servicetrade}",
            then="    then:\n      - http.request:\n          url: \"{{ ''.__class__.__mro__ }}\"\n",
        ),
        "rules.yaml:6:11: rules[0].then[0].http.request.url: access to '__class__' is not allowed in rule templates",
        id="sandbox-escape",
    ),
    pytest.param(
        "- just a list\n",
        "rules.yaml:1:1: <root>: expected a mapping with 'rules' (and optionally 'vars')",
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MISTAKES)
def test_each_mistake_is_reported_exactly(load_errors, text, expected):
    assert load_errors(text) == [expected]


def test_every_error_is_reported_sorted_by_line(load_errors):
    text = rule("mode: fast", "debounce: -1", "when: {source: servicetrade, entity: jobb}")
    errors = load_errors(text)
    assert [e.split(": ")[0] for e in errors] == ["rules.yaml:3:5", "rules.yaml:4:5", "rules.yaml:5:34"]


def test_errors_in_several_rules_are_all_reported(load_errors):
    text = (
        "rules:\n"
        "  - name: a\n    when: {source: nope}\n"
        + OK_THEN
        + "  - name: b\n    when: {source: servicetrade}\n    then: [{http.request: {}}]\n"
    )
    assert load_errors(text) == [
        "rules.yaml:3:12: rules[0].when.source: 'nope' is not one of 'servicetrade', 'synchroteam', 'synergist'",
        "rules.yaml:7:13: rules[1].then[0].http.request.url: field required",
    ]


def test_a_bad_when_does_not_hide_the_errors_of_if_and_then(load_errors):
    text = (
        "rules:\n"
        "  - name: a\n"
        "    when: {source: servicetrade, entity: jobb}\n"
        '    if: "entity.type =="\n'
        "    then:\n"
        "      - synchroteam.job.upsert: {myId: a, customer: {myId: b}, colour: red}\n"
        "    on_failure:\n"
        "      - http.requst: {url: x}\n"
    )
    assert load_errors(text) == [
        "rules.yaml:3:34: rules[0].when.entity: 'jobb' is not a ServiceTrade entity type; did you mean 'job'?",
        "rules.yaml:4:5: rules[0].if: template syntax error: unexpected 'end of print statement'",
        "rules.yaml:6:64: rules[0].then[0].synchroteam.job.upsert.colour: unknown parameter 'colour'",
        "rules.yaml:8:9: rules[0].on_failure[0].http.requst: unknown action 'http.requst'; "
        "did you mean 'http.request'?",
    ]


def test_a_missing_name_and_a_missing_parameter_are_both_reported(load_errors):
    text = "rules:\n  - when: {source: servicetrade, action: update}\n    then: [{http.request: {}}]\n"
    assert load_errors(text) == [
        "rules.yaml:2:5: rules[0].name: field required",
        "rules.yaml:2:34: rules[0].when.action: 'update' is not one of 'created', 'updated' or 'deleted'; "
        "did you mean 'updated'?",
        "rules.yaml:3:13: rules[0].then[0].http.request.url: field required",
    ]


def test_duplicate_names_across_files_fail_the_whole_load(write_rules, action_params):
    write_rules(rule("when: {source: servicetrade}"), "a.yaml")
    second = write_rules(rule("when: {source: synergist}"), "b.yaml")
    with pytest.raises(RuleLoadError) as info:
        load_rules(second.parent, action_params)
    first = second.parent / "a.yaml"
    assert [str(e) for e in info.value.errors] == [
        f"{second}:2:5: rules[0].name: duplicate rule name 'a'; first defined at {first}:2"
    ]


def test_a_bad_file_fails_the_load_even_if_others_are_good(write_rules, action_params):
    write_rules(rule("when: {source: servicetrade}"), "good.yaml")
    bad = write_rules("rules: [", "bad.yml")
    with pytest.raises(RuleLoadError) as info:
        load_rules(bad.parent, action_params)
    assert len(info.value.errors) == 1
    assert info.value.errors[0].file == str(bad)
    assert str(info.value).startswith("1 error in rule files\n")


def test_non_yaml_files_are_ignored(write_rules, action_params):
    write_rules("not yaml: [", "README.md")
    path = write_rules(rule("when: {source: servicetrade}"), "ok.yaml")
    assert [r.name for r in load_rules(path.parent, action_params)] == ["a"]


def test_examples_load_without_a_warning(action_params):
    """The example's write-back to ServiceTrade says why it is safe (`loop_ok`), so a first lint is clean."""
    ruleset = load_rules(EXAMPLES, action_params)
    assert [r.name for r in ruleset.rules] == [
        "completed-job-to-synchroteam",
        "field-completion-to-servicetrade",
        "field-time-to-synergist",
        "office-appointment-completed-to-field",
        "completed-job-to-synergist-activity",
        "canceled-job-notify",
    ]
    assert ruleset.warnings == []
    rule = ruleset.get("completed-job-to-synchroteam")
    assert rule is not None
    [comment] = rule.on_failure
    assert comment.loop_ok is not None and comment.loop_ok.startswith("a comment changes no job status")


WRITE_BACK = """\
rules:
  - name: a
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    then:
      - servicetrade.job.comment: {jobId: 1, content: done}
"""


def test_a_write_back_to_the_rule_source_warns_and_says_how_to_acknowledge_it(load):
    ruleset = load(WRITE_BACK)
    assert [str(w).split(": ", 1)[1] for w in ruleset.warnings] == [
        "rules[0].then[0].servicetrade.job.comment: writes to ServiceTrade, which triggers this rule (possible loop); "
        "if the loop guard or the rule's `when` makes it safe, say why with `loop_ok: <reason>` on this step",
    ]


def test_loop_ok_with_a_reason_acknowledges_the_write_back(load):
    ruleset = load(WRITE_BACK + "        loop_ok: a comment changes no status\n")
    assert ruleset.warnings == []
    assert ruleset.rules[0].then[0].loop_ok == "a comment changes no status"


@pytest.mark.parametrize("value", ["true", '""', "{why: x}"])
def test_loop_ok_needs_the_reason_as_text(load_errors, value):
    assert load_errors(WRITE_BACK + f"        loop_ok: {value}\n") == [
        "rules.yaml:6:9: rules[0].then[0].loop_ok: loop_ok takes the reason this write-back is safe, as text "
        "(e.g. loop_ok: a comment changes no field this rule reads), got "
        + {"true": "True", '""': "''", "{why: x}": "{'why': 'x'}"}[value],
    ]


def test_loop_ok_survives_the_trip_to_the_workers(load):
    rule = load(WRITE_BACK + "        loop_ok: safe\n").rules[0]
    assert rule_from_json(json.loads(json.dumps(rule.to_json()))).then[0].loop_ok == "safe"


def test_warns_on_undocumented_changed_field(load):
    ruleset = load(rule("when:", "  source: servicetrade", "  entity: job", "  changed: {statuss: true}"))
    assert [str(w).split(": ", 1)[1] for w in ruleset.warnings] == [
        "rules[0].when.changed.statuss: 'statuss' is not a documented field of ServiceTrade 'job'",
    ]


def test_warns_on_changed_with_created_only(load):
    ruleset = load(rule("when: {source: servicetrade, action: created, changed: {status: true}}"))
    assert [w.message for w in ruleset.warnings] == [
        "only 'updated' events carry changesets; this rule never matches",
    ]


def test_warns_that_a_field_servicetrade_does_not_track_costs_a_fetch(load):
    ruleset = load(rule("when: {source: servicetrade, entity: appointment, changed: {status: {to: completed}}}"))
    assert [w.message for w in ruleset.warnings] == [
        "ServiceTrade webhooks do not report changes of 'status' on 'appointment' in their changeset; the rule "
        "still works: for each candidate event fieldrelay reads the appointment (one API call) and compares it "
        "with the version it saw before",
    ]
    polled = rule("when: {source: servicetrade, via: poll, entity: appointment, changed: {status: true}}")
    assert load(polled).warnings == []  # a poll's changeset lists every change


def test_on_missing_is_checked(load, load_errors):
    then = "    then:\n      - synergist.activity.create: {activityActivitytypeCode: A, activityClientCode: C}\n"
    ok = load(rule("when: {source: servicetrade}", then=then + "        on_missing: recreate\n"))
    assert ok.rules[0].then[0].on_missing == "recreate"
    assert load(rule("when: {source: servicetrade}", then=then)).rules[0].then[0].on_missing == "fail"
    assert load_errors(rule("when: {source: servicetrade}", then=then + "        on_missing: retry\n")) == [
        "rules.yaml:6:9: rules[0].then[0].on_missing: on_missing must be one of fail, recreate, got 'retry'"
    ]
    http = "    then:\n      - http.request: {url: 'https://example.com'}\n        on_missing: recreate\n"
    assert load_errors(rule("when: {source: servicetrade}", then=http)) == [
        "rules.yaml:6:9: rules[0].then[0].on_missing: http.request keeps no link to a record it created, so "
        "on_missing does not apply (it does on synergist.activity.create)"
    ]


def test_job_item_tracked_fields_do_not_warn(load):
    text = rule("when: {source: servicetrade, entity: job_item, changed: {source.status: {to: delivered}}}")
    assert load(text).warnings == []


def test_load_rule_file_and_digest_follow_content(write_rules, action_params):
    path = write_rules(rule("when: {source: servicetrade}"))
    first = load_rule_file(path, action_params)
    assert load_rule_file(path, action_params).digest == first.digest
    path.write_text(path.read_text().replace("name: a", "name: b"))
    second = load_rule_file(path, action_params)
    assert second.digest != first.digest
    assert second.rules[0].digest != first.rules[0].digest


def test_rule_keeps_its_source_position_and_settings(load):
    ruleset = load(
        "vars: {team: north}\nrules:\n  - name: a\n    priority: 3\n    mode: latest\n    debounce: 2.5\n"
        "    enabled: false\n    when: {source: synergist, entity: activity}\n"
        "    then:\n      - id: post\n        http.request: {url: '{{ vars.team }}'}\n"
    )
    (only,) = ruleset.rules
    assert (only.name, only.line, only.priority, only.mode, only.debounce, only.enabled) == (
        "a",
        3,
        3,
        "latest",
        2.5,
        False,
    )
    assert only.vars == {"team": "north"}
    assert [(c.name, c.id, c.params, c.line) for c in only.then] == [
        ("http.request", "post", {"url": "{{ vars.team }}"}, 10)
    ]


def test_without_action_params_only_templates_are_checked(write_rules):
    path = write_rules(rule("when: {source: servicetrade}", then="    then: [{anything.at.all: {x: 1}}]\n"))
    assert load_rules(path.parent, None).rules[0].then[0].name == "anything.at.all"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "vars: {team: north}\n"
            + rule("when: {source: servicetrade}", then="    then: [{http.request: {url: '{{ vars.tem }}'}}]\n"),
            "rules.yaml:5:12: rules[0].then[0]: vars.tem is not defined in this file's vars; did you mean 'team'?",
            id="unknown-var",
        ),
        pytest.param(
            rule("when: {source: servicetrade}", 'if: {any: ["event.entity.id", "event.entiy.id > 3"]}'),
            "rules.yaml:4:35: rules[0].if.any[1]: event.entiy is not an event field; did you mean 'entity'?",
            id="unknown-event-field",
        ),
        pytest.param(
            rule("when: {source: servicetrade}", 'if: "steps.customer"'),
            "rules.yaml:4:5: rules[0].if: steps are only known inside then/on_failure",
            id="steps-in-if",
        ),
        pytest.param(
            rule(
                "when: {source: servicetrade}",
                then="    then:\n      - id: a\n        http.request: {url: x}\n"
                "      - id: a\n        http.request: {url: y}\n",
            ),
            "rules.yaml:7:9: rules[0].then[1].id: step id 'a' is used twice in this rule",
            id="duplicate-step-id",
        ),
    ],
)
def test_references_that_can_never_resolve(load_errors, text, expected):
    assert load_errors(text) == [expected]


def test_anchors_and_merge_keys_point_at_where_the_value_is_written(load_errors, load):
    text = (
        "x-job: &job\n  source: servicetrade\n  entity: jobb\n"
        "rules:\n"
        "  - name: a\n    when:\n      <<: *job\n      action: updatd\n"
        + OK_THEN
        + "  - name: b\n    when: *job\n"
        + OK_THEN
    )
    assert load_errors(text) == [
        "rules.yaml:3:3: rules[0].when.entity: 'jobb' is not a ServiceTrade entity type; did you mean 'job'?",
        "rules.yaml:3:3: rules[1].when.entity: 'jobb' is not a ServiceTrade entity type; did you mean 'job'?",
        "rules.yaml:8:7: rules[0].when.action: 'updatd' is not one of 'created', 'updated' or 'deleted'; "
        "did you mean 'updated'?",
    ]
    ruleset = load(text.replace("jobb", "job").replace("updatd", "updated"))
    assert [(r.name, r.when.entity, r.when.action) for r in ruleset] == [
        ("a", ["job"], ["updated"]),
        ("b", ["job"], None),
    ]


JUNK: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "x",
    "{{",
    "{{ x }}",
    "{% if %}",
    [],
    {},
    [1, "a"],
    {"a": 1},
    {"to": None},
    "__class__",
    "jobb",
    {"{{": 1},
    {1: 2},
    [[]],
    "{{ steps.x }}",
    "{{ vars.nope }}",
]


def mutate(node: Any, rng: random.Random) -> Any:
    """Drop, rename or replace keys and items at random, the mistakes a hurried edit makes."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            roll = rng.random()
            if roll < 0.08:
                continue
            if roll < 0.16:
                out[key] = rng.choice(JUNK)
            elif roll < 0.2:
                out[key + "x"] = value
            else:
                out[key] = mutate(value, rng)
        if rng.random() < 0.05:
            out[rng.choice(["id", "if", "not", "any", "all", 5])] = rng.choice(JUNK)
        return out
    if isinstance(node, list):
        items = [mutate(x, rng) for x in node if rng.random() > 0.05]
        return items + ([rng.choice(JUNK)] if rng.random() < 0.05 else [])
    return rng.choice(JUNK) if rng.random() < 0.05 else node


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False))
def test_mangled_rule_files_load_or_fail_with_rule_errors_only(write_rules, action_params, rng):
    doc = mutate(YAML(typ="safe").load((EXAMPLES / "servicetrade_to_synchroteam.yaml").read_text()), rng)
    out = io.StringIO()
    YAML().dump(doc, out)
    path = write_rules(out.getvalue())
    try:
        load_rules(path.parent, action_params)
    except RuleLoadError as exc:
        assert all(e.line >= 1 and e.col >= 1 and e.message for e in exc.errors)


def test_linked_id_names_a_known_kind_and_a_loaded_rule(load, load_errors):
    lookup = "linked_id('synergist.activity', rule='a')"
    ok = load(rule("when: {source: servicetrade}", f'if: "{lookup} is not none"'))
    assert [r.name for r in ok.rules] == ["a"]
    wrong_kind = rule("when: {source: servicetrade}", "if: \"linked_id('synergist.activty', rule='a')\"")
    assert load_errors(wrong_kind) == [
        "rules.yaml:4:5: rules[0].if: linked_id: 'synergist.activty' is no kind of record fieldrelay links; "
        "did you mean 'synergist.activity'? (known: synergist.activity)"
    ]
    then = "    then:\n      - http.request: {url: \"https://x.test/{{ linked_id('synergist.activity', 'b') }}\"}\n"
    assert load_errors(rule("when: {source: servicetrade}", then=then)) == [
        "rules.yaml:5:24: rules[0].then[0].http.request.url: linked_id: no rule named 'b'"
    ]
