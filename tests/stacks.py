"""A whole stack for a test module: Redis, the sandboxes, the receiver and a worker, as real processes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from fieldrelay_cli.devstack import Stack, StackConfig
from fieldrelay_cli.embedded_redis import free_port


@contextlib.contextmanager
def running_stack(redis_server: str, data: Path, *, beat: bool = False, **config: Any) -> Iterator[Stack]:
    """Redis (a clean database), the sandboxes, the receiver and a worker (and beat) on free ports, as
    StackConfig(**config) sets them up; stopped after, with the tail of each process's log printed."""
    r = redis.Redis.from_url(redis_server)
    r.flushdb()
    r.close()
    config = {"worker_concurrency": 2, "log_dir": data / "logs", **config}
    stack = Stack(
        StackConfig(
            data_dir=data,
            redis_url=redis_server,
            receiver_port=free_port(),
            servicetrade_port=free_port(),
            synchroteam_port=free_port(),
            synergist_port=free_port(),
            **config,
        )
    )
    try:
        stack.start_redis()
        stack.start_sandbox()
        stack.start_receiver()
        stack.start_worker()
        if beat:
            stack.start_beat()
        yield stack
    finally:
        stack.stop()
        for log in sorted((data / "logs").glob("*.log")):
            print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-3000:]}")
