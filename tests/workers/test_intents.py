"""Intents: recorded before a create's call, read back after a crash, in Redis and in memory alike."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from workers.actions.context import MemoryLinkStore
from workers.admission import Deferred
from workers.intents import Intents, MemoryIntents, RedisIntents, create_once


@pytest.fixture(params=["memory", "redis"])
def intents(request: pytest.FixtureRequest, redis_client: redis.Redis) -> Intents:
    return MemoryIntents() if request.param == "memory" else RedisIntents(redis_client, settle=0.0)


def test_the_first_begin_records_its_send_and_reports_none_before(intents: Intents) -> None:
    first = intents.begin("k", {"content": "a"})
    assert not first.sent_before
    again = intents.begin("k", {"content": "b"})  # a redelivery: the first attempt may have sent
    assert again.sent == [{"content": "a"}]
    assert again.first_sent_at is not None and abs(again.first_sent_at - time.time()) < 5
    intents.resend("k", {"content": "b"})
    third = intents.begin("k", {"content": "c"})
    assert third.sent == [{"content": "a"}, {"content": "b"}]
    assert third.first_sent_at == again.first_sent_at and (third.last_sent_at or 0) >= (again.last_sent_at or 0)
    intents.finish("k")
    assert not intents.begin("k", {}).sent_before


def test_create_once_creates_and_records_without_reading_back(intents: Intents) -> None:
    links, made = MemoryLinkStore(), []

    def create() -> dict[str, Any]:
        made.append(1)
        return {"id": 9}

    def find(sent: dict[str, Any], since: float) -> dict[str, Any] | None:
        raise AssertionError("a first attempt never reads back")

    result = create_once(links, intents, "k", {"v": 1}, create=create, find=find, ident=lambda r: r["id"])
    assert result == {"id": 9} and made == [1] and links.links == {"k": "9"}
    assert not intents.begin("k", {}).sent_before  # finished: the intent is gone


def test_after_a_crash_the_record_found_is_kept_and_nothing_is_created(intents: Intents) -> None:
    links = MemoryLinkStore()
    intents.begin("k", {"v": 1})  # the first attempt: sent, then killed before its record
    looked: list[tuple[dict[str, Any], float]] = []

    def find(sent: dict[str, Any], since: float) -> dict[str, Any] | None:
        looked.append((sent, since))
        return {"id": 4}

    result = create_once(
        links, intents, "k", {"v": 1}, create=lambda: pytest.fail("created again"), find=find, ident=lambda r: r["id"]
    )
    assert result == {"id": 4, "recovered": True} and links.links == {"k": "4"}
    assert looked[0][0] == {"v": 1} and looked[0][1] < time.time() - 200  # the target's clock may lag ours


def test_a_record_found_from_other_values_is_brought_up_to_date(intents: Intents) -> None:
    intents.begin("k", {"v": 1})
    result = create_once(
        MemoryLinkStore(),
        intents,
        "k",
        {"v": 2},  # this attempt renders other values (the entity changed meanwhile)
        create=lambda: pytest.fail("created again"),
        find=lambda sent, since: {"id": 4, **sent},
        ident=lambda r: r["id"],
        update=lambda found: {**found, "v": 2},
    )
    assert result == {"id": 4, "v": 2, "recovered": True}


def test_nothing_found_means_one_more_send_is_recorded_then_made(intents: Intents) -> None:
    intents.begin("k", {"v": 1})
    made = create_once(
        MemoryLinkStore(), intents, "k", {"v": 2}, create=lambda: {"id": 5}, find=lambda s, t: None, ident=lambda r: 5
    )
    assert made == {"id": 5}


def test_a_read_back_waits_out_the_earlier_call(redis_client: redis.Redis) -> None:
    intents = RedisIntents(redis_client, settle=10.0)
    intents.begin("k", {"v": 1})
    with pytest.raises(Deferred) as deferred:
        create_once(
            MemoryLinkStore(),
            intents,
            "k",
            {"v": 1},
            create=lambda: pytest.fail("created"),
            find=lambda s, t: pytest.fail("read back too soon"),
            ident=lambda r: r,
        )
    assert deferred.value.reason == "intent" and 9 < deferred.value.seconds <= 10
