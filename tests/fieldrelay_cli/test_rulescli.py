"""The rules CLI as ops use it: check, dry run, cases, and explain of a stored trace."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from fieldrelay_cli.main import main
from rules.helpers import use_synchroteam_zone

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "rules" / "examples"


def test_check_passes_the_examples(capsys):
    assert main(["rules", "check", str(EXAMPLES)]) == 0
    assert "rule(s) in 2 file(s) OK" in capsys.readouterr().out


def test_check_lists_errors_with_positions_and_fails(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(
        "rules:\n  - name: x\n    when: {source: servicetrade, entity: jobb}\n"
        "    then:\n      - synchroteam.job.upsert: {myId: a}\n"
        "  - name: y\n    when: {source: servicetrade, entity: job}\n"
        "    then:\n      - synchroteam.job.upsert: {myId: a, colour: red}\n"
    )
    assert main(["rules", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/bad.yaml:3:" in err and "did you mean 'job'" in err
    assert f"{tmp_path}/bad.yaml:9:" in err and "colour" in err
    assert "not loaded" in err


METADATA_RULE = (
    "rules:\n  - name: meta\n    when: {source: servicetrade, entity: job}\n"
    "    then:\n      - http.request: {url: 'http://169.254.169.254/latest/meta-data/'}\n"
)


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://127.0.0.1:9000/internal-admin", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:10.0.0.1]/x", "a private address"),
    ],
)
def test_check_refuses_a_literal_url_the_egress_policy_refuses(tmp_path, capsys, monkeypatch, url, refusal):
    """Issue 12: a literal metadata URL passed `rules check`; it is a load error, as it would be in the worker."""
    monkeypatch.delenv("FIELDRELAY_HTTP_ALLOWED_HOSTS", raising=False)
    (tmp_path / "r.yaml").write_text(METADATA_RULE.replace("http://169.254.169.254/latest/meta-data/", url))
    assert main(["rules", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path}/r.yaml:5:" in err and "refused by the egress policy" in err and refusal in err


def test_check_follows_the_allowlist_and_takes_one_file(tmp_path, capsys, monkeypatch):
    rule_file = tmp_path / "jobs.yaml"
    rule_file.write_text(METADATA_RULE)
    monkeypatch.setenv("FIELDRELAY_HTTP_ALLOWED_HOSTS", "169.254.169.254")
    assert main(["rules", "check", str(rule_file)]) == 0
    assert "1 rule(s) in 1 file(s) OK" in capsys.readouterr().out
    monkeypatch.setenv("FIELDRELAY_HTTP_ALLOWED_HOSTS", "hooks.example.com")
    assert main(["rules", "check", str(rule_file)]) == 1
    assert "169.254.169.254:80 is not in FIELDRELAY_HTTP_ALLOWED_HOSTS" in capsys.readouterr().err


def test_check_of_a_path_that_is_not_there_is_a_sentence(tmp_path, capsys):
    assert main(["rules", "check", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err == f"{tmp_path / 'nowhere'}: No such file or directory\n"


def test_dry_run_of_the_documented_webhook(capsys):
    code = main(
        [
            "rules",
            "test",
            "--rules",
            str(EXAMPLES),
            "--event",
            str(ROOT / "examples" / "webhook-sample.json"),
            "--entity",
            str(ROOT / "examples" / "job-35769.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "MATCH completed-job-to-synchroteam" in out
    assert '"myId": "st-job-35769"' in out


def test_dry_run_rejects_a_file_that_is_not_an_event(tmp_path):
    bad = tmp_path / "event.json"
    bad.write_text('{"source": "servicetrade"}')
    with pytest.raises(SystemExit, match="not a change event: via: Field required"):
        main(["rules", "test", "--rules", str(EXAMPLES), "--event", str(bad)])


def test_cases_run(capsys):
    assert main(["rules", "test", str(EXAMPLES / "cases")]) == 0
    assert " failed" in capsys.readouterr().out


def test_explain_prints_the_stored_trace(redis_url, monkeypatch, capsys):
    state = PipelineState(redis.Redis.from_url(redis_url))
    state.save_event(
        "ev1",
        {
            "source": "servicetrade",
            "via": "webhook",
            "action": "updated",
            "occurred_at": 1,
            "entity": {"type": "job", "id": 7},
            "message_id": "m1",
            "changes": {"status": {"old": "scheduled", "new": "completed"}},
        },
    )
    state.trace("ev1", Step.RECEIVED, via="webhook")
    state.trace("ev1", Step.RULE_SKIPPED, rule="r", reason="when.entity: wanted 'job'")
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    assert main(["rules", "explain", "ev1"]) == 0
    out = capsys.readouterr().out
    assert "event ev1: servicetrade job 7 updated via webhook" in out
    assert "status: 'scheduled' -> 'completed'" in out
    assert "rule.skipped" in out and "when.entity: wanted 'job'" in out
    assert main(["rules", "explain", "nope"]) == 1


def test_check_of_the_examples_prints_no_warning(capsys):
    """A newcomer's first lint is clean: the example acknowledges its one write-back with `loop_ok`."""
    assert main(["rules", "check", str(EXAMPLES)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == "6 rule(s) in 2 file(s) OK\n"


def test_dry_run_of_the_docs_sample_verbatim_and_a_previous_version(tmp_path, capsys):
    verbatim = str(ROOT / "examples" / "webhook-sample-verbatim.json")
    assert main(["rules", "test", "--rules", str(EXAMPLES), "--event", verbatim]) == 0
    out = capsys.readouterr().out
    assert "(note: uri 'https://api.servicetrade.com/api/invoice/35789' names another record than job 35769" in out

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules:\n  - name: appt\n"
        "    when: {source: servicetrade, entity: appointment, changed: {status: {from: scheduled, to: completed}}}\n"
        "    then: [{http.request: {url: 'https://x.test'}}]\n"
    )
    event = tmp_path / "event.json"
    event.write_text(
        '{"source": "servicetrade", "via": "webhook", "action": "updated", "occurred_at": 1,'
        ' "entity": {"type": "appointment", "id": 754}, "changes": {}}'
    )
    (tmp_path / "now.json").write_text('{"data": {"id": 754, "status": "completed"}}')
    (tmp_path / "before.json").write_text('{"id": 754, "status": "scheduled"}')
    args = ["rules", "test", "--rules", str(tmp_path / "rules"), "--event", str(event)]
    assert main([*args, "--entity", str(tmp_path / "now.json"), "--previous", str(tmp_path / "before.json")]) == 0
    assert "  status: 'scheduled' (snapshot) -> 'completed' (current value)" in capsys.readouterr().out
    assert main([*args, "--entity", str(tmp_path / "now.json")]) == 0
    assert "no earlier version known" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="not a record"):
        main([*args, "--previous", str(tmp_path / "bad.json")])


