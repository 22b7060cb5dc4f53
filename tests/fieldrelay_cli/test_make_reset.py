"""`make reset` removes the dev state, and refuses while a `fieldrelay run` holds it."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("flock") is None, reason="needs make")


def reset(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), "reset", f"DATA_DIR={data_dir}"], capture_output=True, text=True, timeout=60
    )


def test_reset_removes_the_dev_state(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "redis").mkdir(parents=True)
    (data / "redis" / "dump.rdb").write_bytes(b"x")
    done = reset(data)
    assert done.returncode == 0, done.stderr
    assert not data.exists()
    assert "the next `make run` starts from a clean dev state" in done.stdout


def test_reset_refuses_while_a_run_holds_the_lock(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    with open(data / "run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what `fieldrelay run` holds while it runs
        refused = reset(data)
    assert refused.returncode != 0
    assert "a fieldrelay run is using" in refused.stdout and data.exists()
