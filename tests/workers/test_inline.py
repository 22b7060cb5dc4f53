"""Which first action an event's task runs itself: on a queue this worker consumes, of an unpaced target."""

from __future__ import annotations

from fieldrelay.settings import Settings
from fieldrelay.targets import target_limits
from workers.inline import InlineAction, inline_queues


def test_only_unpaced_targets_on_consumed_queues_run_inline():
    targets = target_limits(Settings(servicetrade_rate_limit=0, synergist_rate_limit=0))
    everything = {t.queue for t in targets.values()} | {"events"}
    assert inline_queues(targets, everything) == {"actions.http", "actions.servicetrade", "actions.synergist"}
    assert inline_queues(targets, {"events"}) == frozenset()  # an events-only worker enqueues them all
    paced = target_limits(Settings(servicetrade_rate_limit=100, synergist_rate_limit=120))
    assert inline_queues(paced, everything) == {"actions.http"}


def test_the_first_action_of_the_first_run_is_taken_the_rest_are_enqueued():
    sent: list[tuple[str, str, int, str]] = []
    first = InlineAction(frozenset({"actions.http"}), lambda *args: sent.append(args))
    first("ev1", "d1", 0, "actions.synchroteam")  # a paced target: its queue
    first("ev1", "d2", 0, "actions.http")
    first("ev1", "d3", 0, "actions.http")  # one inline action per event
    first("ev1", "d2", 1, "actions.http")
    assert first.taken == ("ev1", "d2", "actions.http")
    assert sent == [
        ("ev1", "d1", 0, "actions.synchroteam"),
        ("ev1", "d3", 0, "actions.http"),
        ("ev1", "d2", 1, "actions.http"),
    ]
    first.release()  # the event's step did not complete: the taken one is enqueued after all
    assert first.taken is None and sent[-1] == ("ev1", "d2", 0, "actions.http")


def test_the_step_after_a_task_s_step_is_taken_once_and_given_back_if_that_step_did_not_complete():
    sent: list[tuple[str, str, int, str]] = []
    after = InlineAction(frozenset({"actions.http"}), lambda *args: sent.append(args), index=3)
    after("ev1", "d1", 3, "actions.synchroteam")  # paced: its queue
    after("ev1", "d1", 3, "actions.http")
    assert after.taken == ("ev1", "d1", "actions.http") and sent == [("ev1", "d1", 3, "actions.synchroteam")]
    after.release()
    assert after.taken is None and sent[-1] == ("ev1", "d1", 3, "actions.http")