ZONE_RULE = (
    "rules:\n  - name: sched\n    when: {source: servicetrade, entity: job}\n    then:\n"
    '      - synchroteam.job.upsert:\n          myId: "st-job-{{ event.entity.id }}"\n'
    '          scheduledStart: "{{ synchroteam_job_datetime(event.occurred_at) }}"\n'
)
ZONE_EVENT = (
    '{"source": "servicetrade", "via": "webhook", "action": "updated", "occurred_at": 1700000000,'
    ' "entity": {"type": "job", "id": 7}, "changes": {}}'
)


def test_the_dry_run_renders_synchroteam_dates_in_the_accounts_zone(tmp_path, capsys, monkeypatch):
    """Issue 15: `rules test` showed UTC where the worker sends FIELDRELAY_SYNCHROTEAM_TIMEZONE's wall time."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(ZONE_RULE)
    (tmp_path / "event.json").write_text(ZONE_EVENT)
    monkeypatch.setenv("FIELDRELAY_SYNCHROTEAM_TIMEZONE", "America/New_York")
    try:
        assert main(["rules", "test", "--rules", str(tmp_path / "rules"), "--event", str(tmp_path / "event.json")]) == 0
    finally:
        use_synchroteam_zone("UTC")  # the zone is per process; leave it as the other tests expect
    # 1700000000 is 2023-11-14 22:13:20 UTC, 17:13:20 in New York.
    assert '"scheduledStart": "14/11/2023 17:13:20"' in capsys.readouterr().out
