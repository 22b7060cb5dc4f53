"""Delayed tasks: released exactly once when due, as messages a Celery worker accepts."""

from __future__ import annotations

import base64
import json
import threading
import time

from workers.delayed import DelayedMover, DelayedTasks


def test_due_tasks_move_to_their_queue_and_later_ones_wait(redis_client):
    delayed = DelayedTasks(redis_client)
    delayed.schedule("fieldrelay.run_action", ["ev", "d", 0], "actions.synchroteam", 0)
    delayed.schedule("fieldrelay.run_action", ["ev", "d", 1], "actions.synchroteam", 60)
    assert delayed.move_due() == 1
    [message] = redis_client.lrange("actions.synchroteam", 0, -1)
    envelope = json.loads(message)
    assert envelope["headers"]["task"] == "fieldrelay.run_action"
    assert envelope["properties"]["delivery_info"]["routing_key"] == "actions.synchroteam"
    assert json.loads(base64.b64decode(envelope["body"]))[0] == ["ev", "d", 0]
    assert [(t, a) for t, a, _ in delayed.pending()] == [("fieldrelay.run_action", ["ev", "d", 1])]


def test_concurrent_movers_release_each_task_once(redis_client):
    delayed = DelayedTasks(redis_client)
    for i in range(300):
        delayed.schedule("t", [i], "q", 0)

    def drain() -> None:
        while delayed.move_due(batch=7):
            pass

    movers = [threading.Thread(target=drain) for _ in range(8)]
    for m in movers:
        m.start()
    for m in movers:
        m.join()
    assert redis_client.llen("q") == 300
    assert delayed.pending() == []


def test_mover_thread_releases_when_due(redis_client):
    delayed = DelayedTasks(redis_client)
    mover = DelayedMover(delayed, interval=0.02)
    mover.start()
    try:
        delayed.schedule("t", [1], "q", 0.2)
        time.sleep(0.1)
        assert redis_client.llen("q") == 0
        deadline = time.monotonic() + 5
        while redis_client.llen("q") == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert redis_client.llen("q") == 1
    finally:
        mover.stop()
        mover.join()
