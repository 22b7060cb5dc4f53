"""fieldrelay's kombu transport on a real Redis: a message is taken and recorded as held in one step, an idle
consumer wakes on a message on any of its queues, and its lease is taken before it consumes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from fieldrelay.consumers import OWNERS, UNACKED, UNACKED_INDEX, held_messages, lease_key
from workers import broker

QUEUES = [Queue(name, Exchange(""), routing_key=name) for name in ("events", "actions.synchroteam")]


@pytest.fixture
def connection(redis_url: str) -> Iterator[Connection]:
    with Connection(redis_url, transport="workers.broker:Transport") as conn:
        yield conn
    broker.forget_process()  # stops the lease keeper: the next test flushes this Redis


def publish(conn: Connection, queue: str, body: dict[str, Any]) -> None:
    with conn.Producer() as producer:
        producer.publish(body, routing_key=queue, serializer="json")


def test_a_message_is_held_under_its_owner_before_the_consumer_sees_it(
    connection: Connection, redis_client: redis.Redis
) -> None:
    publish(connection, "actions.synchroteam", {"n": 1})
    seen: list[dict[str, Any]] = []

    def on_message(body: Any, message: Any) -> None:
        # What a process killed here would leave behind: the message held, under its owner, in Redis.
        [held] = held_messages(redis_client)
        seen.append({"body": body, "state": held.state, "queue": held.queue, "tag": message.delivery_tag})
        message.ack()

    with connection.Consumer(QUEUES, callbacks=[on_message], accept=["json"]):
        connection.drain_events(timeout=5)
    [got] = seen
    assert got["body"] == {"n": 1} and got["state"] == "held" and got["queue"] == "actions.synchroteam"
    assert redis_client.hlen(UNACKED) == redis_client.zcard(UNACKED_INDEX) == redis_client.hlen(OWNERS) == 0


def test_a_message_the_process_never_handled_stays_held_for_a_restore(
    connection: Connection, redis_client: redis.Redis
) -> None:
    publish(connection, "events", {"n": 2})

    def dies(body: Any, message: Any) -> None:
        raise KeyboardInterrupt  # stands for the process dying between taking it and running it

    with connection.Consumer(QUEUES, callbacks=[dies], accept=["json"]), pytest.raises(KeyboardInterrupt):
        connection.drain_events(timeout=5)
    [held] = held_messages(redis_client)
    assert held.queue == "events" and held.owner is not None and held.owner.startswith(held.consumer or "?")
    assert redis_client.llen("events") == 0


def test_an_idle_consumer_wakes_on_any_of_its_queues(connection: Connection, redis_client: redis.Redis) -> None:
    got: list[tuple[float, Any]] = []

    def on_message(body: Any, message: Any) -> None:
        got.append((time.monotonic(), body))
        message.ack()

    with connection.Consumer(QUEUES, callbacks=[on_message], accept=["json"]):
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=0.5)  # nothing yet: it waits without taking anything
        for n, queue in enumerate(("events", "actions.synchroteam", "events")):
            publisher = threading.Timer(0.1, publish, args=(connection.clone(), queue, {"n": n}))
            publisher.start()
            connection.drain_events(timeout=5)
            publisher.join()
    assert [body["n"] for _, body in got] == [0, 1, 2]


def test_the_lease_is_taken_when_the_first_channel_consumes(connection: Connection, redis_client: redis.Redis) -> None:
    with connection.Consumer(QUEUES, callbacks=[], accept=["json"]), pytest.raises(TimeoutError):
        connection.drain_events(timeout=0.3)
    consumer = broker._Process.consumer
    assert consumer is not None and redis_client.exists(lease_key(consumer))


def test_a_lapsed_lease_is_renewed_when_nothing_held_was_taken_and_ends_the_process_otherwise(
    connection: Connection, redis_client: redis.Redis
) -> None:
    publish(connection, "events", {"n": 3})
    held: list[Any] = []
    with connection.Consumer(QUEUES, callbacks=[lambda body, message: held.append(message)], accept=["json"]):
        connection.drain_events(timeout=5)  # taken, not acknowledged
        keeper = broker._Process.keeper
        assert keeper is not None
        exits: list[int] = []
        keeper.exit = exits.append
        redis_client.delete(lease_key(keeper.consumer))  # e.g. Redis out of reach for longer than the lease
        keeper.lapsed()
        assert exits == []  # the message is still recorded as this worker's: nobody else runs it
        redis_client.hdel(OWNERS, held[0].delivery_tag)  # now another worker put it back
        keeper.lapsed()
        assert exits == [75]


def test_a_channel_closed_by_the_garbage_collector_never_waits_for_the_lock() -> None:
    """`close_channel` runs as a weakref finalizer, inside whatever allocation triggers a collection, possibly in
    a thread that holds `_Process.lock` (seen: `make test` hung 120 s in it). It must not take that lock."""
    owner = broker.open_channel("gc-test")
    assert owner in broker.live_channels()
    done = threading.Event()

    def collect() -> None:
        broker.close_channel(owner)
        done.set()

    with broker._Process.lock:  # as if a collection ran the finalizer inside a locked section
        worker = threading.Thread(target=collect, daemon=True)
        worker.start()
        worker.join(timeout=5)
        broker.close_channel(owner)  # the same thread, re-entering: returns at once as well
    assert done.is_set()
    assert owner not in broker.live_channels()
