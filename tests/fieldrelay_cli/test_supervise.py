"""The supervisor restarts a crashed child, and stops (without restarting) when told to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time


def run_supervisor(tmp_path, child_code: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(child_code))
    code = (
        "import sys; from fieldrelay_cli.supervise import supervise; "
        f"sys.exit(supervise([sys.executable, {str(script)!r}], name='child', pause=0.05))"
    )
    return subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd())


def test_a_crashed_child_is_started_again_until_it_exits_cleanly(tmp_path):
    runs = tmp_path / "runs"
    proc = run_supervisor(
        tmp_path,
        f"""
        import sys
        from pathlib import Path
        runs = Path({str(runs)!r})
        runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
        sys.exit(0 if len(runs.read_text()) == 3 else 1)
    """,
    )
    assert proc.wait(30) == 0
    assert runs.read_text() == "xxx"


def test_sigterm_is_forwarded_and_ends_supervision(tmp_path):
    started = tmp_path / "started"
    proc = run_supervisor(
        tmp_path,
        f"""
        import signal, sys, time
        from pathlib import Path
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
        Path({str(started)!r}).write_text("yes")
        time.sleep(60)
    """,
    )
    deadline = time.monotonic() + 20
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 3  # the child's own exit code, and no restart
