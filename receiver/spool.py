"""An on-disk spool for webhooks that arrive while Redis is down, replayed once it is back.

ServiceTrade retries a failed delivery only three times. While Redis is unreachable the
receiver still answers 503 (so ServiceTrade retries too), but first appends the ready
Celery message to a local file and fsyncs it; a background loop pushes spooled messages
to Redis when it answers again. Several receiver processes may share the directory:
each writes its own file, and any of them may replay any file it can lock. A message
can reach Redis twice (spool plus a successful ServiceTrade retry): the workers drop the
duplicate by event id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

log = logging.getLogger("fieldrelay.spool")


class Spool:
    """Append-only files of base64 lines `<queue> <message> [<message>...]` under `directory`, one per webhook.

    >>> spool = Spool(Path("var/spool"))          # doctest: +SKIP
    >>> spool.write("events", [message])          # doctest: +SKIP
    >>> await spool.replay(redis_client)          # doctest: +SKIP
    1
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / f"spool-{os.getpid()}-{uuid.uuid4().hex[:8]}.log"

    def write(self, queue: str, messages: Sequence[bytes]) -> None:
        """Keep one webhook's messages (one line: they reach Redis together or not at all)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        line = b" ".join([base64.b64encode(queue.encode()), *map(base64.b64encode, messages)]) + b"\n"
        while True:
            with open(self.path, "ab") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                # A replayer may have consumed and unlinked this file while we waited for the lock.
                if os.path.exists(self.path) and os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
                    return

    def pending(self) -> int:
        return sum(len(p.read_bytes().splitlines()) for p in self.directory.glob("spool-*.log"))

    async def replay(self, client: aioredis.Redis) -> int:
        """Push every spooled message to Redis; a file is removed only once all its lines are in."""
        moved = 0
        for path in sorted(self.directory.glob("spool-*.log")):
            with open(path, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a writer or another replayer has it; next round
                lines = [line.split(b" ") for line in f.read().splitlines() if line.strip()]
                pipe = client.pipeline(transaction=True)
                for queue, *messages in lines:
                    pipe.lpush(base64.b64decode(queue).decode(), *map(base64.b64decode, messages))
                await pipe.execute()
                path.unlink()
                moved += len(lines)
        if moved:
            log.warning("replayed %d spooled webhook(s) into Redis", moved)
        return moved

    async def replay_forever(self, client: aioredis.Redis, interval: float = 2.0) -> None:
        while True:
            await asyncio.sleep(interval)
            if not any(self.directory.glob("spool-*.log")):
                continue
            with contextlib.suppress(Exception):  # Redis still down: keep the files, try again
                await self.replay(client)
