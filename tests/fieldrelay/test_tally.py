"""A worker's counters are summed in the process and written about once a second (fieldrelay/tally.py)."""

from __future__ import annotations

import logging
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fieldrelay.metrics import metric_key
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from fieldrelay.tally import Tally
from fieldrelay_cli.embedded_redis import free_port

KEY = metric_key("fieldrelay_retries_total")


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.05)


def test_counts_are_summed_and_written_by_the_process_thread(redis_client):
    tally = Tally(every=0.1)
    tally.bind(redis_client)
    for _ in range(500):
        tally.hincrby(KEY, "[]", 1)
    tally.hincrbyfloat(KEY, "sum", 0.25)
    tally.hincrbyfloat(KEY, "sum", 0.5)
    wait_for(lambda: redis_client.hget(KEY, "[]") == b"500")
    assert float(redis_client.hget(KEY, "sum")) == 0.75
    tally.stopping.set()


def test_the_console_index_is_trimmed_when_the_sums_are_written(redis_client):
    redis_client.zadd("index", {f"e{i}": i for i in range(10)})
    tally = Tally(every=3600)
    tally.bind(redis_client)
    tally.trim("index", 5, 2.0)
    tally.trim("index", 4, 3.0)  # the latest trim of a key wins
    tally.flush()
    assert redis_client.zrange("index", 0, -1) == [b"e6", b"e7", b"e8", b"e9"]
    tally.stopping.set()


def test_sums_redis_did_not_take_are_written_once_it_is_back(redis_client, caplog):
    caplog.set_level(logging.INFO, "fieldrelay.metrics")
    tally = Tally(every=3600)
    tally.bind(redis_client)
    # nothing listens there
    tally.client = redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    tally.hincrby(KEY, "[]", 3)
    tally.flush()
    tally.hincrby(KEY, "[]", 2)
    tally.flush()
    assert "metrics not written, Redis is unreachable" in caplog.text
    assert caplog.text.count("metrics not written") == 1  # an outage is logged once, not per attempt
    tally.client = redis_client
    tally.flush()
    tally.flush()
    assert redis_client.hget(KEY, "[]") == b"5"
    assert "metrics written again" in caplog.text
    tally.stopping.set()


def test_a_worker_step_counts_in_the_tally_not_in_its_writes(redis_client, metrics_tally):
    state = PipelineState(redis_client)
    with state.batched():
        state.trace("ev1", Step.ACTION_RETRY, index=0, error="503", attempt=1)
    assert redis_client.llen(state.key("trace", "ev1")) == 1
    assert redis_client.hget(KEY, "[]") is None
    metrics_tally.flush()
    assert redis_client.hget(KEY, "[]") == b"1"


def test_a_trace_entry_outside_a_step_counts_at_once(redis_client):
    PipelineState(redis_client).trace("ev2", Step.ACTION_RETRY, index=0, error="503", attempt=1)
    assert redis_client.hget(KEY, "[]") == b"1"


def test_a_forked_child_starts_its_own_tally(redis_client):
    import os

    from fieldrelay.tally import TALLY

    TALLY.bind(redis_client)
    assert TALLY.pid == os.getpid()
    child = os.fork()
    if child == 0:  # a pool process: nothing of the parent's tally is its own
        os._exit(0 if TALLY.pid == 0 else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
