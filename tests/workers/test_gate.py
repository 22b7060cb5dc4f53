"""The shared gate paces a target evenly across processes and honours blocks, quotas and pauses."""

from __future__ import annotations

import threading
import time

import redis

from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from fieldrelay.targets import TargetLimits
from workers.gate import SAFETY, TargetGate


def limits(rate: int, window: float, credential: str = "") -> dict[str, TargetLimits]:
    return {"synchroteam": TargetLimits("synchroteam", "actions.synchroteam", rate, window, credential=credential)}


def take_all(gate: TargetGate, target: str, seconds: float) -> list[float]:
    granted = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        wait = gate.acquire(target)
        if wait is None:
            granted.append(time.monotonic())
        else:
            time.sleep(min(wait.seconds, 0.05))
    return granted


def compete(redis_url: str, targets: dict[str, TargetLimits], seconds: float, takers: int = 4) -> list[float]:
    """Grant times when `takers` threads, each with its own Redis client, take slots for `seconds`."""
    results: list[list[float]] = []

    def worker() -> None:
        client = redis.Redis.from_url(redis_url)
        results.append(take_all(TargetGate(client, targets), "synchroteam", seconds))
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(takers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(x for r in results for x in r)


def test_many_threads_share_one_rate(redis_url):
    granted = compete(redis_url, limits(20, 1.0), 2.0)  # 20 per second
    # 4 competing takers together get the one shared rate, never more.
    assert 20 * SAFETY * 2 - 3 <= len(granted) <= 20 * 2 + 1
    for i in range(len(granted) - 20):  # no 1-second window holds more than the limit
        assert granted[i + 20] - granted[i] >= 1.0 - 0.02


def test_headers_block_until_reset_and_learn_the_limit(redis_client):
    gate = TargetGate(redis_client, limits(120, 60.0))
    assert gate.acquire("synchroteam") is None
    gate.observe("synchroteam", limit=60, remaining=0, reset_at=time.time() + 5)
    wait = gate.acquire("synchroteam")
    assert wait is not None and wait.reason == "blocked" and 3.5 < wait.seconds <= 6
    assert abs(gate._interval_ms("synchroteam") - 1000 / SAFETY) < 1  # learned 60/min


def test_quota_pauses_until_reset_and_alerts_once(redis_client):
    gate = TargetGate(redis_client, limits(120, 60.0))
    reset = time.time() + 100
    assert gate.quota_exhausted("synchroteam", reset) is True
    assert gate.quota_exhausted("synchroteam", reset) is False
    wait = gate.acquire("synchroteam")
    assert wait is not None and wait.reason == "quota" and 95 < wait.seconds <= 101


def test_a_paused_target_waits_and_others_do_not(redis_client):
    gate = TargetGate(redis_client, {})
    redis_client.set("fieldrelay:paused:synergist", 1)
    wait = gate.acquire("synergist")
    assert wait is not None and wait.reason == "paused"
    assert gate.acquire("http") is None


def test_credentials_get_separate_budgets(redis_client):
    a = TargetGate(redis_client, limits(1, 60.0, "domain-a"))
    b = TargetGate(redis_client, limits(1, 60.0, "domain-b"))
    assert a.acquire("synchroteam") is None and b.acquire("synchroteam") is None
    assert a.acquire("synchroteam") is not None


def test_credit_for_missed_slots_never_overfills_a_window(redis_url):
    granted = compete(redis_url, limits(120, 2.0), 4.0)  # 60 per second, with 2 slots of credit
    assert len(granted) >= 0.85 * 240
    for i in range(len(granted) - 120):  # any 2-second window, wherever it starts, holds at most 120
        assert granted[i + 120] - granted[i] >= 2.0 - 0.02


def test_a_slot_takes_the_steps_lock_with_it_or_waits_as_busy(redis_client):
    gate = TargetGate(redis_client, limits(0, 60))
    lock = ("fieldrelay:steplock:job-1:mirror:0", "task-A", 120)
    assert gate.acquire("synchroteam", lock) is None
    assert redis_client.get(lock[0]) == b"task-A" and 0 < redis_client.ttl(lock[0]) <= 120
    assert gate.acquire("synchroteam", lock) is None  # its redelivery (same task id) takes it back
    wait = gate.acquire("synchroteam", (lock[0], "task-B", 120))
    assert wait is not None and wait.reason == "busy" and redis_client.get(lock[0]) == b"task-A"
    redis_client.set("fieldrelay:paused:synchroteam", 1)
    wait = gate.acquire("synchroteam", ("fieldrelay:steplock:job-2:mirror:0", "task-C", 120))
    assert wait is not None and wait.reason == "paused"
    assert not redis_client.exists("fieldrelay:steplock:job-2:mirror:0")  # a waiting call takes no lock


def test_a_steps_started_entry_is_written_only_with_its_slot_and_lock(redis_client):
    state = PipelineState(redis_client)
    gate = TargetGate(redis_client, limits(0, 0.0))

    def started(event_id: str) -> list:
        words, _log = state.prepared_trace(event_id, Step.ACTION_STARTED, rule="r", index=0, action="x.y")
        return words

    redis_client.set("fieldrelay:steplock:k", "someone-else")
    busy = gate.acquire("synchroteam", ("fieldrelay:steplock:k", "me", 60), then=started("ev1"))
    assert busy is not None and busy.reason == "busy"
    assert not redis_client.exists("fieldrelay:trace:ev1")

    state.pause_target("synchroteam")
    paused = gate.acquire("synchroteam", ("fieldrelay:steplock:j", "me", 60), then=started("ev2"))
    assert paused is not None and paused.reason == "paused"
    assert not redis_client.exists("fieldrelay:trace:ev2") and not redis_client.exists("fieldrelay:steplock:j")
    state.resume_target("synchroteam")

    with state.batched():
        state.trace("ev3", Step.RUN_STARTED, rule="r", mode="queued")  # the step's earlier writes go first
        granted = gate.acquire(
            "synchroteam", ("fieldrelay:steplock:j", "me", 60), then=started("ev3"), run=state.run_after_writes
        )
    assert granted is None
    assert [e["step"] for e in state.load_trace("ev3")] == [Step.RUN_STARTED, Step.ACTION_STARTED]
    assert 0 < redis_client.ttl("fieldrelay:trace:ev3") <= state.retention
