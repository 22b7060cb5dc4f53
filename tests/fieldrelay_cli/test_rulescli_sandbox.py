"""`rules test --against-sandbox`: matched rules' actions run on in-process sandboxes, results printed."""

from __future__ import annotations

import contextlib
import io
import textwrap
from pathlib import Path

import pytest

from fieldrelay_cli.main import main

ROOT = Path(__file__).parents[2]
EVENT = ROOT / "examples" / "webhook-sample.json"
ENTITY = ROOT / "examples" / "job-35769.json"

RULES = """\
rules:
  - name: copy-job
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    then:
      - id: customer
        synchroteam.customer.upsert:
          myId: "st-company-{{ entity.customer.id }}"
          name: "{{ entity.customer.name }}"
          contactEmail: !secret SUPPORT_EMAIL
      - id: job
        synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          customer: {id: "{{ steps.customer.id }}"}
  - name: broken-chain
    when: {source: servicetrade, entity: job, action: updated}
    then:
      - synchroteam.job.upsert: {myId: "st-orphan", customer: {myId: "no-such-customer"}}
      - synchroteam.job.upsert: {myId: "never-run", customer: {myId: "x"}}
    on_failure:
      - synchroteam.customer.upsert: {myId: "failure-note", name: "failed at step {{ failure.index }}"}
"""


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> str:
    """One run for the whole module: starting the three sandboxes is the slow part."""
    rules_dir = tmp_path_factory.mktemp("rules")
    (rules_dir / "rules.yaml").write_text(textwrap.dedent(RULES))
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setenv("FIELDRELAY_RULES_ENV", "SUPPORT_EMAIL")
        mp.setenv("SUPPORT_EMAIL", "ops-desk@example.com")
        code = main(
            [
                "rules",
                "test",
                "--rules",
                str(rules_dir),
                "--event",
                str(EVENT),
                "--entity",
                str(ENTITY),
                "--against-sandbox",
            ]
        )
    assert code == 0
    return printed.getvalue()


def test_matched_actions_run_in_order_and_feed_later_steps(out):
    ran = out[out.index("against the sandboxes:", out.index("MATCH copy-job")) :]
    lines = ran.splitlines()
    assert lines[1] == "  copy-job then[0] synchroteam.customer.upsert  ok"
    assert '"myId": "st-company-39"' in lines[2] and '"name": "Big Bang Burger Bar"' in lines[2]
    assert lines[3] == "  copy-job then[1] synchroteam.job.upsert  ok"
    # The job was attached to the customer the first step created: its id came through steps.customer.
    assert '"myId": "st-job-35769"' in lines[4] and '"customer": {"id": ' in lines[4]
    assert '"myId": "st-company-39"' in lines[4]


def test_a_failed_step_stops_the_chain_and_runs_on_failure(out):
    assert "  broken-chain then[0] synchroteam.job.upsert  FAILED" in out
    assert "never-run" not in out.split("against the sandboxes:")[-1]
    assert "  broken-chain on_failure[0] synchroteam.customer.upsert  ok" in out
    assert '"name": "failed at step 0"' in out


def test_secret_values_are_never_printed(out):
    assert "ops-desk@example.com" not in out
    assert '"contactEmail": "***"' in out  # in the dry-run part and in the sandbox's answer


def test_events_no_rule_matches_call_nothing(out):
    assert "event: servicetrade invoice 9623 updated via webhook (changes: none)\n" in out
    assert "against the sandboxes:\n  (no rule matched; nothing was called)" in out
