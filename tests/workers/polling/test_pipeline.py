"""Real processes: a webhook the ServiceTrade sandbox drops is caught by a `fieldrelay.poll` task on a
Celery worker, reaches `process_event` like a webhook would, and is counted; the delivered one is not repeated."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from celery import Celery
from pydantic import SecretStr

from fieldrelay.poll_metrics import PollMetrics
from fieldrelay.queues import EVENTS_QUEUE
from fieldrelay.state import PipelineState
from fieldrelay_cli.devstack import Stack
from tests.stacks import running_stack
from workers.connectors.servicetrade import ServiceTradeClient
from workers.polling.pollers import POLL_TASK
from workers.polling.store import PollStore

ROOT = Path(__file__).parents[3]
TOKEN = "poll-token"


@pytest.fixture(scope="module")
def stack(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra_env = {
        "FIELDRELAY_POLL_SOURCES": "servicetrade.job",
        "FIELDRELAY_POLL_WEBHOOK_GRACE": "0",
        "FIELDRELAY_POLL_OVERLAP": "30",
        "FIELDRELAY_POLL_INTERVAL": "1",
    }
    with running_stack(
        redis_server,
        tmp_path_factory.mktemp("poll-stack"),
        webhook_tokens=TOKEN,
        rules_dir=ROOT / "rules" / "examples",
        worker_concurrency=1,
        extra_env=extra_env,
    ) as stack:
        yield stack


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.e2e
def test_dropped_webhook_is_caught_by_the_poll_task(stack: Stack, redis_client: redis.Redis):
    c = stack.config
    st = ServiceTradeClient(c.base_url(c.servicetrade_port) + "/api", "sandbox", SecretStr("sandbox-password"))
    try:
        catch_dropped_webhook(stack, redis_client, st)
    finally:
        st.close()


def catch_dropped_webhook(stack: Stack, redis_client: redis.Redis, st: ServiceTradeClient) -> None:
    c = stack.config
    st_control = c.base_url(c.servicetrade_port) + "/_sandbox"
    st.create_webhook(f"{c.base_url(c.receiver_port)}/webhooks/servicetrade/{TOKEN}")
    report_key = "fieldrelay:poll:run:servicetrade.job"

    store = PollStore(redis_client)

    def poll() -> dict:
        # A run that starts within 0.8 of the interval (1 s here) of the last one is skipped as the same tick
        # sent twice, and writes no report. What counts is when the last run *started* in the worker (a busy
        # worker may start it well after it was sent), so wait a whole interval from there.
        time.sleep(max(0.0, store.last_started("servicetrade.job") + 1.1 - time.time()))
        before = redis_client.get(report_key)
        with Celery("poll-test", broker=c.redis_url) as sender:
            sender.send_task(POLL_TASK, args=("servicetrade.job",), queue=EVENTS_QUEUE)
        wait_for(lambda: redis_client.get(report_key) not in (None, before), "a poll report")
        return orjson.loads(redis_client.get(report_key) or b"{}")

    assert poll()["status"] == "ok"  # the first run sets the cursor at the server's now
    httpx.put(f"{st_control}/webhook/controls", json={"drop_next": 1}, timeout=10).raise_for_status()
    httpx.patch(f"{st_control}/entities/job/35770", json={"status": "completed"}, timeout=10).raise_for_status()
    wait_for(lambda: httpx.get(f"{st_control}/webhook/deliveries", timeout=10).json(), "the dropped delivery")
    httpx.patch(f"{st_control}/entities/job/35771", json={"status": "completed"}, timeout=10).raise_for_status()
    state = PipelineState(redis_client)
    wait_for(lambda: state.seen_at("servicetrade", "job", 35771), "the webhook for job 35771 to be processed")

    report = poll()
    assert (report["events"], report["missed_webhooks"], report["reconciled"]) == (1, 1, 1)
    assert PollMetrics(redis_client).value("fieldrelay_missed_webhooks_caught_total", entity="job") == 1

    def polled_event() -> dict | None:
        for key in redis_client.scan_iter("fieldrelay:evsum:*"):
            event = orjson.loads(redis_client.hget(key, "event") or b"{}")
            if event.get("via") == "poll":
                return event
        return None

    event = wait_for(polled_event, "process_event to take in the polled event")
    assert isinstance(event, dict)
    assert event["entity"]["id"] == 35770 and event["action"] == "updated"
    assert event["occurred_at"] == st.get_entity("job", 35770)["updated"]
    assert state.seen_at("servicetrade", "job", 35770) == event["occurred_at"]  # the worker marked it seen
    assert poll()["events"] == 0  # and the next run repeats nothing


@pytest.mark.e2e
def test_two_beat_processes_still_poll_once_per_interval(stack: Stack, redis_client: redis.Redis, tmp_path: Path):
    def runs() -> int:
        raw = redis_client.get("fieldrelay:poll:cursor:servicetrade.job")
        return int(orjson.loads(raw)["runs"]) if raw else 0

    beats = []
    logs = [tmp_path / f"beat{n}.log" for n in range(2)]

    def sent() -> int:
        return sum(log.read_text().count("Sending due task") for log in logs)

    for n, path in enumerate(logs):
        log = open(path, "wb")  # noqa: SIM115 (closed below, after the process)
        code = (
            "from workers.celery_app import app; "
            f"app.start(['beat', '--loglevel', 'INFO', '--schedule', {str(tmp_path / f'schedule{n}')!r}])"
        )
        beats.append(
            (
                subprocess.Popen(
                    [sys.executable, "-c", code],
                    env=stack.config.env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                log,
            )
        )
    try:
        wait_for(lambda: all(b"Sending due task" in log.read_bytes() for log in logs), "both beats to send", timeout=30)
        sent_before, runs_before, started = sent(), runs(), time.monotonic()
        time.sleep(5)
        sent_during, done, elapsed = sent() - sent_before, runs() - runs_before, time.monotonic() - started
    finally:
        for proc, log in beats:
            proc.terminate()
            proc.wait(10)
            log.close()
    print(f"two beats: {sent_during} poll tasks sent, {done} runs, in {elapsed:.1f} s")
    # Each 1 s tick arrives twice; the lease and the "just ran" check let one of the two through.
    assert sent_during >= 2 * int(elapsed) - 2, (sent_during, elapsed)
    assert int(elapsed) - 2 <= done <= elapsed / 0.8 + 1, (done, sent_during, elapsed)
