"""Generated documentation stays in step with the code it describes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from workers.actions.reference import render_reference

ROOT = Path(__file__).parents[2]


def test_actions_reference_is_current():
    current = (ROOT / "docs" / "actions.md").read_text()
    assert current == render_reference() + "\n", (
        "docs/actions.md is stale: run `fieldrelay actions reference > docs/actions.md`"
    )


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_is_valid(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (.ci/run installs docker-compose)")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
