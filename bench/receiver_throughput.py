"""Receiver throughput and latency against a bare Starlette+LPUSH reference, measured side by side.

Both apps run in the same way (one uvicorn process each, same loop and HTTP parser, same
private Redis), alternating rounds so machine noise hits both alike. wrk posts
ServiceTrade's documented 4-entity sample message with 32 connections. Prints the median
req/s and p99 of each, and the ratio receiver/reference.

    .venv/bin/python bench/receiver_throughput.py [--rounds 3] [--seconds 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fieldrelay_cli.embedded_redis import EmbeddedRedis, free_port  # noqa: E402

TOKEN = "bench-token"
APPS = {
    "reference": "bench.reference_app:app",
    "receiver": "fieldrelay_cli.asgi:app",
}


def start_app(target: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--factory",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{target} did not start")


def wrk(port: int, seconds: int, connections: int, lua: Path) -> tuple[float, float, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/webhooks/servicetrade/{TOKEN}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"non-2xx answers during the run:\n{out}")

    def pct(label: str) -> float:
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")

    body = (ROOT / "examples" / "webhook-sample.json").read_text()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        lua = Path(tmp) / "post.lua"
        lua.write_text(
            f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = [[{body}]]\n'
        )
        env = dict(os.environ, FIELDRELAY_REDIS_URL=server.url, FIELDRELAY_WEBHOOK_TOKENS=TOKEN, PYTHONPATH=str(ROOT))
        r = redis.Redis.from_url(server.url)
        ports = {name: free_port() for name in APPS}
        procs = {name: start_app(target, ports[name], env) for name, target in APPS.items()}
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in APPS}
        try:
            for name in APPS:  # warm-up
                wrk(ports[name], 2, args.connections, lua)
            for _ in range(args.rounds):
                for name in APPS:
                    r.flushdb()
                    results[name].append(wrk(ports[name], args.seconds, args.connections, lua))
            queued = r.llen("events")
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait()
            r.close()

    print(
        f"{args.rounds} alternating rounds of {args.seconds}s, {args.connections} connections, "
        f"ServiceTrade's 4-entity sample message; {os.cpu_count()} cores"
    )
    med = {}
    for name, runs in results.items():
        med[name] = tuple(statistics.median(x[i] for x in runs) for i in range(3))
        rps, p50, p99 = med[name]
        print(
            f"  {name:<10} {rps:8.0f} req/s   p50 {p50:6.1f} ms   p99 {p99:6.1f} ms   "
            f"(rounds: {', '.join(f'{x[0]:.0f}' for x in runs)})"
        )
    print(
        f"  ratio receiver/reference: {med['receiver'][0] / med['reference'][0]:.2f}x "
        f"(each request: 4 events in one Celery message; {queued} messages queued in the last round)"
    )


if __name__ == "__main__":
    main()
