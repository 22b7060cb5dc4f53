"""Installing prints no packaging deprecation (issue 16): the license is an SPDX expression, as PEP 639 has it."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_the_license_is_an_spdx_string_and_no_classifier_repeats_it():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    # A `license = {text = ...}` table and `License ::` classifiers are what setuptools >= 77 warns about.
    assert isinstance(project["license"], str) and project["license"] == "Apache-2.0"
    assert not [c for c in project.get("classifiers", []) if c.startswith("License ::")]
    assert any(req.startswith("setuptools>=77") for req in pyproject["build-system"]["requires"])
    assert (ROOT / "LICENSE").is_file()
