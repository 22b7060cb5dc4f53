"""Starts the whole pipeline as child processes: used by `fieldrelay run` and the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from fieldrelay.queues import ALL_QUEUES
from fieldrelay.settings import load_settings
from fieldrelay_cli.embedded_redis import EmbeddedRedis, ensure_redis

SANDBOX_USER = "sandbox"
SANDBOX_PASSWORD = "sandbox-password"
SANDBOX_SYNCHROTEAM_KEY = "5e1d2c3b-0000-4000-8000-000000000001"
DEMO_TOKEN = "demo-token"
DEMO_CONSOLE_TOKEN = "demo-console-token"


class StackError(Exception):
    """A component did not start; the message says which and where its log is."""


@dataclass
class StackConfig:
    data_dir: Path
    redis_url: str | None = None
    host: str = "127.0.0.1"
    receiver_port: int = 8000
    servicetrade_port: int = 8781
    synchroteam_port: int = 8782
    synergist_port: int = 8783
    webhook_tokens: str = DEMO_TOKEN
    console_token: str = DEMO_CONSOLE_TOKEN
    rules_dir: Path = Path("rules/examples")
    worker_concurrency: int = 2
    log_dir: Path | None = None  # None: children write to this console
    extra_env: dict[str, str] = field(default_factory=dict)
    # Keyword arguments for the Synchroteam sandbox's create_app (rate_limit, window_seconds,
    # daily_quota, quota_period); empty keeps its documented defaults.
    synchroteam_options: dict[str, Any] = field(default_factory=dict)

    def base_url(self, port: int) -> str:
        return f"http://{self.host}:{port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FIELDRELAY_REDIS_URL": self.redis_url or "",
                "FIELDRELAY_DATA_DIR": str(self.data_dir),
                "FIELDRELAY_RULES_DIR": str(self.rules_dir),
                "FIELDRELAY_WEBHOOK_TOKENS": self.webhook_tokens,
                "FIELDRELAY_CONSOLE_TOKEN": self.console_token,
                "FIELDRELAY_WORKER_CONCURRENCY": str(self.worker_concurrency),
                "FIELDRELAY_SERVICETRADE_BASE_URL": self.base_url(self.servicetrade_port) + "/api",
                "FIELDRELAY_SERVICETRADE_USERNAME": SANDBOX_USER,
                "FIELDRELAY_SERVICETRADE_PASSWORD": SANDBOX_PASSWORD,
                "FIELDRELAY_SYNCHROTEAM_BASE_URL": self.base_url(self.synchroteam_port),
                "FIELDRELAY_SYNCHROTEAM_DOMAIN": SANDBOX_USER,
                "FIELDRELAY_SYNCHROTEAM_API_KEY": SANDBOX_SYNCHROTEAM_KEY,
                "FIELDRELAY_SYNERGIST_BASE_URL": self.base_url(self.synergist_port),
                "FIELDRELAY_SYNERGIST_USER": SANDBOX_USER,
                "FIELDRELAY_SYNERGIST_PASSWORD": SANDBOX_PASSWORD,
                "FIELDRELAY_SYNERGIST_COMPANY": "1",
                # Plain http on one machine, with the short demo tokens (docs/security.md).
                "FIELDRELAY_DEV_MODE": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env


class Stack:
    """Child processes of one pipeline; `stop()` ends them all (SIGTERM, then SIGKILL).

    >>> with Stack(StackConfig(Path("var"))) as stack:   # doctest: +SKIP
    ...     stack.start_all()
    """

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._redis: EmbeddedRedis | None = None

    def start_redis(self) -> str:
        url, self._redis = ensure_redis(self.config.data_dir, self.config.redis_url)
        self.config.redis_url = url
        return url

    def _spawn(self, name: str, code: str) -> subprocess.Popen[bytes]:
        # `-P`: the working directory stays off sys.path, so a `rules/` or `workers/` folder there
        # cannot shadow the installed packages.
        argv = [sys.executable, "-P", "-c", code]
        if self.config.log_dir is None:
            proc = subprocess.Popen(argv, env=self.config.env(), start_new_session=True)
        else:
            self.config.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.config.log_dir / f"{name}.log", "ab") as out:  # the child keeps its own copy
                proc = subprocess.Popen(
                    argv, env=self.config.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
        self.procs[name] = proc
        return proc

    def start_sandbox(self) -> None:
        c = self.config
        self._spawn(
            "sandbox",
            "from sandbox.server import serve; "
            f"serve(host={c.host!r}, servicetrade_port={c.servicetrade_port}, "
            f"synchroteam_port={c.synchroteam_port}, synergist_port={c.synergist_port}, "
            f"synchroteam_options={c.synchroteam_options!r})",
        )
        self.wait_http("sandbox", c.base_url(c.servicetrade_port) + "/api/")
        self.wait_http("sandbox", c.base_url(c.synchroteam_port) + "/_sandbox/requests")

    def start_receiver(self) -> None:
        c = self.config
        self._spawn(
            "receiver",
            "import uvicorn; uvicorn.run('fieldrelay_cli.asgi:app', factory=True, "
            f"host={c.host!r}, port={c.receiver_port}, log_level='warning', access_log=False)",
        )
        self.wait_http("receiver", c.base_url(c.receiver_port) + "/readyz")

    def start_worker(self, name: str = "worker", queues: str | None = None) -> None:
        argv = [
            "worker",
            "--loglevel",
            "INFO",
            "-Q",
            queues or ",".join(ALL_QUEUES),
            "--concurrency",
            str(self.config.worker_concurrency),
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        self._spawn(name, f"from workers.celery_app import app; app.worker_main({argv!r})")
        self.wait_worker(name)

    def start_beat(self) -> None:
        schedule = self.config.data_dir / "celerybeat-schedule"
        self._spawn(
            "beat",
            "from workers.celery_app import app; "
            f"app.start(['beat', '--loglevel', 'INFO', '--schedule', {str(schedule)!r}])",
        )

    def start_all(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        self.start_sandbox()
        self.start_receiver()
        self.start_worker()
        self.start_beat()

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            where = f"; see {self.config.log_dir / (name + '.log')}" if self.config.log_dir else ""
            raise StackError(f"{name} exited with {proc.returncode}{where}")

    def wait_http(self, name: str, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise StackError(f"{name} did not answer {url} within {timeout}s")

    def wait_worker(self, name: str, timeout: float = 60.0) -> None:
        # Celery's Redis transport registers each consumer's queues in this set; it appears
        # once the worker is consuming, without needing the (disabled) remote-control mailbox.
        client = redis.Redis.from_url(self.config.redis_url or "")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._check_alive(name)
                if client.exists("_kombu.binding.events"):
                    time.sleep(0.5)
                    return
                time.sleep(0.1)
        finally:
            client.close()
        raise StackError(f"{name} did not start consuming within {timeout}s")

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        names = [name] if name else list(reversed(self.procs))
        for n in names:
            proc = self.procs.get(n)
            if proc and proc.poll() is None:
                os.killpg(proc.pid, sig)
        for n in names:
            proc = self.procs.pop(n, None)
            if proc is None:
                continue
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if name is None and self._redis is not None:
            self._redis.stop()
            self._redis = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_stack(receiver_port: int = 8000) -> int:
    """`fieldrelay run`: start everything, print how to try it, and stop all on Ctrl-C."""
    settings = load_settings(dev_mode=True)  # the dev stack: its demo tokens are short
    config = StackConfig(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url,
        receiver_port=receiver_port,
        rules_dir=settings.rules_dir,
        webhook_tokens=",".join(t.get_secret_value() for t in settings.webhook_tokens) or DEMO_TOKEN,
        console_token=settings.console_token.get_secret_value() if settings.console_token else DEMO_CONSOLE_TOKEN,
        log_dir=settings.data_dir / "logs",
    )
    stack = Stack(config)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through `finally: stack.stop()` like Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    try:
        stack.start_all()
    except BaseException:
        stack.stop()
        raise
    token = config.webhook_tokens.split(",")[0]
    stm = config.base_url(config.synchroteam_port)
    print(
        f"""
