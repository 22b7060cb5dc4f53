"""Group commit: concurrent publishes share LPUSHes, and each returns only after its own write."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from fieldrelay.queues import PROCESS_EVENT_TASK
from fieldrelay_cli.embedded_redis import free_port
from receiver.publisher import EventPublisher
from tests.queued import message_events, queued_events


def event(i: int) -> dict:
    return {
        "source": "servicetrade",
        "via": "webhook",
        "action": "updated",
        "occurred_at": i,
        "entity": {"type": "job", "id": i, "uri": f"x/job/{i}"},
        "message_id": "m",
        "changes": None,
    }


def test_concurrent_publishes_all_land_and_in_order(redis_url, redis_client):
    async def main() -> int:
        client = aioredis.Redis.from_url(redis_url)
        publisher = EventPublisher(client, max_batch=16)
        calls = 0
        original = client.lpush

        async def counting_lpush(*args: Any) -> int:
            nonlocal calls
            calls += 1
            return await original(*args)

        # A counting wrapper in place of the bound method; redis types lpush per client flavour.
        client.lpush = counting_lpush  # type: ignore[method-assign, assignment]
        await asyncio.gather(*(publisher.publish([event(i)]) for i in range(100)))
        await client.aclose()
        return calls

    lpushes = asyncio.run(main())
    assert lpushes < 100  # coalesced
    ids = [e["entity"]["id"] for e in queued_events(redis_client)]
    assert ids == list(range(100))  # FIFO as consumed by BRPOP
    assert redis_client.llen("events") == 100  # one event per message, the publisher's default


@pytest.mark.parametrize("per_message", [2, 8])
def test_events_committed_together_share_messages_of_at_most_per_message(redis_url, redis_client, per_message):
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        publisher = EventPublisher(client, per_message=per_message)
        # One webhook of three entities, then many of one, all arriving while the first write is in flight.
        await asyncio.gather(
            publisher.publish([event(0), event(1), event(2)]), *(publisher.publish([event(i)]) for i in range(3, 40))
        )
        await client.aclose()

    asyncio.run(main())
    sizes = [len(message_events(raw)) for raw in reversed(redis_client.lrange("events", 0, -1))]
    assert max(sizes) == per_message and sum(sizes) == 40
    assert [e["entity"]["id"] for e in queued_events(redis_client)] == list(range(40))


def test_an_event_alone_is_a_process_event_message(redis_url, redis_client):
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await EventPublisher(client, per_message=8).publish([event(7)])
        await client.aclose()

    asyncio.run(main())
    (raw,) = redis_client.lrange("events", 0, -1)
    assert json.loads(raw)["headers"]["task"] == PROCESS_EVENT_TASK
    assert message_events(raw) == [event(7)]


def test_a_failed_batch_fails_every_waiting_request():
    async def main() -> list[BaseException | None]:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
        publisher = EventPublisher(client)
        results = await asyncio.gather(*(publisher.publish([event(i)]) for i in range(10)), return_exceptions=True)
        await client.aclose()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, redis.exceptions.ConnectionError) for r in results), results


def test_publisher_recovers_after_a_failure(redis_url, redis_client):
    async def main() -> None:
        dead = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
        publisher = EventPublisher(dead)
        with pytest.raises(redis.exceptions.ConnectionError):
            await publisher.publish([event(1)])
        await dead.aclose()
        publisher.client = aioredis.Redis.from_url(redis_url)
        await publisher.publish([event(2)])
        await publisher.client.aclose()

    asyncio.run(main())
    assert redis_client.llen("events") == 1
