"""Every failure ends where a person sees it: a trace step, a dead letter that runs it again, one alert (issue 12)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from fieldrelay import operations, queries
from fieldrelay.events import ChangeEvent, EntityRef
from fieldrelay.queues import EVENTS_QUEUE, NEXT_RUN_TASK, PROCESS_EVENT_TASK
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from workers import lifecycle, retry
from workers.actions.registry import action_params
from workers.rulebook import RuleBook

GOOD = """
rules:
  - name: mirror
    when: {source: servicetrade, entity: job}
    then:
      - synchroteam.job.upsert: {myId: "st-job-{{ event.entity.id }}"}
"""

EVENT = ChangeEvent(
    source="servicetrade", via="webhook", action="updated", entity=EntityRef(type="job", id=7), occurred_at=1700000000
)


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def __call__(self, exc: BaseException, message: str, tags: dict, fingerprint: list) -> None:
        self.sent.append((message, dict(tags)))


@pytest.fixture
def alerts(monkeypatch) -> Alerts:
    sent = Alerts()
    monkeypatch.setattr(lifecycle, "alert_exception", sent)
    monkeypatch.setattr(retry, "alert_exception", sent)
    return sent


def queued(client: redis.Redis, queue: str) -> list[tuple[str, list]]:
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = orjson.loads(raw)
        import base64

        args = orjson.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


def test_a_reload_that_raises_anything_keeps_the_last_good_set(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(GOOD)
    book = RuleBook(tmp_path, action_params(), check_every=0)
    # The case: a 5,000-level nested list used to raise RecursionError out of the reload,
    # after the file was marked seen, so /readyz kept `ok: true` and the event's task died.
    (tmp_path / "rules.yaml").write_text(GOOD + "x-deep: " + "[" * 5000 + "]" * 5000 + "\n")
    assert [r.name for r in book.current().rules] == ["mirror"]
    status = book.status()
    assert status["ok"] is False and len(status["errors"]) == 1
    assert "rules.yaml:" in status["errors"][0] and "nested" in status["errors"][0]
    (tmp_path / "rules.yaml").write_text(GOOD.replace("mirror", "mirror2"))
    assert [r.name for r in book.current().rules] == ["mirror2"] and book.status()["ok"]


def test_an_unexpected_loader_error_is_a_rule_error_at_the_file(tmp_path: Path, monkeypatch) -> None:
    import rules.loader

    (tmp_path / "rules.yaml").write_text(GOOD)
    book = RuleBook(tmp_path, action_params(), check_every=0)

    def broken(*args: object) -> None:
        raise ValueError("something no one expected")

    monkeypatch.setattr(rules.loader, "_load_file", broken)
    (tmp_path / "rules.yaml").write_text(GOOD + "\n# touched\n")
    assert [r.name for r in book.current().rules] == ["mirror"]
    [error] = book.status()["errors"]
    assert error == f"{tmp_path / 'rules.yaml'}:1:1: <file>: could not be loaded: ValueError: something no one expected"


def test_an_event_that_could_not_be_evaluated_is_a_dead_letter_that_runs_it_again(redis_client, alerts) -> None:
    state = PipelineState(redis_client)
    state.trace(EVENT.id, Step.RECEIVED, via="webhook")
    lifecycle.fail_event(state, EVENT, ValueError("Invalid IPv6 URL"), 1)

    [dead] = state.dead_letters()
    assert dead["kind"] == "event" and dead["event_id"] == EVENT.id and dead["target"] == "events"
    assert dead["error"] == "ValueError: Invalid IPv6 URL"
    assert [s["step"] for s in state.load_trace(EVENT.id)][-1] == "event.failed"
    [summary] = queries.list_events(state)
    assert summary["outcome"] == "failed"  # never "no match"
    [(message, tags)] = alerts.sent
    assert tags == {"event_id": EVENT.id, "alert": "event"} and f"fieldrelay replay {EVENT.id}" in message
    assert state.load_event(EVENT.id) is not None  # so `fieldrelay replay` finds it too

    entry = operations.retry_dead_letter(state, dead["id"])
    assert entry["kind"] == "event" and state.dead_letters() == []
    [(task, args)] = queued(redis_client, EVENTS_QUEUE)
    assert task == PROCESS_EVENT_TASK and args == [EVENT.model_dump(mode="json"), True]  # a replay
    assert state.load_trace(EVENT.id)[-1]["step"] == "dlq.retried"


def test_a_failed_task_without_an_event_is_dead_lettered_whole(redis_client, alerts) -> None:
    state = PipelineState(redis_client)
    payload = ["run:mirror:servicetrade:job:7", "digest"]
    dlq_id = lifecycle.fail_task(
        state, "run", NEXT_RUN_TASK, payload, EVENTS_QUEUE, KeyError("gone"), what="starting the next run"
    )
    [dead] = queries.list_dead_letters(state)
    assert dead["id"] == dlq_id and dead["kind"] == "run" and dead["error"] == "KeyError: 'gone'"
    assert len(alerts.sent) == 1
    # The same failure again replaces its entry; a scheduled one alerts at most once per window.
    for _ in range(3):
        lifecycle.fail_task(
            state, "run", NEXT_RUN_TASK, payload, EVENTS_QUEUE, KeyError("gone"), what="x", alert_once_per=3600
        )
    assert len(state.dead_letters()) == 1 and len(alerts.sent) == 2
    operations.retry_dead_letter(state, dlq_id)
    assert queued(redis_client, EVENTS_QUEUE) == [(NEXT_RUN_TASK, payload)]


def test_run_once_fails_anything_but_redis_trouble_for_good(alerts) -> None:
    failed: list[tuple[str, int]] = []
    retry.run_once(lambda: int("x"), lambda exc, n: failed.append((type(exc).__name__, n)))
    assert failed == [("ValueError", 1)]

    def broken_fail(exc: Exception, n: int) -> None:
        raise RuntimeError("the DLQ write itself broke")

    with pytest.raises(RuntimeError):
        retry.run_once(lambda: int("x"), broken_fail)
    [(message, tags)] = alerts.sent  # a person still hears of both
    assert tags == {"alert": "unrecorded-failure"} and "ValueError" in message and "DLQ write" in message


def test_the_poll_task_dead_letters_a_failing_poller_and_alerts_once_an_hour(
    redis_client, redis_url, alerts, monkeypatch
) -> None:
    """The task wrapper itself (`workers.polling.tasks.poll`), as Celery runs it: a poller that raises is a
    dead letter that runs the poll again, with one alert per hour however often beat retries it."""
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)  # the Celery app reads it when first imported
    tasks = importlib.import_module("workers.polling.tasks")

    class Broken:
        def poller(self, name: str) -> Any:
            raise LookupError(f"no poller {name!r}")

    state = PipelineState(redis_client)
    monkeypatch.setattr(tasks, "context", lambda: Broken())
    monkeypatch.setattr(tasks, "failure_state", lambda: state)
    for _ in range(3):
        assert tasks.poll.run("servicetrade.job") == {}
    [dead] = queries.list_dead_letters(state)
    assert (dead["kind"], dead["action"]) == ("poll", "poll servicetrade.job")
    assert dead["error"] == "LookupError: no poller 'servicetrade.job'"
    assert len(alerts.sent) == 1
    operations.retry_dead_letter(state, dead["id"])
    assert queued(redis_client, EVENTS_QUEUE) == [(tasks.POLL_TASK, ["servicetrade.job"])]
