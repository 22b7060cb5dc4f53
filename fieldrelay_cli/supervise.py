"""Runs a child process and starts it again when it dies unexpectedly (not when it is told to stop).

Celery workers on Redis can exit with "Unrecoverable error" when the broker connection drops
at the wrong moment (kombu's restore of unacked messages meets a closed connection). Under
docker-compose the restart policy covers that; `fieldrelay worker` covers it everywhere else.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("fieldrelay_cli.supervise")


def supervise(argv: Sequence[str], *, name: str, pause: float = 1.0, crash_loop: int = 5) -> int:
    """Run `argv` until it exits 0 or we are signalled; returns its last exit code.

    SIGTERM/SIGINT/SIGHUP are passed to the child (a Celery warm shutdown), and no restart follows.
    Quick successive crashes back off, up to 30 s between starts.
    """
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    recent: list[float] = []
    while True:
        started = time.monotonic()
        child = subprocess.Popen(list(argv))
        code = child.wait()
        if stopping or code == 0:
            return code
        recent = [t for t in recent if started - t < 60] + [started]
        wait = pause if len(recent) < crash_loop else min(30.0, pause * 2 ** (len(recent) - crash_loop + 1))
        log.error("%s exited with %s; starting it again in %.0f s", name, code, wait)
        time.sleep(wait)
        if stopping:
            return code
