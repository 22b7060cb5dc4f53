"""Shared by the fault tests: a whole pipeline as real processes, and ways to watch it and count effects.

Each test builds its own stack (sandbox limits and settings differ per fault), on the session's
private Redis unless the fault is Redis itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

from fieldrelay_cli.devstack import SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER, Stack, StackConfig
from fieldrelay_cli.embedded_redis import free_port
from tests.pipeline_waits import PipelineWaits
from tests.servicetrade_messages import jobs_updated

T = TypeVar("T")
TOKEN = "fault-token"
CUSTOMER = "st-company-40"  # seeded in the Synchroteam sandbox; a new job needs a customer

# One Synchroteam upsert per ServiceTrade job change; nothing reads the entity, so ServiceTrade is not called.
UPSERT_RULES = """
rules:
  - name: job-to-synchroteam
    when: {source: servicetrade, entity: job, action: updated}
    then:
      - synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "job {{ event.entity.id }}"
          customer: {myId: "CUSTOMER"}
""".replace("CUSTOMER", CUSTOMER)


def webhook(entity_ids: list[int], timestamp: int, message_id: str) -> dict[str, Any]:
    """A ServiceTrade message with one `updated` item per job id."""
    return jobs_updated(entity_ids, timestamp, message_id)


def batches(ids: list[T], size: int) -> list[list[T]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


class FaultStack(PipelineWaits):
    """A running stack plus handles: its URLs, its Redis, the sandboxes' request logs, and waits."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.config = stack.config
        self.redis = redis.Redis.from_url(self.config.redis_url or "", socket_timeout=5)

    @property
    def receiver(self) -> str:
        return self.config.base_url(self.config.receiver_port)

    def worker_logs(self) -> str:
        """Every worker's log, one after the other (the fixture always gives the stack a log directory)."""
        assert self.config.log_dir is not None
        return "".join(p.read_text(errors="replace") for p in sorted(self.config.log_dir.glob("worker*.log")))

    @property
    def synchroteam(self) -> str:
        return self.config.base_url(self.config.synchroteam_port)

    def post(self, message: dict[str, Any], client: httpx.Client | None = None) -> httpx.Response:
        url = f"{self.receiver}/webhooks/servicetrade/{TOKEN}"
        if client is not None:
            return client.post(url, json=message)
        return httpx.post(url, json=message, timeout=10)

    def requests(self, port: int | None = None) -> list[dict[str, Any]]:
        base = self.config.base_url(port or self.config.synchroteam_port)
        return httpx.get(f"{base}/_sandbox/requests", timeout=30).json()

    def faults(self, method: str, body: Any = None) -> None:
        """POST a fault (or a list of them) to the Synchroteam sandbox, or DELETE them all."""
        httpx.request(method, f"{self.synchroteam}/_sandbox/faults", json=body, timeout=10).raise_for_status()

    def faults_left(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.synchroteam}/_sandbox/faults", timeout=10).raise_for_status().json()

    def jobs(self) -> Counter[str]:
        """How many Synchroteam jobs hold each myId (a job list read straight from the sandbox)."""
        found: Counter[str] = Counter()
        page = 1
        with httpx.Client(auth=(SANDBOX_USER, SANDBOX_SYNCHROTEAM_KEY), timeout=30) as client:
            while True:
                body = (
                    client.get(f"{self.synchroteam}/api/v3/job/list", params={"page": page, "pageSize": 100})
                    .raise_for_status()
                    .json()
                )
                found.update(str(job.get("myId")) for job in body["data"])
                if not body["data"] or page * int(body["pageSize"]) >= int(body["recordsTotal"]):
                    return found
                page += 1

    def counter(self, name: str) -> dict[str, int]:
        """A counter kept in Redis (fieldrelay.metrics' layout): its JSON label list -> value."""
        raw: dict[bytes, bytes] = self.redis.hgetall(f"fieldrelay:metrics:{name}")  # type: ignore[assignment]
        return {k.decode(): int(v) for k, v in raw.items()}

    def close(self) -> None:
        self.redis.close()


def job_sends(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["method"] == "POST" and e["path"] == "/api/v3/job/send"]


def stack_config(data: Path, redis_url: str, rules: str, **overrides: Any) -> StackConfig:
    rules_dir = data / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    (rules_dir / "rules.yaml").write_text(rules)
    settings: dict[str, Any] = dict(
        data_dir=data,
        redis_url=redis_url,
        receiver_port=free_port(),
        servicetrade_port=free_port(),
        synchroteam_port=free_port(),
        synergist_port=free_port(),
        webhook_tokens=TOKEN,
        rules_dir=rules_dir,
        worker_concurrency=2,
        log_dir=data / "logs",
        extra_env={"FIELDRELAY_POLL_SOURCES": "none"},
    )
    extra_env = {**settings["extra_env"], **overrides.pop("extra_env", {})}
    settings.update(overrides, extra_env=extra_env)
    return StackConfig(**settings)


def print_logs(data: Path) -> None:
    for log in sorted((data / "logs").glob("*.log")):
        print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def fault_stack(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., FaultStack]]:
    """`fault_stack(rules, workers=1, **StackConfig overrides)` starts sandbox, receiver and workers."""
    started: list[FaultStack] = []

    def start(rules: str = UPSERT_RULES, *, workers: int = 1, **overrides: Any) -> FaultStack:
        stack = Stack(stack_config(tmp_path, overrides.pop("redis_url", redis_url), rules, **overrides))
        handle = FaultStack(stack)
        started.append(handle)
        stack.start_redis()
        stack.start_sandbox()
        stack.start_receiver()
        for n in range(workers):
            stack.start_worker(name=f"worker{n + 1}")
        return handle

    try:
        yield start
    finally:
        for handle in started:
            handle.close()
            handle.stack.stop()
        print_logs(tmp_path)


HIGH_RATE = 100_000  # requests a minute: the limiter must not be what paces a test about something else


def unpaced(**overrides: Any) -> dict[str, Any]:
    """Stack overrides for a Synchroteam sandbox (and limiter) that never make anything wait."""
    extra_env = {
        "FIELDRELAY_SYNCHROTEAM_RATE_LIMIT": str(HIGH_RATE),
        "FIELDRELAY_SYNCHROTEAM_RATE_WINDOW": "60",
        **overrides.pop("extra_env", {}),
    }
    options = {"rate_limit": HIGH_RATE, "window_seconds": 60.0, "daily_quota": 1_000_000}
    return {"synchroteam_options": options, "extra_env": extra_env, **overrides}
