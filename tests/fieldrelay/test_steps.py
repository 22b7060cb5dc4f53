"""Trace steps are one enum: every reader classifies every step, and the writers use nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

from fieldrelay.metrics import RECORDERS
from fieldrelay.steps import Step
from receiver.console.views import TONES

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("fieldrelay", "receiver", "workers", "rules", "fieldrelay_cli")


def test_the_metrics_classify_every_step():
    assert set(RECORDERS) == set(Step), f"steps the metrics do not classify: {set(Step) - set(RECORDERS)}"


def test_the_console_classifies_every_step():
    assert set(TONES) == set(Step), f"steps the console does not classify: {set(Step) - set(TONES)}"


def test_no_trace_is_written_with_a_plain_string():
    """`state.trace(id, "action.failed")` would bypass the enum; every call site passes a `Step`."""
    offenders = []
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "trace"
                    and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant)
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
