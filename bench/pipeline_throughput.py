"""Events per second through the whole pipeline, against a bare Celery pipeline, in alternating rounds.

fieldrelay: N ServiceTrade webhooks (one job each, `status -> completed`) posted to `fieldrelay receiver`,
one rule turning each into `http.request` POSTs to a local sink (keep-alive, TCP_NODELAY: bench/sink.py),
drained by `fieldrelay worker --concurrency W`. Reference: a bare Celery app on the same private Redis
(acks_late, prefetch 1, JSON) whose task does the same POST with a reused httpx client, drained by W prefork
processes (bench/reference_celery.py). A round ends when the sink has every POST; events/s is N over the
time from the first webhook (or task) sent to the last POST received.

It also prints Redis commands per event (INFO commandstats over a fieldrelay round, counted once the pipeline
is idle again) and the RSS of the receiver, the worker parent and the worker children.

    .venv/bin/python bench/pipeline_throughput.py [--events 500] [--rounds 3] [--workers 2] [--actions 1|4]
                                                  [--rss-after 10000]

`--actions 4` runs four actions per event across two targets: two `http.request` POSTs to the sink and a
Synchroteam customer and job upsert against the Synchroteam sandbox (its rate limit lifted for the bench);
the reference then POSTs four times per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fieldrelay_cli.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
STM_KEY = "bench-key"
QUEUES = ("events", "actions.http", "actions.synchroteam", "actions.synergist", "actions.servicetrade")

ONE_ACTION = """\
rules:
  - name: completed-job-to-sink
    when: {{source: servicetrade, entity: job, action: updated, changed: {{status: {{to: completed}}}}}}
    then:
      - http.request: {{url: "{sink}/hook", json: {{job: "{{{{ event.entity.id }}}}", status: completed}}}}
"""

FOUR_ACTIONS = """\
rules:
  - name: completed-job-everywhere
    when: {{source: servicetrade, entity: job, action: updated, changed: {{status: {{to: completed}}}}}}
    then:
      - http.request: {{url: "{sink}/first", json: {{job: "{{{{ event.entity.id }}}}"}}}}
      - id: customer
        synchroteam.customer.upsert: {{myId: "st-company-{{{{ event.entity.id }}}}", name: "Customer"}}
      - synchroteam.job.upsert:
          myId: "st-job-{{{{ event.entity.id }}}}"
          customer: {{myId: "{{{{ steps.customer.myId }}}}"}}
      - http.request: {{url: "{sink}/last", json: {{job: "{{{{ event.entity.id }}}}"}}}}
