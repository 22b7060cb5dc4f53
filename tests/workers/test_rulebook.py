"""Hot reload: a good edit swaps the rule set, a broken edit keeps the last good one."""

from __future__ import annotations

import os
import time

import pytest

from rules import RuleLoadError
from workers.actions.registry import action_params
from workers.rulebook import RuleBook

GOOD = """
rules:
  - name: {name}
    when: {{source: servicetrade, entity: job}}
    then:
      - synchroteam.job.upsert: {{myId: "st-job-{{{{ event.entity.id }}}}"}}
"""


def touch_later(path):
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_reload_swaps_good_edits_and_keeps_the_last_good_set(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD.format(name="first"))
    book = RuleBook(tmp_path, action_params(), check_every=0)
    assert [r.name for r in book.current().rules] == ["first"]

    rules.write_text(GOOD.format(name="second"))
    touch_later(rules)
    assert [r.name for r in book.current().rules] == ["second"]
    assert book.last_error is None

    rules.write_text("rules:\n  - name: broken\n    when: {source: nowhere}\n")
    touch_later(rules)
    assert [r.name for r in book.current().rules] == ["second"]
    assert book.last_error is not None
    assert "rules.yaml:3" in str(book.last_error)


def test_a_broken_set_at_start_up_is_fatal(tmp_path):
    (tmp_path / "rules.yaml").write_text("rules: [")
    with pytest.raises(RuleLoadError):
        RuleBook(tmp_path, action_params())


def test_unchanged_files_are_not_reloaded(tmp_path):
    (tmp_path / "rules.yaml").write_text(GOOD.format(name="first"))
    book = RuleBook(tmp_path, action_params(), check_every=0)
    first = book.current()
    time.sleep(0.01)
    assert book.current() is first
