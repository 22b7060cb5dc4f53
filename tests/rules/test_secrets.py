"""`!secret NAME`: allowlisted at load, read at render time, never stored, echoed or shown."""

from __future__ import annotations

import json

import pytest

from rules import (
    ActionCall,
    RuleLoadError,
    TemplateError,
    build_context,
    load_rules,
    render_params,
    rule_from_json,
)
from rules.dryrun import explain, render_calls

TOKEN = "xoxb-very-secret-token"

RULES = """\
rules:
  - name: notify
    when: {source: servicetrade, entity: job}
    then:
      - http.request:
          url: https://chat.example.com/hook
          headers: {Authorization: !secret CHAT_TOKEN}
          json: {text: "job {{ event.entity.id }}"}
"""


@pytest.fixture
def secret_rules(write_rules, action_params):
    def load(text=RULES, env_names=("CHAT_TOKEN",)):
        path = write_rules(text)
        return load_rules(path.parent, action_params, env_names=env_names)

    return load


def errors_of(write_rules, action_params, text, env_names=("CHAT_TOKEN",)):
    path = write_rules(text)
    with pytest.raises(RuleLoadError) as info:
        load_rules(path.parent, action_params, env_names=env_names)
    return [str(e).replace(str(path), "rules.yaml") for e in info.value.errors]


def test_the_value_is_read_when_the_action_renders(secret_rules, make_event, monkeypatch):
    monkeypatch.setenv("CHAT_TOKEN", TOKEN)
    rule = secret_rules().rules[0]
    context = build_context(make_event(), None, env={"CHAT_TOKEN": TOKEN})
    params = render_params(rule.then[0], context)
    assert params["headers"] == {"Authorization": TOKEN}


def test_the_value_is_never_in_the_stored_rule(secret_rules, make_event, monkeypatch):
    monkeypatch.setenv("CHAT_TOKEN", TOKEN)
    rule = secret_rules().rules[0]
    stored = json.dumps(rule.to_json())
    assert TOKEN not in stored
    assert "CHAT_TOKEN" in stored
    again = rule_from_json(json.loads(stored))
    rendered = render_params(again.then[0], build_context(make_event(), None, env={"CHAT_TOKEN": TOKEN}))
    assert rendered["headers"]["Authorization"] == TOKEN


def test_a_name_outside_the_allowlist_is_a_load_error(write_rules, action_params):
    assert errors_of(write_rules, action_params, RULES, env_names=("OTHER",)) == [
        "rules.yaml:7:36: rules[0].then[0].http.request.headers.Authorization: "
        "secret 'CHAT_TOKEN' is not allowed: add it to FIELDRELAY_RULES_ENV",
    ]


def test_an_allowed_but_unset_name_warns_at_load_and_fails_clearly_at_render(secret_rules, make_event, monkeypatch):
    monkeypatch.delenv("CHAT_TOKEN", raising=False)
    ruleset = secret_rules()
    assert [str(w).split(": ", 1)[1] for w in ruleset.warnings] == [
        "rules[0].then[0].http.request.headers.Authorization: "
        "secret 'CHAT_TOKEN' is not set in the environment; actions using it fail until it is",
    ]
    with pytest.raises(TemplateError) as info:
        render_params(ruleset.rules[0].then[0], build_context(make_event(), None, env={}))
    assert str(info.value) == (
        "http.request.headers.Authorization: secret 'CHAT_TOKEN' is not set in the "
        "environment (it must be set and listed in FIELDRELAY_RULES_ENV)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "vars:\n  token: !secret CHAT_TOKEN\nrules: []\n",
            "rules.yaml:2:10: vars.token: !secret is only allowed in action parameters (then/on_failure)",
            id="in-vars",
        ),
        pytest.param(
            RULES.replace("entity: job}", "entity: job, changed: {status: {to: !secret CHAT_TOKEN}}}"),
            "rules.yaml:3:70: rules[0].when.changed.status.to: "
            "!secret is only allowed in action parameters (then/on_failure)",
            id="in-when",
        ),
        pytest.param(
            RULES.replace("!secret CHAT_TOKEN", "!secret chat-token"),
            "rules.yaml:7:36: rules[0].then[0].http.request.headers.Authorization: "
            "!secret takes an environment variable name like CHAT_TOKEN, got 'chat-token'",
            id="bad-name",
        ),
        pytest.param(
            RULES.replace("!secret CHAT_TOKEN", "!secret [CHAT_TOKEN]"),
            "rules.yaml:7:36: rules[0].then[0].http.request.headers.Authorization: "
            "!secret takes an environment variable name like CHAT_TOKEN, got ''",
            id="not-a-name",
        ),
    ],
)
def test_secret_mistakes(write_rules, action_params, monkeypatch, text, expected):
    monkeypatch.setenv("CHAT_TOKEN", TOKEN)
    assert errors_of(write_rules, action_params, text) == [expected]


