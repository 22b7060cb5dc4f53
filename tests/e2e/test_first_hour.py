"""A newcomer's first hour: `fieldrelay run`, the README's walkthrough, Ctrl-C, and again; the same results.

The command runs as a user runs it (`python -m fieldrelay_cli run` in the clone, on free ports, with its
own data directory). Between the walkthrough and Ctrl-C of the first run the embedded Redis is killed:
`fieldrelay run` starts it again with its data, and no process floods its log meanwhile. After each run,
every line of every log in `<data>/logs/` is JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from fieldrelay.state import RULES_STATUS_KEY
from fieldrelay_cli.devstack import SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER
from fieldrelay_cli.embedded_redis import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "examples" / "webhook-sample.json"
# Fields of the Synchroteam sandbox's job that differ on every creation: a time-based id, a random
# public link, and the creation times.
VOLATILE = {"id", "publicLink", "dateCreated", "dateModified"}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    """Poll `check` until it returns something truthy; a generous bound, never a timing assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


class Run:
    """One `fieldrelay run` child: its output lines as they come, its ports and data directory."""

    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
        self.data_dir, self.ports = data_dir, ports
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDRELAY_")}
        env["FIELDRELAY_DATA_DIR"] = str(data_dir)
        argv = [sys.executable, "-m", "fieldrelay_cli", "run"]
        for option, port in ports.items():
            argv += [f"--{option}", str(port)]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=lambda s=stream, acc=lines: acc.extend(iter(s.readline, "")), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    def url(self, option: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[option]}{path}"

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"fieldrelay run exited with {self.proc.returncode}: {''.join(self.err)}")
            return any("Ctrl-C stops everything." in line for line in self.out)

        wait_for("the banner", ready, timeout=180)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        return self.proc.wait(timeout=60)


@contextmanager
def running(data_dir: Path, ports: dict[str, int]) -> Iterator[Run]:
    run = Run(data_dir, ports)
    try:
        run.wait_ready()
        yield run
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
        for reader in run.readers:
            reader.join(timeout=10)
        for stream in (run.proc.stdout, run.proc.stderr):
            if stream is not None:
                stream.close()


def walkthrough(run: Run) -> dict[str, Any]:
    """The README's "Try it", returning what a person sees."""
    accepted = httpx.post(
        run.url("port", "/webhooks/servicetrade/demo-token"),
        content=SAMPLE.read_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    details_url = run.url("synchroteam-port", "/api/v3/job/details?myId=st-job-35769")

    def job() -> httpx.Response | None:
        response = httpx.get(details_url, auth=(SANDBOX_USER, SANDBOX_SYNCHROTEAM_KEY), timeout=10)
        return response if response.status_code == 200 else None

    details = wait_for("the job in the Synchroteam sandbox", job).json()
    writes = [
        (entry["method"], entry["path"], entry["status"], entry["json"])
        for entry in httpx.get(run.url("synchroteam-port", "/_sandbox/requests"), timeout=10).json()
        if entry["method"] != "GET"  # beat's pollers read the sandbox on their own schedule
    ]
    dlq = subprocess.run(
        [sys.executable, "-m", "fieldrelay_cli", "dlq", "list"],
        cwd=ROOT,
        env={**os.environ, "FIELDRELAY_DATA_DIR": str(run.data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return {
        "accepted": (accepted.status_code, accepted.json()),
        "job": {k: v for k, v in details.items() if k not in VOLATILE},
        "job id prefix": details["id"].split("_")[0],
        "writes": writes,
        "dlq list": (dlq.returncode, dlq.stdout),
    }


def kill_redis_and_see_it_come_back(run: Run) -> None:
    url = (run.data_dir / "redis" / "url").read_text().strip()
    client = redis.Redis.from_url(url)
    assert client.get(RULES_STATUS_KEY) is not None  # written when the worker loaded the rules
    [server] = [p for p in psutil.Process(run.proc.pid).children() if p.name().startswith("redis-server")]
    server.kill()
    wait_for("the restart message", lambda: any("embedded Redis exited with -9" in line for line in run.err))

    def ready() -> bool:
        try:
            return httpx.get(run.url("port", "/readyz"), timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("/readyz to answer 200 again", ready)
    assert client.get(RULES_STATUS_KEY) is not None  # the append-only file brought the data back
    client.close()
    worker_log = (run.data_dir / "logs" / "worker.log").read_text()
    assert worker_log.count("delayed tasks are not moving") <= 1  # was a line every 250 ms


def every_log_line_is_json(data_dir: Path) -> list[str]:
    logs = sorted((data_dir / "logs").glob("*.log"))
    assert {log.name for log in logs} >= {"receiver.log", "worker.log", "beat.log", "sandbox.log"}
    bad = []
    for log in logs:
        for number, line in enumerate(log.read_text().splitlines(), 1):
            try:
                json.loads(line)
            except ValueError:
                bad.append(f"{log.name}:{number}: {line[:200]}")
    return bad


def test_two_runs_of_the_walkthrough_look_the_same_and_log_only_json(tmp_path):
    data_dir = tmp_path / "var"
    ports = {
        "port": free_port(),
        "servicetrade-port": free_port(),
        "synchroteam-port": free_port(),
        "synergist-port": free_port(),
    }
    with running(data_dir, ports) as first:
        assert any("source " in line and "bin/activate" in line for line in first.out) or (
            os.environ.get("VIRTUAL_ENV") is not None
        )
        seen_first = walkthrough(first)
        kill_redis_and_see_it_come_back(first)
        assert first.stop() == 0
    assert every_log_line_is_json(data_dir) == []

    with running(data_dir, ports) as second:
        assert any("Started from a clean dev state" in line for line in second.out)
        seen_second = walkthrough(second)
        assert second.stop() == 0
    assert every_log_line_is_json(data_dir) == []

    assert seen_first["accepted"] == (200, {"accepted": 4})
    assert seen_first["job"]["myId"] == "st-job-35769" and seen_first["job"]["customer"]["myId"] == "st-company-39"
    assert [(method, path, status) for method, path, status, _ in seen_first["writes"]] == [
        ("POST", "/api/v3/customer/send", 200),
        ("POST", "/api/v3/job/send", 200),
    ]
    assert seen_first["dlq list"][0] == 0
    assert seen_second == seen_first
    for port in ports.values():  # Ctrl-C left nothing listening
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
