"""Dry runs and YAML cases: what ops see before a rule goes live."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rules import load_rules
from rules.dryrun import explain, run_cases
from tests.rules.conftest import job_record

EXAMPLES = Path(__file__).parents[2] / "rules" / "examples"


def test_explain_shows_matches_with_rendered_calls_and_reasons(action_params, make_event):
    ruleset = load_rules(EXAMPLES, action_params)
    event = make_event(changes={"status": ("scheduled", "completed")})
    text = explain(ruleset, event, job_record(), now=datetime(2024, 1, 1, tzinfo=UTC))
    file = EXAMPLES / "servicetrade_to_synchroteam.yaml"
    assert text.splitlines()[:7] == [
        "event: servicetrade job 35769 updated via webhook (changes: status: 'scheduled' -> 'completed')",
        f"MATCH completed-job-to-synchroteam  ({file}:8)",
        "  status: 'scheduled' -> 'completed'  (from the changeset)",
        "  then[0] synchroteam.customer.upsert  id=customer",
        '    {"myId": "st-company-39", "name": "Big Bang Burger Bar"}',
        "  then[1] synchroteam.job.upsert  id=job",
        '    {"myId": "st-job-35769", "description": "Job 112233", "customer": {"myId": "<steps.customer.myId>"}}',
    ]
    assert text.splitlines()[-3:] == [
        f"no    canceled-job-notify  ({file}:59)",
        "  status: 'scheduled' -> 'completed'  (from the changeset)",
        "  when.changed.status.to: wanted 'canceled', event had 'completed'",
    ]


def test_explain_says_where_each_transitions_values_came_from(load, make_event):
    ruleset = load(
        "rules:\n  - name: done\n    when: {source: servicetrade, changed: {status: {to: completed}}}\n"
        "    then: [{http.request: {url: 'https://x.test/{{ changes.status.old }}'}}]\n"
    )
    empty = make_event(changes={})
    compared = explain(ruleset, empty, job_record(status="completed"), previous={"status": "scheduled"})
    assert "  status: 'scheduled' (snapshot) -> 'completed' (current value)" in compared
    assert '    {"url": "https://x.test/scheduled"}' in compared  # `changes` holds the derived transition
    first = explain(ruleset, empty, job_record(status="completed"))
    assert "  status: ? (no earlier version known) -> 'completed' (current value)" in first
    again = explain(ruleset, empty, job_record(status="completed"), previous={"status": "completed"})
    assert "did not change since the version fieldrelay saw last (still 'completed')" in again


def test_explain_marks_non_candidates_and_render_errors(load, make_event):
    ruleset = load(
        "rules:\n"
        "  - name: synergist-only\n    when: {source: synergist}\n    then: [{http.request: {url: x}}]\n"
        "  - name: broken-template\n    when: {source: servicetrade}\n"
        "    then: [{http.request: {url: '{{ entity.nope }}'}}]\n"
    )
    text = explain(ruleset, make_event(), {"id": 1})
    assert "skip  synergist-only" in text
    assert "  when.source: wanted 'synergist', event had 'servicetrade'" in text
    assert "    error: http.request.url: no field 'nope' (fields here: id)" in text


def test_example_cases_pass():
    report = run_cases(EXAMPLES / "cases")
    assert report.passed, str(report)
    assert len(report.results) == 11  # 7 for servicetrade_to_synchroteam.yaml, 4 for field_to_office.yaml


def test_a_wrong_expectation_is_reported(write_rules, tmp_path):
    write_rules(
        "rules:\n  - name: r\n    when: {source: servicetrade, entity: job}\n"
        "    then: [{http.request: {url: 'https://x/{{ event.entity.id }}'}}]\n"
    )
    cases = tmp_path / "rules" / "cases"
    cases.mkdir()
    (cases / "c.yaml").write_text(
        "cases:\n"
        "  - name: wrong\n"
        "    event: {source: servicetrade, action: updated, entity: {type: invoice, id: 1}}\n"
        "    expect: {matched: [r]}\n"
        "  - name: wrong url\n"
        "    event: {source: servicetrade, action: created, entity: {type: job, id: 2}}\n"
        "    expect:\n      matched: [r]\n      actions: {r: [{http.request: {url: 'https://x/3'}}]}\n"
    )
    report = run_cases(cases)
    assert not report.passed
    assert [r.problems for r in report.results] == [
        ["expected matched ['r'], got [] (r: when.entity: wanted 'job', event had 'invoice')"],
        [
            "r.then[0]: expected {'http.request': {'url': 'https://x/3'}}, "
            "rendered {'http.request': {'url': 'https://x/2'}}"
        ],
    ]
    assert str(report).endswith("0 passed, 2 failed")


def test_broken_case_files_and_rules_are_failures_not_crashes(write_rules, tmp_path):
    rules_file = write_rules(
        "rules:\n  - name: r\n    when: {source: servicetrade}\n    then: [{http.request: {url: x}}]\n"
    )
    cases = tmp_path / "rules" / "cases"
    cases.mkdir()
    (cases / "bad.yaml").write_text("cases:\n  - nme: x\n")
    report = run_cases(cases)
    assert [r.name for r in report.failed] == ["load cases"]
    rules_file.write_text("rules: [")
    report = run_cases(cases)
    assert [r.name for r in report.failed] == ["load rules"]
