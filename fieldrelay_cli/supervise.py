"""Runs a child process, and starts it again after every exit it did not ask for; stops only when told to.

Celery exits on its own more often than one would like: "Unrecoverable error" when the broker connection
drops at the wrong moment, `WorkerLostError('Could not start worker processes')` (exit 1) when a pool
child dies while it starts, a SIGKILL from the OOM killer, or even 0. Each of those is a restart here,
after a pause that doubles while the child keeps dying young. Only the supervisor's own SIGTERM or
SIGINT stops it: they are passed on to the child (Celery's warm shutdown), and the supervisor exits with
the child's code. SIGHUP asks for a restart: the child gets SIGTERM and is started again at once.

Each child runs in its own process group, and gets SIGTERM if the supervisor dies (Linux). When it exits,
whatever is left of the group (pool children that outlived it) is killed and reaped before `on_exit` runs,
so `on_exit` may hand the child's work to others knowing that none of it still runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger("fieldrelay_cli.supervise")
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>
# Exits in a row of a child younger than `healthy` before the pause starts doubling: a worker killed a few
# times in a row (the OOM killer, an operator) comes back quickly; one that cannot start backs off.
YOUNG_DEATHS = 2


@dataclass(frozen=True)
class Exit:
    """How one run of the child ended, as `on_exit` is told."""

    generation: int  # 1 for the first child, 2 for the first restart...
    code: int  # Popen's returncode: negative for a signal
    ran: float  # seconds it ran
    restarting: bool  # False once the supervisor was told to stop
    asked: bool = False  # the supervisor asked for this exit (SIGTERM, SIGINT, SIGHUP)

    @property
    def reason(self) -> str:
        """`SIGKILL`, `exit 1`, `exit 0`: what ended it, short enough to be a metric label."""
        if self.code < 0:
            try:
                return signal.Signals(-self.code).name
            except ValueError:
                return f"signal {-self.code}"
        return f"exit {self.code}"


def supervise(
    argv: Sequence[str],
    *,
    name: str,
    pause: float = 1.0,
    max_pause: float = 30.0,
    healthy: float = 10.0,
    child_env: Callable[[int], Mapping[str, str]] | None = None,
    on_exit: Callable[[Exit], None] | None = None,
    got_going: Callable[[int], bool] | None = None,
) -> int:
    """Run `argv` until the supervisor gets SIGTERM or SIGINT; returns the child's last exit code.

    After more than YOUNG_DEATHS exits in a row of a child that died young, the pause before the next start
    doubles each time (from `pause` up to `max_pause`); any other is started again after `pause`. A child
    died young if `got_going(generation)` says it never got to its work (a Celery worker that never took
    its lease), or, without `got_going`, if it ran less than `healthy` seconds. `child_env(generation)`
    adds to each child's environment.
    """
    child: subprocess.Popen[bytes] | None = None
    stopping = reloading = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping, reloading
        if signum == signal.SIGHUP:
            reloading, signum = True, signal.SIGTERM
        else:
            stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    stop_with_us = _stop_with(os.getpid())
    generation, quick = 0, 0
    while True:
        generation += 1
        env = {**os.environ, **(child_env(generation) if child_env else {})}
        started = time.monotonic()
        child = subprocess.Popen(list(argv), env=env, process_group=0, preexec_fn=stop_with_us)
        code = child.wait()
        ran = time.monotonic() - started
        _end_group(child.pid)
        young = ran < healthy
        if got_going is not None:
            try:
                young = not got_going(generation)
            except Exception:
                log.exception("%s: telling whether it got going failed", name)
        ended = Exit(generation, code, ran, restarting=not stopping, asked=stopping or reloading)
        if on_exit is not None:
            try:
                on_exit(ended)
            except Exception:
                log.exception("%s: handling its exit failed", name)
        if stopping:
            return code
        if reloading:
            reloading = False
            log.info("%s restarted on SIGHUP", name, extra={"child": name})
            continue
        quick = quick + 1 if young else 0
        wait = min(max_pause, pause * 2 ** max(0, quick - YOUNG_DEATHS))
        log.error(
            "%s exited (%s) after %.1f s without being asked to; starting it again in %.1f s",
            name,
            ended.reason,
            ran,
            wait,
            extra={"child": name, "reason": ended.reason, "ran_seconds": round(ran, 3), "restart_in": wait},
        )
        deadline = time.monotonic() + wait
        while not stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if stopping:
            return code


def _stop_with(parent: int) -> Callable[[], None] | None:
    """What the child runs before exec on Linux: SIGTERM (a warm shutdown) when the supervisor dies.

    Without it, a supervisor killed with SIGKILL would leave an unsupervised Celery behind, and a
    `fieldrelay worker` started again would run a second one beside it.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)  # loaded before the fork

    def set_death_signal() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the line above
            os._exit(1)

    return set_death_signal


def _end_group(pgid: int, timeout: float = 10.0) -> None:
    """Kill what is left of the child's process group and reap it (the supervisor may be PID 1)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    log.error("processes of group %d outlived SIGKILL for %.0f s", pgid, timeout)


def _reap() -> None:
    """Collect exited children that are ours: orphans become the supervisor's when it runs as PID 1."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
