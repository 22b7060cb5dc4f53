"""Shared fixtures: a private Redis server for the whole run (never the machine's 6379)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fieldrelay import metrics
from fieldrelay.tally import Tally
from fieldrelay_cli.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis private to this test run; FIELDRELAY_TEST_REDIS_URL reuses a given one."""
    given = os.environ.get("FIELDRELAY_TEST_REDIS_URL")
    if given:
        yield given
        return
    server = EmbeddedRedis(Path(tmp_path_factory.mktemp("redis")), appendonly=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A clean database for one test."""
    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    yield redis_server


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def metrics_tally(monkeypatch: pytest.MonkeyPatch) -> Iterator[Tally]:
    """A test's own tally of worker counters, written when the test ends (not by a thread at any moment,
    possibly into the next test's database)."""
    tally = Tally(every=None)
    monkeypatch.setattr(metrics, "TALLY", tally)
    yield tally
    try:
        tally.flush()
    finally:
        tally.client = None
