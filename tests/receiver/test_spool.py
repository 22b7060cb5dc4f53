"""While Redis is down the receiver answers 503 and spools; once it is back the spool lands in Redis."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from fieldrelay.settings import Settings
from fieldrelay_cli.embedded_redis import EmbeddedRedis, free_port
from receiver.app import create_app
from receiver.spool import Spool
from workers.actions.registry import action_params

SAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "webhook-sample.json").read_text())


def test_outage_spools_and_the_spool_is_replayed_when_redis_returns(tmp_path):
    port = free_port()
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{port}/0",
        webhook_tokens="tok-0123456789abcdef",
        data_dir=tmp_path,
        spool_replay_interval=0.1,
    )
    with TestClient(create_app(settings, action_params())) as client:
        for _ in range(2):
            assert client.post("/webhooks/servicetrade/tok-0123456789abcdef", json=SAMPLE).status_code == 503
        assert Spool(tmp_path / "spool").pending() == 2

        with EmbeddedRedis(tmp_path / "redis", port=port, appendonly=False) as server:
            r = redis.Redis.from_url(server.url)
            deadline = time.monotonic() + 10
            while r.llen("events") < 8 and time.monotonic() < deadline:
                time.sleep(0.05)
            messages = [json.loads(m) for m in r.lrange("events", 0, -1)]
            r.close()
    assert len(messages) == 8  # two webhooks of four events, one message each
    events = [json.loads(base64.b64decode(m["body"]))[0][0] for m in messages[:4]]
    assert {e["entity"]["id"] for e in events} == {34872, 9623, 35769, 453845}
    assert not list((tmp_path / "spool").glob("spool-*.log"))


def test_replay_keeps_the_file_while_redis_is_down(tmp_path):
    spool = Spool(tmp_path)
    spool.write("events", [b"message"])

    async def main() -> None:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
        with contextlib.suppress(redis.exceptions.ConnectionError):
            await spool.replay(client)
        await client.aclose()

    asyncio.run(main())
    assert spool.pending() == 1


def test_writers_and_a_replayer_never_lose_a_line(redis_url, redis_client, tmp_path):
    import threading

    writers = [Spool(tmp_path) for _ in range(3)]

    def write(spool: Spool) -> None:
        for i in range(200):
            spool.write("q", [f"m{i}".encode()])

    async def replay_until(done: threading.Event) -> None:
        client = aioredis.Redis.from_url(redis_url)
        while not done.is_set() or Spool(tmp_path).pending():
            await Spool(tmp_path).replay(client)
            await asyncio.sleep(0.001)
        await client.aclose()

    done = threading.Event()
    threads = [threading.Thread(target=write, args=(s,)) for s in writers]
    for t in threads:
        t.start()
    replayer = threading.Thread(target=lambda: asyncio.run(replay_until(done)))
    replayer.start()
    for t in threads:
        t.join()
    done.set()
    replayer.join()
    assert redis_client.llen("q") == 600
