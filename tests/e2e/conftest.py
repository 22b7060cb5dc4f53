"""The whole pipeline as real processes: sandboxes, receiver (uvicorn), Celery worker, private Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from fieldrelay_cli.devstack import Stack
from tests.pipeline_waits import PipelineWaits
from tests.stacks import running_stack

ROOT = Path(__file__).parents[2]


class Pipeline(PipelineWaits):
    """Handles on a running stack for tests: URLs, the sandboxes' logs, and a wait for quiet."""

    def __init__(self, stack: Stack, redis_url: str) -> None:
        self.stack = stack
        self.config = stack.config
        self.redis = redis.Redis.from_url(redis_url)

    def url(self, port: int, path: str) -> str:
        return self.config.base_url(port) + path

    @property
    def receiver(self) -> str:
        return self.config.base_url(self.config.receiver_port)

    def post_webhook(self, message: dict, token: str = "e2e-token") -> httpx.Response:
        return httpx.post(f"{self.receiver}/webhooks/servicetrade/{token}", json=message, timeout=10)

    def requests(self, system: str) -> list[dict]:
        port = {
            "servicetrade": self.config.servicetrade_port,
            "synchroteam": self.config.synchroteam_port,
            "synergist": self.config.synergist_port,
        }[system]
        return httpx.get(self.url(port, "/_sandbox/requests"), timeout=10).json()

    def reset_sandboxes(self) -> None:
        for port in (self.config.servicetrade_port, self.config.synchroteam_port, self.config.synergist_port):
            httpx.post(self.url(port, "/_sandbox/reset"), timeout=10).raise_for_status()
            httpx.delete(self.url(port, "/_sandbox/requests"), timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def pipeline(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    data = tmp_path_factory.mktemp("stack")
    with running_stack(redis_server, data, webhook_tokens="e2e-token", rules_dir=ROOT / "rules" / "examples") as stack:
        yield Pipeline(stack, redis_server)