fieldrelay is running (logs in {config.log_dir}/):
  receiver      {config.base_url(receiver_port)}   (healthz, readyz, metrics, /webhooks/servicetrade/<token>)
  console       {config.base_url(receiver_port)}/console   (sign in with the token {config.console_token!r})
  redis         {config.redis_url}
  ServiceTrade  {config.base_url(config.servicetrade_port)}/api   (sandbox)
  Synchroteam   {stm}   (sandbox)
  Synergist     {config.base_url(config.synergist_port)}   (sandbox)
  rules         {config.rules_dir}

Send ServiceTrade's documented sample webhook:
  curl -s -X POST {config.base_url(receiver_port)}/webhooks/servicetrade/{token} \\
       -H 'Content-Type: application/json' -d @examples/webhook-sample.json

Then see the job it created in the Synchroteam sandbox:
  curl -s -u {SANDBOX_USER}:{SANDBOX_SYNCHROTEAM_KEY} '{stm}/api/v3/job/details?myId=st-job-35769'
  curl -s {stm}/_sandbox/requests        # every request the sandbox received

Ctrl-C stops everything.""",
        flush=True,
    )
    try:
        while True:
            time.sleep(0.5)
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            if not dead:
                continue
            if any(n not in ("worker", "beat") for n in dead):
                print(f"stopping: {', '.join(dead)} exited (see {config.log_dir}/)", file=sys.stderr)
                return 1
            for name in dead:  # Celery can exit on a broker hiccup; the work it held comes back
                print(f"{name} exited; starting it again (see {config.log_dir}/{name}.log)", file=sys.stderr)
                stack.procs.pop(name)
                stack.start_worker() if name == "worker" else stack.start_beat()
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
