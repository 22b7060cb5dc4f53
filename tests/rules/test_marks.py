"""Locations: pydantic locs mapped to the deepest YAML node that exists."""

from __future__ import annotations

from ruamel.yaml import YAML

from rules.marks import keys_at, locate
from rules.models import RuleFileSpec

DOC = YAML(typ="rt").load("rules:\n  - name: a\n    when: {source: synchroteam, entity: job}\n")


def test_existing_nodes_point_at_their_key():
    assert locate(DOC, ("rules", 0, "name")) == (2, 5, ("rules", 0, "name"))
    assert locate(DOC, ("rules", 0, "when", "entity")) == (3, 33, ("rules", 0, "when", "entity"))


def test_discriminator_tags_are_dropped_and_missing_keys_kept():
    assert locate(DOC, ("rules", 0, "when", "synchroteam", "entity", 0)) == (3, 33, ("rules", 0, "when", "entity"))
    assert locate(DOC, ("rules", 0, "then")) == (2, 5, ("rules", 0, "then"))


def test_keys_at_walks_models_lists_dicts_and_unions():
    assert "description" in keys_at(RuleFileSpec, ("rules", 0))
    assert set(keys_at(RuleFileSpec, ("rules", 0, "when", "servicetrade"))) >= {"entity", "changed", "via"}
    assert keys_at(RuleFileSpec, ("rules", 0, "when", "servicetrade", "changed", "status")) == [
        "from",
        "to",
        "not_from",
        "not_to",
    ]
