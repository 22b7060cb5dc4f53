"""The last-resort bounds of `rules check`, `rules test` and the console's dry run, hit for real.

Each case runs in its own Python process: an address-space limit inside the test process would
also bind the threads other tests left running there.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("resource")  # the bounds apply where rlimits exist (not on Windows)


def run(code: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-c", textwrap.dedent(code)], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_rules_check_past_its_memory_ends_with_a_sentence():
    proc = run(
        """
        import sys
        from fieldrelay_cli.rulescli import bounded
        sys.exit(bounded("check", lambda: len(bytearray(2 * 1024**3)), memory=256 * 1024**2))
        """
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (
        "rules check: stopped: it needed more memory than it may use; a rule or event builds something too large\n"
    )


def test_rules_test_past_its_cpu_ends_with_a_sentence():
    proc = run(
        """
        import sys
        from fieldrelay import limits
        from fieldrelay_cli import rulescli

        def spin():
            while True:
                pass

        def bounded_one_second(memory):
            return limits.resource_bounds(memory=memory, cpu=1)

        rulescli.resource_bounds = bounded_one_second
        sys.exit(rulescli.bounded("test", spin))
        """
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("rules test: stopped after") and "takes too long to evaluate" in proc.stderr


def test_the_console_dry_run_child_past_its_memory_answers_a_sentence():
    """The child that `receiver.console.dryrun.run_bounded` starts, given work that outgrows its bound."""
    request = {"rules": [], "digest": "d", "event": "{}", "entity": "", "synchroteam_zone": "UTC"}
    proc = run(
        """
        import sys
        from receiver.console import dryrun
        dryrun.MEMORY = 256 * 1024**2
        dryrun.report = lambda ruleset, event, entity: str(len(bytearray(2 * 1024**3)))
        sys.exit(dryrun.main())
        """,
        stdin=json.dumps(request),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "the dry run was stopped: it needed more memory than it may use; a rule or event builds something too large"
    )