"""


def webhook(job_id: int, at: int) -> dict[str, object]:
    return {
        "messageId": str(uuid.uuid4()),
        "timestamp": at,
        "data": [
            {
                "action": "updated",
                "timestamp": at,
                "entity": {"type": "job", "id": job_id, "uri": f"https://api.servicetrade.com/api/job/{job_id}"},
                "changeset": [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}],
            }
        ],
    }


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, redis.RedisError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, redis_url: str) -> None:
        self.args, self.tmp, self.redis_url = args, tmp, redis_url
        self.r = redis.Redis.from_url(redis_url)
        # One client for the sink's count, read every 50 ms during a round: httpx.get builds a client (and
        # its TLS context) per call, which cost the bench process about 15 ms of CPU each time.
        self.http = httpx.Client(timeout=5)
        self.sink_port, self.receiver_port, self.stm_port = free_port(), free_port(), free_port()
        self.sink = f"http://127.0.0.1:{self.sink_port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.posts_per_event = 1 if args.actions == 1 else 2
        self.next_id = 1_000_000
        self.redis_pid = 0
        self.posted = 0.0
        self.cpu_ms: dict[str, float] = {}
        self.reference_cpu_ms: dict[str, float] = {}
        self.per_message = 0.0  # events per task message the worker took in the last round (0: not logged)

    def start(self) -> None:
        bin_dir = Path(sys.executable).parent
        logs = self.tmp / "logs"
        logs.mkdir()
        base = {k: v for k, v in os.environ.items() if not k.startswith("FIELDRELAY_")}
        self.procs["sink"] = spawn(
            [sys.executable, str(ROOT / "bench" / "sink.py"), str(self.sink_port)], base, self.tmp, logs / "sink.log"
        )
        if self.args.actions == 4:
            code = (
                "import uvicorn; from sandbox import synchroteam; "
                f"uvicorn.run(synchroteam.create_app(domain='bench', api_key={STM_KEY!r}, rate_limit=10**7, "
                f"daily_quota=10**9), port={self.stm_port}, log_level='warning')"
            )
            self.procs["synchroteam"] = spawn([sys.executable, "-c", code], base, self.tmp, logs / "stm.log")
        rules = self.tmp / "rules"
        rules.mkdir()
        (rules / "bench.yaml").write_text(
            (ONE_ACTION if self.args.actions == 1 else FOUR_ACTIONS).format(sink=self.sink)
        )
        env = {
            **base,
            "FIELDRELAY_REDIS_URL": self.redis_url,
            "FIELDRELAY_DATA_DIR": str(self.tmp / "var"),
            "FIELDRELAY_RULES_DIR": str(rules),
            "FIELDRELAY_WEBHOOK_TOKENS": TOKEN,
            "FIELDRELAY_POLL_SOURCES": "none",
            "FIELDRELAY_HTTP_ALLOWED_HOSTS": f"127.0.0.1:{self.sink_port}",
            "FIELDRELAY_SYNCHROTEAM_BASE_URL": f"http://127.0.0.1:{self.stm_port}",
            "FIELDRELAY_SYNCHROTEAM_DOMAIN": "bench",
            "FIELDRELAY_SYNCHROTEAM_API_KEY": STM_KEY,
            "FIELDRELAY_SYNCHROTEAM_RATE_LIMIT": "1000000",
            **(
                {"FIELDRELAY_EVENTS_PER_MESSAGE": str(self.args.events_per_message)}
                if self.args.events_per_message
                else {}
            ),
        }
        self.procs["receiver"] = spawn(
            [str(bin_dir / "fieldrelay"), "receiver", "--port", str(self.receiver_port)],
            env,
            self.tmp,
            logs / "receiver.log",
        )
        self.procs["worker"] = spawn(
            [
                str(bin_dir / "fieldrelay"),
                "worker",
                "--concurrency",
                str(self.args.workers),
                "--loglevel",
                self.args.worker_loglevel,
            ],
            env,
            self.tmp,
            logs / "worker.log",
        )
        reference_env = {**base, "REFERENCE_BROKER": self.redis_url, "PYTHONPATH": str(ROOT)}
        self.procs["reference"] = spawn(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.reference_celery",
                "worker",
                "-c",
                str(self.args.workers),
                "-Q",
                "reference",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "warning",
            ],
            reference_env,
            ROOT,
            logs / "reference.log",
        )
        wait(lambda: httpx.get(f"{self.sink}/count", timeout=1).status_code == 200, 20, "the sink")
        wait(
            lambda: httpx.get(f"http://127.0.0.1:{self.receiver_port}/readyz", timeout=1).status_code == 200,
            60,
            "the receiver",
        )
        wait(lambda: bool(self.r.exists("_kombu.binding.events")), 60, "the fieldrelay worker")
        wait(lambda: bool(self.r.exists("_kombu.binding.reference")), 60, "the reference worker")
        if self.args.actions == 4:
            wait(
                lambda: httpx.get(f"http://127.0.0.1:{self.stm_port}/_sandbox/requests", timeout=1).is_success,
                30,
                "the Synchroteam sandbox",
            )
        time.sleep(2)  # let every pool process finish starting

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)

    def sink_count(self) -> int:
        return int(self.http.get(f"{self.sink}/count").text)

    def idle(self) -> bool:
        pipe = self.r.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
        pipe.hlen("unacked")
        pipe.zcard("fieldrelay:delayed")
        return not any(pipe.execute())

    def cpu_seconds(self, *names: str) -> dict[str, float]:
        """CPU time used so far by each named process and its children (and Redis, as `redis`)."""
        out: dict[str, float] = {}
        for name in names:
            if name == "bench":  # this process, the load generator: its children are the processes measured
                t = psutil.Process().cpu_times()
                out[name] = t.user + t.system
                continue
            proc = psutil.Process(self.redis_pid if name == "redis" else self.procs[name].pid)
            total = pool = 0.0
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                    if p.ppid() != proc.pid and p.pid != proc.pid and name == "worker":  # the Celery pool's
                        pool += t.user + t.system
                except psutil.NoSuchProcess:
                    pass
            out[name] = total
            if name == "worker":
                out["worker pool"] = pool
            if name == "reference":  # its Celery main process is `proc` itself
                out["reference pool"] = total - sum(t.user + t.system for t in [proc.cpu_times()])
        return out

    def fieldrelay_round(self, n: int) -> tuple[float, dict[str, float]]:
        """(events/s, Redis commands per event by command) for n webhooks."""
        self.http.delete(f"{self.sink}/count")
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        at = int(time.time())
        bodies = [json.dumps(webhook(i, at)).encode() for i in ids]
        self.r.config_resetstat()
        log = self.tmp / "logs" / "worker.log"
        seen = log.stat().st_size
        cpu = self.cpu_seconds("receiver", "worker", "redis", "bench")
        start = time.perf_counter()
        asyncio.run(self._post_all(bodies))
        self.posted = n / (time.perf_counter() - start)
        expected = n * self.posts_per_event
        wait(lambda: self.sink_count() >= expected, 600, "the fieldrelay round")
        elapsed = time.perf_counter() - start
        after = self.cpu_seconds("receiver", "worker", "redis", "bench")
        self.cpu_ms = {k: (after[k] - cpu[k]) * 1000 / n for k in cpu}
        wait(self.idle, 120, "the pipeline to go idle")
        time.sleep(1.0)  # the last steps' trace and metric writes
        with log.open("rb") as lines:
            lines.seek(seen)
            # Celery's "received" line, one per task message taken (the worker logs it at INFO).
            messages = len(re.findall(rb"Task fieldrelay\.process_events?\[[0-9a-f-]+\] received", lines.read()))
        self.per_message = n / messages if messages else 0.0
        stats = self.r.info("commandstats")
        per_command = {
            k.removeprefix("cmdstat_"): v["calls"] / n
            for k, v in stats.items()
            if k not in ("cmdstat_info", "cmdstat_config")
        }
        return n / elapsed, per_command

    async def _post_all(self, bodies: list[bytes]) -> None:
        """POST every body over 16 keep-alive connections, with requests encoded beforehand.

        The load generator is not what is measured, yet it shares the 2 cores: an httpx AsyncClient spent
        2.6 ms of CPU per webhook here, more than the receiver and Redis together, and the reference's
        producer 0.7 ms per task. Raw HTTP/1.1 on asyncio streams keeps the generator's share small.
        """
        path = f"/webhooks/servicetrade/{TOKEN}"
        requests = [
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.receiver_port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
            for body in bodies
        ]
        pending = iter(requests)

        async def poster() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.receiver_port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                for request in pending:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = head[9:12]
                    length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
                    answer = await reader.readexactly(length)
                    if status != b"200":
                        raise SystemExit(f"webhook answered {status.decode()}: {answer.decode(errors='replace')}")
            finally:
                writer.close()

        await asyncio.gather(*(poster() for _ in range(16)))

    def reference_round(self, n: int) -> float:
        from bench.reference_celery import app

        app.conf.broker_url = self.redis_url
        self.http.delete(f"{self.sink}/count")
        cpu = self.cpu_seconds("reference", "redis", "bench")
        start = time.perf_counter()
        with app.producer_or_acquire() as producer:
            for i in range(n):
                for p in range(self.posts_per_event):
                    app.send_task(
                        "reference.post", args=(f"{self.sink}/ref{p}", {"job": i}), queue="reference", producer=producer
                    )
        wait(lambda: self.sink_count() >= n * self.posts_per_event, 600, "the reference round")
        elapsed = time.perf_counter() - start
        after = self.cpu_seconds("reference", "redis", "bench")
        self.reference_cpu_ms = {k: (after[k] - cpu[k]) * 1000 / n for k in cpu}
        return n / elapsed

    def rss_mb(self) -> dict[str, str]:
        def mb(proc: psutil.Process) -> str:
            return f"{proc.memory_info().rss / 2**20:.1f}"

        receiver = psutil.Process(self.procs["receiver"].pid)
        supervisor = psutil.Process(self.procs["worker"].pid)
        celery_main = supervisor.children()[0]
        children = celery_main.children()
        return {
            "receiver": mb(receiver),
            "worker parent": mb(celery_main),
            "worker children": " / ".join(mb(c) for c in children),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--actions", type=int, choices=(1, 4), default=1)
    parser.add_argument(
        "--worker-loglevel",
        default="INFO",
        help="fieldrelay worker's log level (its default INFO; the reference runs at warning, Celery's default)",
    )
    parser.add_argument(
        "--events-per-message",
        type=int,
        default=0,
        metavar="N",
        help="FIELDRELAY_EVENTS_PER_MESSAGE for the receiver (default: the setting's own default)",
    )
    parser.add_argument(
        "--rss-after",
        type=int,
        default=0,
        metavar="N",
        help="then run N more events through fieldrelay alone and print each process's RSS after them",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis", appendonly=False) as server:
        bench = Bench(args, Path(tmp), server.url)
        bench.redis_pid = server.proc.pid if server.proc else os.getpid()
        bench.start()
        try:
            idle, after_line = bench.rss_mb(), ""
            bench.fieldrelay_round(min(50, args.events))  # warm-up: imports, sessions, rule compilation
            bench.reference_round(min(50, args.events))
            ours, reference, commands = [], [], []
            breakdown: dict[str, float] = {}
            for round_no in range(args.rounds):
                rate, by_command = bench.fieldrelay_round(args.events)
                per_event = sum(by_command.values())
                ours.append(rate)
                commands.append(per_event)
                breakdown = by_command
                reference.append(bench.reference_round(args.events))
                print(
                    f"round {round_no + 1}: fieldrelay {rate:7.1f} events/s   reference {reference[-1]:7.1f} "
                    f"events/s   Redis commands/event {per_event:6.1f}   (webhooks posted at {bench.posted:.0f}/s"
                    + (f", {bench.per_message:.1f} events per task message" if bench.per_message else "")
                    + ")\n"
                    "  CPU ms/event: fieldrelay "
                    + ", ".join(f"{k} {v:.2f}" for k, v in bench.cpu_ms.items())
                    + "; reference "
                    + ", ".join(f"{k} {v:.2f}" for k, v in bench.reference_cpu_ms.items()),
                    flush=True,
                )
            rss = bench.rss_mb()
            if args.rss_after:
                rate, _ = bench.fieldrelay_round(args.rss_after)
                after = bench.rss_mb()
                after_line = f"  RSS after {args.rss_after} more events ({rate:.0f} events/s) (MB): " + ", ".join(
                    f"{k} {v}" for k, v in after.items()
                )
        finally:
            bench.stop()
    median_ours, median_ref = statistics.median(ours), statistics.median(reference)
    print(
        f"\n{args.events} events x {args.rounds} rounds, {args.actions} action(s) per event, "
        f"{args.workers} worker processes each"
    )
    print(f"  fieldrelay  median {median_ours:7.1f} events/s  (min {min(ours):.1f}, max {max(ours):.1f})")
    print(f"  reference   median {median_ref:7.1f} events/s  (min {min(reference):.1f}, max {max(reference):.1f})")
    print(f"  ratio fieldrelay/reference: {median_ours / median_ref:.2f}x")
    print(f"  Redis commands per event: median {statistics.median(commands):.1f}")
    top = sorted(breakdown.items(), key=lambda kv: -kv[1])[:12]
    print("  by command (last round, per event): " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    print("  RSS at idle, before the first event (MB): " + ", ".join(f"{k} {v}" for k, v in idle.items()))
    print("  RSS after the rounds (MB): " + ", ".join(f"{k} {v}" for k, v in rss.items()))
    if args.rss_after:
        print(after_line)


if __name__ == "__main__":
    main()
