"""The entity state store: versions, what came before them, the size bound, compare-and-set and the TTL."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from fieldrelay.entitystate import EntityStore, EntityVersion, bounded, successor

BROUGHT: dict[str, Any] = {"via": "webhook", "action": "updated", "max_bytes": 16384}


@pytest.fixture
def store(redis_client: redis.Redis) -> EntityStore:
    return EntityStore(redis_client, ttl=600, max_bytes=16384)


def test_a_version_round_trips_with_a_token_that_follows_its_content():
    version = EntityVersion({"status": "completed"}, version_at=10, newest=10, event_id="e1", via="poll")
    raw = version.encode()
    again = EntityVersion.decode(raw)
    assert (again.record, again.version_at, again.newest, again.event_id, again.via) == (
        {"status": "completed"},
        10,
        10,
        "e1",
        "poll",
    )
    assert again.token == raw[:16].decode() and len(again.token) == 16
    assert EntityVersion.decode(EntityVersion({"status": "new"}).encode()).token != again.token
    assert EntityVersion.decode(None) == EntityVersion()


def test_the_version_before_an_event_is_rebuilt_from_what_it_changed():
    first = successor(EntityVersion(), {"status": "scheduled", "n": 1}, at=5, event_id="e1", decided=True, **BROUGHT)
    assert first.first and first.previous() is None  # nothing was known before e1
    second = successor(first, {"status": "completed", "n": 1}, at=9, event_id="e2", decided=True, **BROUGHT)
    assert second.before == {"status": "scheduled"} and not second.first
    before = second.previous()
    assert before is not None and before.record == {"status": "scheduled", "n": 1}
    redelivered = second.as_seen_by("e2")
    assert redelivered is not None and redelivered.record == {"status": "scheduled", "n": 1}  # its own redelivery
    assert second.as_seen_by("e3") is second  # any other event compares with the stored version
    assert (second.newest, second.version_at) == (9, 9)


def test_a_changeset_patch_knows_only_its_fields_until_a_whole_record_is_seen():
    patched = successor(
        EntityVersion(newest=3), {"status": "completed"}, at=7, event_id="e1", decided=True, patch=True, **BROUGHT
    )
    assert patched.partial and patched.digest is None
    assert patched.field("status") == (True, "completed")
    assert patched.field("description") == (False, None)
    whole = successor(
        patched, {"status": "completed", "description": "x"}, at=8, event_id="e2", decided=True, **BROUGHT
    )
    assert not whole.partial and whole.digest is not None
    before = whole.previous()
    assert whole.unknown_before == ("description",) and before is not None
    assert before.field("description") == (False, None)


def test_a_poller_does_not_move_the_decided_time():
    stored = EntityVersion({"status": "new"}, newest=4)
    polled = successor(
        stored, {"status": "new"}, at=9, event_id="p", via="poll", action="updated", max_bytes=999, decided=False
    )
    assert polled.newest == 4 and polled.version_at == 9


def test_the_size_bound_drops_the_largest_fields_first_and_they_become_unknown():
    record = {"status": "completed", "notes": "x" * 5000, "serviceRequests": ["y" * 100] * 20, "id": 1}
    kept, dropped = bounded(record, 1024)
    assert dropped == ("notes", "serviceRequests") and kept == {"status": "completed", "id": 1}
    version = successor(EntityVersion(), record, at=1, event_id="e", decided=True, **{**BROUGHT, "max_bytes": 1024})
    assert version.field("notes") == (False, None) and version.field("status") == (True, "completed")
    assert len(version.encode()) < 1024 + 400


def test_compare_and_set_lets_one_of_two_writers_win(store: EntityStore, redis_client: redis.Redis):
    empty = store.read("servicetrade", "job", 1)
    assert empty.token == ""
    a = EntityVersion({"status": "a"}, newest=1)
    b = EntityVersion({"status": "b"}, newest=1)
    assert store.write("servicetrade", "job", 1, a, expect=empty.token)
    assert not store.write("servicetrade", "job", 1, b, expect=empty.token)  # read the same, came second
    stored = store.read("servicetrade", "job", 1)
    assert stored.record == {"status": "a"}
    assert store.write("servicetrade", "job", 1, b, expect=stored.token)
    assert 0 < redis_client.ttl("fieldrelay:entity:servicetrade:job:1") <= 600


def test_many_at_once_in_one_round_trip(store: EntityStore, redis_client: redis.Redis):
    store.write("synergist", "activity", "7", EntityVersion({"a": 1}), expect="")
    found = store.read_many("synergist", "activity", ["7", "8"])
    assert list(found) == ["7"]
    written = store.write_many(
        "synergist",
        "activity",
        {"7": (EntityVersion({"a": 2}), "stale-token-0000"), "8": (EntityVersion({"a": 3}), "")},
    )
    assert written == {"8"}
    redis_client.expire("fieldrelay:entity:synergist:activity:7", 5)
    store.touch_many("synergist", "activity", ["7"])
    assert redis_client.ttl("fieldrelay:entity:synergist:activity:7") > 5


def test_the_old_values_kept_for_a_redelivery_are_bounded_too():
    big = {"status": "new", "notes": "x" * 3000}
    first = successor(EntityVersion(), big, at=1, event_id="e1", decided=True, **{**BROUGHT, "max_bytes": 4096})
    second = successor(
        first,
        {"status": "done", "notes": "y" * 3000},
        at=2,
        event_id="e2",
        decided=True,
        **{**BROUGHT, "max_bytes": 4096},
    )
    assert second.before == {"status": "new"} and second.unknown_before == ("notes",)
    before = second.previous()
    assert before is not None and before.field("notes") == (False, None) and before.field("status") == (True, "new")
    assert len(second.encode()) < 4096 + 1024 + 400


def test_the_state_kept_before_this_store_is_moved_into_it_once(store: EntityStore, redis_client: redis.Redis):
    import orjson

    from fieldrelay.entitystate import migrate_legacy_state

    redis_client.hset(
        "fieldrelay:poll:snap:synergist.activity",
        mapping={"6712": orjson.dumps({"h": "d1", "r": {"activitySubject": "x"}, "t": 5, "i": 6712, "d": False})},
    )
    redis_client.hset("fieldrelay:seen:servicetrade:job", mapping={"35769": 1401833052})
    assert migrate_legacy_state(redis_client, store) == 2
    activity = store.read("synergist", "activity", "6712")
    assert (activity.record, activity.digest, activity.version_at, activity.entity_id) == (
        {"activitySubject": "x"},
        "d1",
        5,
        6712,
    )
    assert redis_client.smembers("fieldrelay:poll:ids:synergist.activity") == {b"6712"}
    assert store.read("servicetrade", "job", "35769").newest == 1401833052
    assert not redis_client.exists("fieldrelay:poll:snap:synergist.activity", "fieldrelay:seen:servicetrade:job")
    redis_client.hset("fieldrelay:seen:servicetrade:job", mapping={"1": 1})
    assert migrate_legacy_state(redis_client, store) == 0  # once per Redis


def test_a_dropped_field_keeps_a_digest_that_tells_equal_from_changed():
    brought = {**BROUGHT, "max_bytes": 1024}
    record = {"status": "new", "notes": "x" * 5000}
    first = successor(EntityVersion(), record, at=1, event_id="e1", decided=True, **brought)
    again = EntityVersion.decode(first.encode())
    assert again.dropped == ("notes",) and again.field("notes") == (False, None)
    assert again.unchanged("notes", record) and not again.unchanged("notes", {**record, "notes": "y"})
    assert not again.unchanged("status", record)  # a kept field is compared by value, not here

    second = successor(again, {**record, "notes": "z" * 5000}, at=2, event_id="e2", decided=True, **brought)
    assert second.before_sums == {"notes": first.sums["notes"]} and "notes" not in second.unknown_before
    before = second.previous()
    assert before is not None and before.unchanged("notes", record)  # the version before e2, by digest
    # A field dropped earlier that fits again is compared by digest too: unchanged is not "unknown before".
    shrunk = successor(
        EntityVersion({"status": "new"}, dropped=("notes",), sums={"notes": first.sums["notes"]}),
        {"status": "new", "notes": "x" * 5000},
        at=3,
        event_id="e3",
        decided=True,
        **{**BROUGHT, "max_bytes": 8192},
    )
    assert shrunk.unknown_before == () and shrunk.field("notes") == (True, "x" * 5000)
