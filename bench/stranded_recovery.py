"""How long a task stranded by a killed Celery main process waits before it runs again, per recovery design.

Each trial: a private Redis, the sandboxes and the receiver; one webhook whose first Synchroteam upsert the
sandbox holds for CALL seconds; 1 s into it, SIGKILL the Celery main process that took it (its pool dies with
it: Celery sets a parent-death signal). The figure is the time from the kill to the second `job/send` the
sandbox receives (the redelivered task's call). Designs:

  visibility   kombu as shipped (`broker_transport=redis`): a live worker's restore_visible sweep gives the
               message back once it has been unacked for `visibility_timeout`. Run here with VT=60 s and a
               1 s sweep, so the figure is VT plus the time to notice; fieldrelay had VT=300 s (and kombu's
               default sweep runs every 100 s).
  short-vt     the same with VT=20 s, made "safe" by a 15 s hard task time limit and 4 s HTTP timeouts. A last
               run shows its cost: a call that needs 18 s is cut by the time limit, and Celery acks a task
               that hit its hard limit, so it is neither retried nor dead-lettered.
  lease        fieldrelay: two workers without a supervisor (as on two hosts); the live one puts back what the
               dead one held once its lease (10 s) has lapsed.
  supervisor   fieldrelay: `fieldrelay worker` puts back what its dead child held at once; a second supervised
               worker runs it.

    .venv/bin/python bench/stranded_recovery.py [--trials 3] [--designs visibility,short-vt,lease,supervisor]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fieldrelay.consumers import held_messages  # noqa: E402
from fieldrelay.queues import ALL_QUEUES  # noqa: E402
from fieldrelay_cli.devstack import _LOGGING, Stack  # noqa: E402
from fieldrelay_cli.embedded_redis import EmbeddedRedis  # noqa: E402
from tests.faults.conftest import UPSERT_RULES, FaultStack, stack_config, unpaced, webhook  # noqa: E402

# Seconds the sandbox holds the first upsert: it finishes that request even after the client died, and must not
# finish it while a trial measures (the redelivered call is answered at once).
CALL = 600.0
SEND = "/api/v3/job/send"


def plain_worker(stack: Stack, name: str, transport_options: dict[str, Any], time_limit: int) -> None:
    """A worker on kombu's own Redis transport, with the given visibility timeout and time limit."""
    argv = ["--quiet", "worker", "-Q", ",".join(ALL_QUEUES), "-c", "2", "-n", f"{name}@%h"]
    argv += ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    code = (
        f"{_LOGGING}from workers.celery_app import app; "
        f"app.conf.broker_transport = 'redis'; app.conf.broker_transport_options = {transport_options!r}; "
        f"app.conf.task_time_limit = {time_limit}; app.worker_main({argv!r})"
    )
    stack._spawn(name, code)
    stack.wait_worker(name)


def sends(handle: FaultStack) -> int:
    return sum(1 for r in handle.requests() if r["path"] == SEND)


def celery_main_running_it(handle: FaultStack, names: list[str]) -> psutil.Process:
    """The Celery main process whose pool child has the upsert's connection to the sandbox open."""
    port = handle.config.synchroteam_port
    for name in names:
        for proc in psutil.Process(handle.stack.procs[name].pid).children(recursive=True):
            try:
                if any(c.raddr and c.raddr.port == port for c in proc.net_connections(kind="tcp")):
                    parent = proc.parent()
                    if parent is not None:
                        return parent
            except psutil.NoSuchProcess:
                continue
    raise RuntimeError("no worker runs the upsert")


