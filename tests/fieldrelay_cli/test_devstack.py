"""`fieldrelay run`'s own decisions: what a clean start clears, what it never touches, and when it gives up on Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldrelay_cli.devrun import REDIS_RESTARTS, _watch, banner, clear_dev_state
from fieldrelay_cli.devstack import StackConfig, StackError
from fieldrelay_cli.embedded_redis import EmbeddedRedis


def leftovers(data: Path) -> None:
    """What a previous run leaves in its data directory."""
    for path in ("redis/appendonlydir/x.aof", "spool/1.msg", "logs/worker.log", "celerybeat-schedule"):
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_text("x")


def test_a_clean_start_clears_the_last_runs_redis_spool_schedule_and_logs(tmp_path):
    leftovers(tmp_path)
    cleared = clear_dev_state(StackConfig(tmp_path, log_dir=tmp_path / "logs"))
    assert cleared == ["the embedded Redis's events, traces and dead letters", "the logs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs"]
    assert list((tmp_path / "logs").iterdir()) == []


def test_a_configured_redis_and_its_spool_are_never_cleared(tmp_path):
    leftovers(tmp_path)
    cleared = clear_dev_state(StackConfig(tmp_path, redis_url="redis://127.0.0.1:1/0", log_dir=tmp_path / "logs"))
    assert cleared == ["the logs"]
    assert (tmp_path / "redis" / "appendonlydir" / "x.aof").exists() and (tmp_path / "spool" / "1.msg").exists()


def test_an_embedded_redis_another_command_started_is_not_pulled_away(tmp_path):
    with EmbeddedRedis(tmp_path / "redis", appendonly=False) as server:
        (tmp_path / "redis" / "url").write_text(server.url)
        with pytest.raises(StackError) as err:
            clear_dev_state(StackConfig(tmp_path, log_dir=tmp_path / "logs"))
    assert str(err.value) == (
        f"an embedded Redis that another fieldrelay command started answers at {server.url} "
        f"(data in {tmp_path / 'redis'}); stop that command first, or run `fieldrelay run --keep` to use it as it is"
    )


def test_the_banner_says_whether_the_run_is_clean_or_kept(tmp_path):
    config = StackConfig(tmp_path, redis_url="redis://127.0.0.1:6400/0", log_dir=tmp_path / "logs")
    clean = banner(config, ["the logs"])
    assert "Started from a clean dev state: the sandboxes hold their seed data; cleared the logs." in clean
    assert "curl -s -X POST http://127.0.0.1:8000/webhooks/servicetrade/demo-token" in clean
    kept = banner(config, None)
    assert "Kept the last run's Redis data (--keep)" in kept and "dropped as a duplicate" in kept


class DyingRedis:
    """A stack whose embedded Redis dies again as soon as it is started."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.procs: dict = {}
        self.restarts = 0

    def redis_exit_code(self) -> int:
        return -9

    def restart_redis(self) -> None:
        self.restarts += 1


def test_a_redis_that_keeps_dying_stops_the_stack_with_a_message(tmp_path, capsys):
    stack = DyingRedis(StackConfig(tmp_path, log_dir=tmp_path / "logs"))
    assert _watch(stack) == 1  # type: ignore[arg-type]
    assert stack.restarts == REDIS_RESTARTS
    err = capsys.readouterr().err
    assert err.count("embedded Redis exited with -9; starting it again") == REDIS_RESTARTS
    assert err.endswith(
        f"stopping: the embedded Redis exited with -9 {REDIS_RESTARTS + 1} times within 60 s "
        f"(see {tmp_path / 'redis' / 'redis.log'})\n"
    )
