"""The supervisor restarts its child after every exit it did not ask for (a code, 0 included, or a signal),
kills what the child left in its process group first, backs off while the child keeps dying young, and
stops only on its own SIGTERM or SIGINT, with the child's exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest


def run_supervisor(
    tmp_path: Path, child_code: str, pause: float = 0.05, healthy: float = 10.0, got_going: str = "None"
) -> subprocess.Popen[bytes]:
    """A supervisor around `child_code`; every exit it sees is appended to exits.jsonl by `on_exit`."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(child_code))
    exits = tmp_path / "exits.jsonl"
    code = textwrap.dedent(
        f"""
        import json, logging, sys
        from pathlib import Path
        from fieldrelay_cli.supervise import supervise
        logging.basicConfig(level=logging.INFO, format="%(message)s")

        def on_exit(ended):
            with open({str(exits)!r}, "a") as out:
                out.write(json.dumps({{"generation": ended.generation, "reason": ended.reason,
                                      "restarting": ended.restarting, "asked": ended.asked}}) + "\\n")

        sys.exit(supervise([sys.executable, {str(script)!r}], name="child", pause={pause}, healthy={healthy},
                           child_env=lambda n: {{"GENERATION": str(n)}}, on_exit=on_exit,
                           got_going={got_going}))
        """
    )
    with open(tmp_path / "supervisor.log", "ab") as log:  # the child keeps its own copy of the handle
        return subprocess.Popen([sys.executable, "-c", code], cwd=os.getcwd(), stderr=log)


def exits(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "exits.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# Each run of the child ends its own way: exit 1, exit 0, SIGKILL; the fourth waits to be stopped.
ENDINGS = """
    import os, signal, sys, time
    from pathlib import Path
    n = int(os.environ["GENERATION"])
    Path({started!r}).write_text(str(n))
    if n == 1:
        sys.exit(1)
    if n == 2:
        sys.exit(0)
    if n == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
    time.sleep(60)
"""


def test_every_exit_not_asked_for_is_restarted_and_only_sigterm_stops_it(tmp_path: Path) -> None:
    started = tmp_path / "started"
    proc = run_supervisor(tmp_path, ENDINGS.format(started=str(started)))
    wait_for(lambda: started.exists() and started.read_text() == "4", "the fourth start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 3  # the child's own exit code, and no restart after it
    assert [(e["reason"], e["restarting"]) for e in exits(tmp_path)] == [
        ("exit 1", True),
        ("exit 0", True),  # a 0 the supervisor did not ask for is a restart too
        ("SIGKILL", True),
        ("exit 3", False),
    ]
    log = (tmp_path / "supervisor.log").read_text()
    assert log.count("without being asked to; starting it again") == 3


def test_sigint_stops_it_too(tmp_path: Path) -> None:
    started = tmp_path / "started"
    proc = run_supervisor(
        tmp_path,
        f"""
        import signal, sys, time
        from pathlib import Path
        signal.signal(signal.SIGINT, lambda *a: sys.exit(4))
        Path({str(started)!r}).write_text("yes")
        time.sleep(60)
    """,
    )
    wait_for(started.exists, "the child")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 4
    assert [e["restarting"] for e in exits(tmp_path)] == [False]


def test_sighup_restarts_the_child_at_once_as_asked(tmp_path: Path) -> None:
    started = tmp_path / "started"
    proc = run_supervisor(
        tmp_path,
        f"""
        import os, signal, sys, time
        from pathlib import Path
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        Path({str(started)!r}).write_text(os.environ["GENERATION"])
        time.sleep(60)
    """,
        pause=30.0,  # a restart that was not asked for would wait this long
    )
    wait_for(lambda: started.exists() and started.read_text() == "1", "the first start")
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: started.read_text() == "2", "the restart", timeout=10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert [(e["asked"], e["restarting"]) for e in exits(tmp_path)] == [(True, True), (True, False)]


def test_what_the_child_left_in_its_group_is_killed_before_on_exit(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    proc = run_supervisor(
        tmp_path,
        f"""
        import os, subprocess, sys, time
        from pathlib import Path
        if os.environ["GENERATION"] != "1":
            time.sleep(60)
        # A grandchild that would outlive its parent, like a pool child without a parent-death signal.
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        Path({str(pids)!r}).write_text(str(grandchild.pid))
        os._exit(1)
    """,
    )
    wait_for(lambda: len(exits(tmp_path)) == 1, "the first exit")
    grandchild = int(pids.read_text())
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def test_a_child_that_keeps_dying_young_waits_longer_each_time(tmp_path: Path) -> None:
    proc = run_supervisor(tmp_path, "import sys; sys.exit(2)\n", pause=0.1)
    wait_for(lambda: len(exits(tmp_path)) >= 6, "six exits")
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    log = (tmp_path / "supervisor.log").read_text()
    waits = [float(line.rsplit(" in ", 1)[1].split()[0]) for line in log.splitlines() if "starting it again" in line]
    assert waits[:5] == [0.1, 0.1, 0.2, 0.4, 0.8]  # two young deaths are forgiven, then it doubles


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_killed_supervisor_takes_its_child_with_it(tmp_path: Path) -> None:
    started = tmp_path / "started"
    stopped = tmp_path / "stopped"
    proc = run_supervisor(
        tmp_path,
        f"""
        import os, signal, sys, time
        from pathlib import Path
        def stop(*a):
            Path({str(stopped)!r}).write_text("warm")
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        Path({str(started)!r}).write_text(str(os.getpid()))
        time.sleep(60)
    """,
    )
    wait_for(started.exists, "the child")
    child = int(started.read_text())
    proc.kill()
    proc.wait(10)
    wait_for(stopped.exists, "the child's warm shutdown", timeout=10)
    wait_for(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE, "exit")


def test_a_child_that_got_going_before_it_died_is_started_again_without_backing_off(tmp_path: Path) -> None:
    proc = run_supervisor(tmp_path, "import sys; sys.exit(2)\n", pause=0.1, got_going="lambda generation: True")
    wait_for(lambda: len(exits(tmp_path)) >= 5, "five exits")
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    log = (tmp_path / "supervisor.log").read_text()
    waits = [float(line.rsplit(" in ", 1)[1].split()[0]) for line in log.splitlines() if "starting it again" in line]
    assert waits[:4] == [0.1, 0.1, 0.1, 0.1]  # killed at work (say, by the OOM killer), not crash-looping
