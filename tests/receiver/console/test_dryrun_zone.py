"""The console's dry run renders Synchroteam dates in the account's zone, as the worker does."""

from __future__ import annotations

from receiver.console.dryrun import run_bounded
from rules import load_rules
from tests.fieldrelay_cli.test_rulescli import ZONE_EVENT, ZONE_RULE
from workers.actions.registry import action_params


def test_the_console_dry_run_uses_the_synchroteam_zone(tmp_path):
    (tmp_path / "r.yaml").write_text(ZONE_RULE)
    ruleset = load_rules(tmp_path, action_params())
    assert '"scheduledStart": "14/11/2023 17:13:20"' in run_bounded(ruleset, ZONE_EVENT, "", "America/New_York")
    assert '"scheduledStart": "14/11/2023 22:13:20"' in run_bounded(ruleset, ZONE_EVENT, "")
