"""Error formats: `file:line:col: path: message`, sorted, and readable pydantic messages."""

from __future__ import annotations

import pickle

from rules.errors import RuleError, RuleLoadError, TemplateError, describe, format_path


def test_rule_error_format_and_pickling():
    error = RuleError("rules/sync.yaml", 5, 9, "rules[0].then[0].synchroteam.job.upsert.myId", "field required")
    assert str(error) == "rules/sync.yaml:5:9: rules[0].then[0].synchroteam.job.upsert.myId: field required"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
    assert str(pickle.loads(pickle.dumps(TemplateError("a.b", "boom")))) == "a.b: boom"


def test_load_error_sorts_by_file_then_position():
    errors = [
        RuleError("b.yaml", 1, 1, "x", "m"),
        RuleError("a.yaml", 9, 1, "x", "m"),
        RuleError("a.yaml", 2, 5, "x", "m"),
    ]
    assert [(e.file, e.line) for e in RuleLoadError(errors).errors] == [("a.yaml", 2), ("a.yaml", 9), ("b.yaml", 1)]
    assert str(RuleLoadError(errors)).splitlines()[0] == "3 errors in rule files"


def test_format_path():
    assert format_path(("rules", 0, "then", 1, "http.request", "url")) == "rules[0].then[1].http.request.url"


def test_describe_keeps_unknown_error_kinds_readable():
    err = {
        "type": "string_too_short",
        "msg": "String should have at least 1 character",
        "input": "",
        "loc": ("name",),
        "ctx": {"min_length": 1},
    }
    assert describe(err) == "string should have at least 1 character, got ''"