def trial(design: str, call: float = CALL, timeout: float = 400.0) -> dict[str, float | int | str]:
    tmp = Path(tempfile.mkdtemp(prefix=f"stranded-{design}-"))
    server = EmbeddedRedis(tmp / "redis", appendonly=False).start()
    http_timeout = "4" if design == "short-vt" else "30"
    stack = Stack(
        stack_config(tmp, server.url, UPSERT_RULES, **unpaced(extra_env={"FIELDRELAY_HTTP_TIMEOUT": http_timeout}))
    )
    handle = FaultStack(stack)
    try:
        stack.start_sandbox()
        stack.start_receiver()
        names = ["w1", "w2"]
        for name in names:
            if design == "visibility":
                plain_worker(
                    stack,
                    name,
                    {"visibility_timeout": 60, "unacked_restore_interval": 1, "unacked_restore_throttle": 1},
                    240,
                )
            elif design == "short-vt":
                plain_worker(
                    stack,
                    name,
                    {"visibility_timeout": 20, "unacked_restore_interval": 1, "unacked_restore_throttle": 1},
                    15,
                )
            else:
                stack.start_worker(name, supervised=design == "supervisor")
        handle.faults("POST", {"latency_ms": int(call * 1000), "path_prefix": SEND, "count": 1})
        assert handle.post(webhook([990_001], 1_760_000_000, design)).status_code == 200
        handle.wait_until(lambda: any(h.task == "fieldrelay.run_action" for h in held_messages(handle.redis)), 60, "it")
        time.sleep(1.0)
        main = celery_main_running_it(handle, names)
        os.kill(main.pid, signal.SIGKILL)
        killed = time.monotonic()
        before = sends(handle)
        deadline = killed + timeout
        while sends(handle) <= before and time.monotonic() < deadline:
            time.sleep(0.1)
        recovered = time.monotonic() - killed if sends(handle) > before else float("nan")
        return {"design": design, "recovered": round(recovered, 1)}
    finally:
        handle.close()
        stack.stop()
        server.stop()


def short_vt_poison(call: float = 18.0, watch: float = 75.0) -> dict[str, float | int | str]:
    """short-vt with a call that needs longer than the time limit: how often it is cut and sent again."""
    tmp = Path(tempfile.mkdtemp(prefix="stranded-poison-"))
    server = EmbeddedRedis(tmp / "redis", appendonly=False).start()
    stack = Stack(stack_config(tmp, server.url, UPSERT_RULES, **unpaced(extra_env={"FIELDRELAY_HTTP_TIMEOUT": "30"})))
    handle = FaultStack(stack)
    try:
        stack.start_sandbox()
        stack.start_receiver()
        for name in ("w1", "w2"):
            plain_worker(
                stack,
                name,
                {"visibility_timeout": 20, "unacked_restore_interval": 1, "unacked_restore_throttle": 1},
                15,
            )
        handle.faults("POST", {"latency_ms": int(call * 1000), "path_prefix": SEND})
        assert handle.post(webhook([990_002], 1_760_000_000, "poison")).status_code == 200
        time.sleep(watch)
        logs = "".join(p.read_text(errors="replace") for p in (tmp / "logs").glob("w*.log"))
        return {
            "design": f"short-vt, a {call:.0f} s call",
            "calls_made": sends(handle),
            "hard_time_limit_kills": logs.count("Hard time limit"),
            "action_started": logs.count('"message":"action.started"'),
            "action_succeeded": logs.count('"message":"action.succeeded"'),
            "dead_letters": int(handle.redis.zcard("fieldrelay:dlq")),
            "still_pending": handle.busy(),
        }
    finally:
        handle.close()
        stack.stop()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--designs", default="visibility,short-vt,lease,supervisor")
    args = parser.parse_args()
    for design in args.designs.split(","):
        figures = [trial(design)["recovered"] for _ in range(args.trials)]
        values = [float(f) for f in figures]
        print(
            f"{design:11} recovered after kill: {', '.join(f'{v:.1f}' for v in values)} s"
            f" (median {statistics.median(values):.1f} s)",
            flush=True,
        )
    if "short-vt" in args.designs:
        print(short_vt_poison(), flush=True)


if __name__ == "__main__":
    main()
