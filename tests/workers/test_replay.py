"""Replay: stored events go back through the current rules, past the duplicate check, or as a dry run."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from fieldrelay.queries import EventFilter
from fieldrelay.state import PipelineState
from fieldrelay_cli.main import main
from rules import load_rules
from workers.actions.registry import action_params
from workers.replay import ReplayError, forget_ledger, replay, select

EVENT = {
    "source": "servicetrade",
    "via": "webhook",
    "action": "updated",
    "occurred_at": 1401833052,
    "entity": {"type": "job", "id": 35769, "uri": "https://api.servicetrade.com/api/job/35769"},
    "message_id": "m",
    "changes": {"status": {"old": "scheduled", "new": "completed"}},
}


@pytest.fixture
def state(redis_client: redis.Redis) -> PipelineState:
    s = PipelineState(redis_client)
    s.save_event("ev1", EVENT)
    return s


def test_replay_enqueues_the_stored_event_flagged_as_a_replay(state, redis_client):
    state.mark_action_done("ev1", "d", 0, None, {"id": 1})
    report = replay(state, ["ev1", "gone"], force=True)
    assert report.replayed == ["ev1"] and report.missing == ["gone"]
    [message] = redis_client.lrange("events", 0, -1)
    envelope = json.loads(message)
    assert envelope["headers"]["task"] == "fieldrelay.process_event"
    assert json.loads(base64.b64decode(envelope["body"]))[0] == [EVENT, True]
    assert state.action_done("ev1", "d", 0) is None  # --force forgot the ledger


def test_dry_run_changes_nothing(state, redis_client):
    rules = load_rules(__import__("pathlib").Path("rules/examples"), action_params())
    report = replay(state, ["ev1"], dry_run_rules=rules)
    assert "completed-job-to-synchroteam" in report.dry_runs[0]
    assert redis_client.llen("events") == 0


def test_selection_needs_something(state):
    with pytest.raises(ReplayError, match="no events selected"):
        select(state, [], None, 10)
    assert select(state, ["ev1"], EventFilter(entity="job:999"), 10) == ["ev1"]


def test_forget_ledger_only_touches_that_event(state):
    state.mark_action_done("ev1", "d", 0, "a", {"x": 1})
    state.mark_action_done("ev2", "d", 0, "a", {"x": 1})
    assert forget_ledger(state, "ev1") == 2
    assert state.action_done("ev2", "d", 0) is not None


def test_cli_replays_by_id(state, redis_url, redis_client, monkeypatch, capsys):
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)
    assert main(["replay", "ev1"]) == 0
    assert "1 event(s) enqueued" in capsys.readouterr().out
    assert redis_client.llen("events") == 1
    with pytest.raises(SystemExit, match="no events selected"):
        main(["replay"])
