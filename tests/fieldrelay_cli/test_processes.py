"""`fieldrelay worker|beat|receiver` refuse to start on settings, pollers or rules that would fail later (issue 12)."""

from __future__ import annotations

import pytest

from fieldrelay_cli.main import main


@pytest.fixture
def env(monkeypatch, redis_url, tmp_path):
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    monkeypatch.setenv("FIELDRELAY_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FIELDRELAY_POLL_SOURCES", "none")
    return monkeypatch


def test_a_worker_does_not_start_on_rules_that_do_not_load(env, tmp_path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "deep.yaml").write_text("x: " + "[" * 5000 + "]" * 5000 + "\n")
    env.setenv("FIELDRELAY_RULES_DIR", str(rules))
    with pytest.raises(SystemExit, match=r"do not load:\n.*deep\.yaml:1:\d+: <yaml>: nested deeper than 64 levels"):
        main(["worker", "--once"])


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_an_unknown_poller_stops_the_worker_and_beat_before_they_start(env, command: str) -> None:
    env.setenv("FIELDRELAY_POLL_SOURCES", "servicetrade.bogus")
    with pytest.raises(SystemExit, match=r"FIELDRELAY_POLL_SOURCES: unknown poller 'servicetrade\.bogus'"):
        main([command, "--once"] if command == "worker" else [command])


@pytest.mark.parametrize("command", ["receiver", "worker", "beat"])
def test_a_bad_setting_stops_every_process_naming_the_variable(env, command: str) -> None:
    env.setenv("FIELDRELAY_HTTP_TIMEOUT", "inf")
    with pytest.raises(SystemExit, match="FIELDRELAY_HTTP_TIMEOUT: Input should be a finite number"):
        main([command])


def test_a_worker_that_would_hold_more_servicetrade_sessions_than_the_user_may_does_not_start(env) -> None:
    """Seed 002, "Authentication": 100 open sessions per user (soft), and each worker process holds one."""
    with pytest.raises(SystemExit, match=r"101 worker processes would hold 101 servicetrade sessions .* past the 100"):
        main(["worker", "--once", "--concurrency", "101"])
    env.setenv("FIELDRELAY_WORKER_CONCURRENCY", "150")
    with pytest.raises(SystemExit, match=r"150 worker processes"):
        main(["worker", "--once"])
