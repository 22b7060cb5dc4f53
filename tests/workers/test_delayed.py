"""Delayed tasks: released exactly once when due, as messages a Celery worker accepts."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fieldrelay_cli.embedded_redis import free_port
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


def test_an_unreachable_redis_is_logged_once_and_backed_off_then_recovery_once(redis_client, caplog):
    """The mover ran every 250 ms and logged each failed round (196 lines a minute with Redis down)."""
    port = free_port()  # nothing listens here
    down = redis.Redis(port=port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    mover = DelayedMover(DelayedTasks(down), interval=0.25, max_backoff=10.0)
    with caplog.at_level(logging.INFO, logger="fieldrelay.delayed"):
        waits = [mover.step() for _ in range(8)]
        mover.delayed = DelayedTasks(redis_client)  # Redis is back
        after = [mover.step(), mover.step()]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert after == [0.25, 0.25]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("delayed tasks are not moving, Redis is unreachable")
    assert messages[1] == "delayed tasks are moving again (after 8 failed attempts)"
    down.close()
