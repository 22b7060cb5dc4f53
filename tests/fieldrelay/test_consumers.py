"""Unacknowledged messages and their consumers' leases: a live consumer's message is never taken, however
old; a dead one's goes back to its queue once, under a fresh delivery tag."""

from __future__ import annotations

import base64
import time

import orjson
import redis

from fieldrelay.consumers import (
    OWNERS,
    RESTORED_KEY,
    UNACKED,
    UNACKED_INDEX,
    Leases,
    count_by_state,
    held_messages,
    lease_key,
    restore_orphans,
    restore_stale,
)
from fieldrelay.metrics import RedisCollector, metric_key


def deliver(r: redis.Redis, tag: str, consumer: str | None, *, queue: str = "events", at: float | None = None) -> None:
    """What kombu's Redis QoS.append (and fieldrelay's) writes when a consumer takes a message."""
    body = base64.b64encode(orjson.dumps([["ev-1", "digest", 0], {}, {}])).decode()
    message = {
        "body": body,
        "headers": {"task": "fieldrelay.run_action", "id": f"task-{tag}"},
        "properties": {"delivery_tag": tag, "body_encoding": "base64", "delivery_info": {"routing_key": queue}},
    }
    pipe = r.pipeline()
    pipe.zadd(UNACKED_INDEX, {tag: at if at is not None else time.time()})
    pipe.hset(UNACKED, tag, orjson.dumps([message, "", queue]))
    if consumer is not None:
        pipe.hset(OWNERS, tag, consumer)
    pipe.execute()


def test_states_follow_the_leases(redis_client: redis.Redis) -> None:
    leases = Leases(redis_client)
    leases.renew("live")
    deliver(redis_client, "t-live", "live", at=time.time() - 3600)  # held an hour: still the live consumer's
    deliver(redis_client, "t-dead", "dead")
    deliver(redis_client, "t-kombu", None)
    states = {h.tag: h.state for h in held_messages(redis_client)}
    assert states == {"t-live": "held", "t-dead": "orphaned", "t-kombu": "untracked"}
    assert count_by_state(redis_client) == {"held": 1, "orphaned": 1, "untracked": 1}
    [dead] = [h for h in held_messages(redis_client) if h.tag == "t-dead"]
    assert (dead.task, dead.args, dead.queue, dead.consumer) == (
        "fieldrelay.run_action",
        ["ev-1", "digest", 0],
        "events",
        "dead",
    )


def test_the_scrape_shows_each_state_and_an_orphan_until_it_is_put_back(redis_client: redis.Redis) -> None:
    Leases(redis_client).renew("live")
    deliver(redis_client, "t-live", "live")
    deliver(redis_client, "t-dead", "dead")
    deliver(redis_client, "t-kombu", None)

    def unacked() -> dict[str, float]:
        [family] = [m for m in RedisCollector(redis_client).collect() if m.name == "fieldrelay_unacked_messages"]
        return {s.labels["state"]: s.value for s in family.samples}

    assert unacked() == {"held": 1.0, "orphaned": 1.0, "untracked": 1.0}
    restore_orphans(redis_client)
    assert unacked() == {"held": 1.0, "orphaned": 0.0, "untracked": 1.0}


def test_only_a_dead_consumers_messages_go_back_once_under_a_fresh_tag(redis_client: redis.Redis) -> None:
    leases = Leases(redis_client)
    leases.renew("live")
    deliver(redis_client, "t-live", "live", at=time.time() - 3600)
    deliver(redis_client, "t-dead", "dead", queue="actions.synchroteam")
    deliver(redis_client, "t-kombu", None)

    restored = restore_orphans(redis_client)
    assert [h.tag for h in restored] == ["t-dead"]
    assert restore_orphans(redis_client) == []  # a second sweeper (another worker) finds nothing left
    [again] = redis_client.lrange("actions.synchroteam", 0, -1)
    message = orjson.loads(again)
    assert message["properties"]["delivery_tag"] != "t-dead"  # an ack of the old tag cannot remove it
    assert message["headers"]["redelivered"] is True and message["headers"]["id"] == "task-t-dead"
    assert set(redis_client.hkeys(UNACKED)) == {b"t-live", b"t-kombu"}
    assert set(redis_client.hkeys(OWNERS)) == {b"t-live"}
    assert redis_client.zscore(UNACKED_INDEX, "t-dead") is None
    assert redis_client.hgetall(RESTORED_KEY) == {b'["worker"]': b"1"}
    assert metric_key("fieldrelay_messages_restored_total") == RESTORED_KEY


def test_a_consumer_that_renews_in_time_keeps_what_it_holds(redis_client: redis.Redis) -> None:
    leases = Leases(redis_client, lease=0.3)
    assert leases.renew("c1") is False  # the first renewal: there was no lease before
    deliver(redis_client, "t1", "c1")
    for _ in range(3):
        time.sleep(0.1)
        assert leases.renew("c1") is True
        assert restore_orphans(redis_client, leases=leases) == []
    time.sleep(0.4)  # not renewed for longer than the lease: dead
    assert [h.tag for h in restore_orphans(redis_client, leases=leases)] == ["t1"]
    assert leases.renew("c1") is False  # a consumer that comes back sees that its lease lapsed


def test_the_supervisor_puts_back_only_its_own_childs_messages(redis_client: redis.Redis) -> None:
    deliver(redis_client, "t-mine", "child-1")
    deliver(redis_client, "t-other", "other-host")  # dead too, but another supervisor's (or a sweeper's) job
    Leases(redis_client).release("child-1")
    restored = restore_orphans(redis_client, consumer="child-1", by="supervisor")
    assert [h.tag for h in restored] == ["t-mine"]
    assert redis_client.hgetall(RESTORED_KEY) == {b'["supervisor"]': b"1"}


def test_a_message_acked_meanwhile_is_left_alone(redis_client: redis.Redis) -> None:
    deliver(redis_client, "t1", "dead")
    [held] = held_messages(redis_client)
    redis_client.hdel(UNACKED, "t1")  # acknowledged between the read and the restore
    redis_client.zrem(UNACKED_INDEX, "t1")
    assert restore_orphans(redis_client) == []
    assert redis_client.llen("events") == 0
    assert redis_client.hlen(OWNERS) == 0  # the owner entry of a message gone is forgotten
    assert held.tag == "t1" and not redis_client.exists(lease_key("dead"))


def test_a_worker_puts_back_what_its_broken_channel_held_after_a_grace(redis_client: redis.Redis) -> None:
    Leases(redis_client).renew("me")
    Leases(redis_client).renew("other")
    deliver(redis_client, "t-old", "me/1")  # the channel its broken connection left behind
    deliver(redis_client, "t-new", "me/2")  # the channel it consumes on now
    deliver(redis_client, "t-other", "other/1")  # another live worker's: never this one's to touch
    seen: dict[str, float] = {}
    assert restore_stale(redis_client, "me", {"me/2"}, seen=seen, grace=0.2) == []  # first seen: wait
    assert restore_orphans(redis_client) == []  # the lease keeps it from every other worker
    time.sleep(0.25)
    assert [h.tag for h in restore_stale(redis_client, "me", {"me/2"}, seen=seen, grace=0.2)] == ["t-old"]
    assert set(redis_client.hkeys(UNACKED)) == {b"t-new", b"t-other"}
    assert redis_client.hgetall(RESTORED_KEY) == {b'["reconnect"]': b"1"}
