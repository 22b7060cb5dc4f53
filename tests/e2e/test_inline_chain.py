"""A run's unpaced steps run in the task that ran the step before them, in order (workers/inline.py): a
rule of three `http.request` calls is one task, and a step retried on its queue takes the next one with it.
Events that share one `process_events` message (the receiver's group commit) are each evaluated and run
apart, as if each had its own."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from fieldrelay.celery_messages import task_message
from fieldrelay.events import ChangeEvent
from fieldrelay.queues import EVENTS_QUEUE, PROCESS_EVENT_TASK, PROCESS_EVENTS_TASK
from fieldrelay.state import PipelineState
from fieldrelay_cli.devstack import Stack
from receiver.webhooks import normalize, parse_message
from tests.pipeline_waits import PipelineWaits
from tests.security.conftest import Listener
from tests.servicetrade_messages import job_completed
from tests.stacks import running_stack

TOKEN = "chain-token"
RULES = """\
rules:
  - name: three-calls
    when: {{source: servicetrade, entity: job, action: updated, changed: {{status: {{to: completed}}}}}}
    then:
      - http.request: {{url: "{sink}/one/{{{{ event.entity.id }}}}", json: {{step: 1}}}}
      - http.request: {{url: "{sink}/two/{{{{ event.entity.id }}}}", json: {{step: 2}}}}
      - http.request: {{url: "{sink}/three/{{{{ event.entity.id }}}}", json: {{step: 3}}}}
"""


class Chain(PipelineWaits):
    def __init__(self, stack: Stack, redis_url: str, sink: Listener, logs: Path) -> None:
        self.stack, self.config, self.sink, self.logs = stack, stack.config, sink, logs
        self.redis = redis.Redis.from_url(redis_url)

    def post(self, job: int) -> None:
        url = f"{self.config.base_url(self.config.receiver_port)}/webhooks/servicetrade/{TOKEN}"
        message = job_completed(job, int(time.time()), f"m-{job}")
        assert httpx.post(url, json=message, timeout=10).status_code == 200

    def paths(self, job: int) -> list[str]:
        return [hit.path for hit in list(self.sink.hits) if hit.path.endswith(f"/{job}")]

    def run_action_tasks(self) -> int:
        text = (self.logs / "worker.log").read_text(errors="replace")
        return len(re.findall(r"Task fieldrelay\.run_action\[[0-9a-f-]+\] received", text))

    def steps(self, job: int) -> list[tuple[str, int | None]]:
        for key in self.redis.scan_iter("fieldrelay:trace:*"):
            entries = [json.loads(e) for e in self.redis.lrange(key, 0, -1)]
            if any(f"/{job}" in json.dumps(e.get("params", {})) for e in entries):
                return [(e["step"], e.get("index")) for e in entries if e["step"].startswith("action.")]
        return []


@pytest.fixture(scope="module")
def chain(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    data = tmp_path_factory.mktemp("chain")
    refused: set[str] = set()

    def reply(handler) -> tuple[int, dict[str, str], bytes]:
        # /two/2 answers 503 once: its step is retried on its queue, as a run_action task.
        if handler.path == "/two/2" and handler.path not in refused:
            refused.add(handler.path)
            return 503, {}, b""
        return 200, {"Content-Type": "application/json"}, b"{}"

    sink = Listener(reply).start()
    rules = data / "rules"
    rules.mkdir()
    (rules / "chain.yaml").write_text(RULES.format(sink=sink.url("").rstrip("/")))
    extra_env = {"FIELDRELAY_HTTP_ALLOWED_HOSTS": f"127.0.0.1:{sink.port}", "FIELDRELAY_RETRY_MAX_BACKOFF": "1"}
    try:
        with running_stack(redis_server, data, webhook_tokens=TOKEN, rules_dir=rules, extra_env=extra_env) as stack:
            yield Chain(stack, redis_server, sink, data / "logs")
    finally:
        sink.stop()


def test_a_run_of_unpaced_steps_is_one_task(chain: Chain) -> None:
    chain.post(1)
    chain.wait_until(lambda: len(chain.paths(1)) == 3, what="the three calls")
    chain.wait_idle()
    assert chain.paths(1) == ["/one/1", "/two/1", "/three/1"]
    assert chain.steps(1) == [
        ("action.started", 0),
        ("action.succeeded", 0),
        ("action.started", 1),
        ("action.succeeded", 1),
        ("action.started", 2),
        ("action.succeeded", 2),
    ]
    assert chain.run_action_tasks() == 0  # all three ran in the event's own task


def test_a_step_retried_on_its_queue_takes_the_steps_after_it(chain: Chain) -> None:
    before = chain.run_action_tasks()
    chain.post(2)
    chain.wait_until(lambda: "/three/2" in chain.paths(2), what="the third call, after the retried second")
    chain.wait_idle()
    assert chain.paths(2) == ["/one/2", "/two/2", "/two/2", "/three/2"]
    assert [s for s in chain.steps(2) if s[0] != "action.started"] == [
        ("action.succeeded", 0),
        ("action.retry", 1),
        ("action.succeeded", 1),
        ("action.succeeded", 2),
    ]
    assert chain.run_action_tasks() - before == 1  # the retry's task, which ran the third step too


def test_events_sharing_one_message_are_each_claimed_run_and_dead_lettered_apart(chain: Chain) -> None:
    before, at = chain.run_action_tasks(), int(time.time())
    first, second = (
        normalize(parse_message(json.dumps(job_completed(job, at, f"m-{job}")).encode()))[0] for job in (10, 11)
    )
    malformed = {"source": "servicetrade", "entity": {"type": "job"}}
    # The same event twice (a webhook delivered twice, committed together), a malformed one, another event.
    message = task_message(PROCESS_EVENTS_TASK, [[first, first, malformed, second]], EVENTS_QUEUE)
    chain.redis.lpush(EVENTS_QUEUE, message)
    chain.wait_until(lambda: len(chain.paths(11)) == 3, what="the second event's three calls")
    chain.wait_idle()
    assert chain.paths(10) == ["/one/10", "/two/10", "/three/10"]  # once: the copy was a duplicate
    assert chain.paths(11) == ["/one/11", "/two/11", "/three/11"]
    trace = [
        json.loads(e)["step"]
        for e in chain.redis.lrange(f"fieldrelay:trace:{ChangeEvent.model_validate(first).id}", 0, -1)
    ]
    assert trace.count("event.duplicate") == 1 and trace.count("action.succeeded") == 3
    letters = PipelineState(chain.redis).dead_letters()
    assert [(d["kind"], d["action"], d["task"]["name"]) for d in letters] == [
        ("ingest", "a malformed event", PROCESS_EVENT_TASK)
    ]
    assert chain.run_action_tasks() == before  # every step ran inline, in the message's one task