def test_dry_runs_print_stars_and_never_the_value(secret_rules, make_event, monkeypatch):
    monkeypatch.setenv("CHAT_TOKEN", TOKEN)
    ruleset = secret_rules()
    env = {"CHAT_TOKEN": TOKEN}
    (rendered,) = render_calls(ruleset.rules[0], ruleset.rules[0].then, make_event(), None, env=env)
    assert isinstance(rendered, dict)
    assert rendered["http.request"]["headers"] == {"Authorization": "***"}
    report = explain(ruleset, make_event(), None, env=env)
    assert '"Authorization": "***"' in report and TOKEN not in report


def test_env_values_are_starred_in_dry_runs_and_hidden_in_errors(make_event):
    env = {"CHAT_TOKEN": TOKEN}
    call = ActionCall(
        "http.request", None, {"url": "https://x/{{ env.CHAT_TOKEN }}", "n": "{{ env.CHAT_TOKEN | int + 'a' }}"}, 1
    )
    with pytest.raises(TemplateError) as info:
        render_params(call, build_context(make_event(), None, env=env))
    assert TOKEN not in str(info.value)


def test_a_secret_in_a_test_case_renders_as_stars(write_rules, action_params, tmp_path, monkeypatch):
    from rules.dryrun import run_cases

    monkeypatch.setenv("CHAT_TOKEN", TOKEN)
    rules = write_rules(RULES)
    cases = rules.parent / "cases"
    cases.mkdir()
    (cases / "c.yaml").write_text(
        "cases:\n  - name: job\n    event: {source: servicetrade, action: updated, entity: {type: job, id: 7}}\n"
        "    expect:\n      matched: [notify]\n      actions:\n        notify:\n"
        "          - http.request: {url: 'https://chat.example.com/hook', "
        "headers: {Authorization: '***'}, json: {text: job 7}}\n"
    )
    report = run_cases(cases, action_params=action_params, env_names=["CHAT_TOKEN"])
    assert report.passed, str(report)


def test_a_secret_read_in_an_if_is_hidden_in_the_reason(load, make_event):
    from rules.engine import evaluate_rules

    ruleset = load(
        "rules:\n  - name: r\n    when: {source: servicetrade}\n"
        "    if: \"secret('CHAT_TOKEN') == 'other'\"\n    then: [{http.request: {url: x}}]\n"
    )
    (verdict,) = evaluate_rules(ruleset.rules, make_event(), lambda: None, env={"CHAT_TOKEN": TOKEN})
    assert verdict.reason == (
        "if: secret('CHAT_TOKEN') == 'other' is false; secret('CHAT_TOKEN') was (hidden: reads secret)"
    )


def test_a_secret_behind_a_yaml_anchor_is_checked_where_it_is_used(write_rules, action_params, monkeypatch):
    monkeypatch.setenv("CHAT_TOKEN", TOKEN)
    text = "x-auth: &auth !secret CHAT_TOKEN\n" + RULES.replace("!secret CHAT_TOKEN", "*auth")
    path = write_rules(text)
    ruleset = load_rules(path.parent, action_params, env_names=["CHAT_TOKEN"])
    assert ruleset.rules[0].then[0].params["headers"] == {"Authorization": "{{ secret('CHAT_TOKEN') }}"}
    assert errors_of(write_rules, action_params, text, env_names=[]) == [
        "rules.yaml:1:9: rules[0].then[0].http.request.headers.Authorization: "
        "secret 'CHAT_TOKEN' is not allowed: add it to FIELDRELAY_RULES_ENV",
    ]
