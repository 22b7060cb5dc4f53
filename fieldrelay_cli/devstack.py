"""The whole pipeline as child processes (`Stack`): what `fieldrelay run` starts, and the end-to-end tests."""

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
from fieldrelay_cli.embedded_redis import EmbeddedRedis, ensure_redis

SANDBOX_USER = "sandbox"
SANDBOX_PASSWORD = "sandbox-password"
SANDBOX_SYNCHROTEAM_KEY = "5e1d2c3b-0000-4000-8000-000000000001"
DEMO_TOKEN = "demo-token"
DEMO_CONSOLE_TOKEN = "demo-console-token"


# What each child runs first: its logging (JSON unless FIELDRELAY_LOG_FORMAT says text), Python's
# warnings and uncaught exceptions included, before anything it imports can print.
_LOGGING = "from fieldrelay.logs import setup_logging; setup_logging(); "


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

    def redis_exit_code(self) -> int | None:
        """The exit code of the embedded Redis this stack started, if it died; None while it runs (or is not ours)."""
        return self._redis.returncode() if self._redis is not None else None

    def restart_redis(self) -> None:
        """Start the embedded Redis again on its port; its append-only file brings the data back."""
        assert self._redis is not None
        self._redis.stop()
        self._redis.start()

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
            f"{_LOGGING}from sandbox.server import serve; "
            f"serve(host={c.host!r}, servicetrade_port={c.servicetrade_port}, "
            f"synchroteam_port={c.synchroteam_port}, synergist_port={c.synergist_port}, "
            f"synchroteam_options={c.synchroteam_options!r}, log_config=None)",
        )
        self.wait_http("sandbox", c.base_url(c.servicetrade_port) + "/api/")
        self.wait_http("sandbox", c.base_url(c.synchroteam_port) + "/_sandbox/requests")

    def start_receiver(self) -> None:
        c = self.config
        self._spawn(
            "receiver",
            f"{_LOGGING}import uvicorn; from fieldrelay.logs import logging_config; "
            "uvicorn.run('fieldrelay_cli.asgi:app', factory=True, "
            f"host={c.host!r}, port={c.receiver_port}, log_level='warning', access_log=False, "
            "log_config=logging_config(level='WARNING'))",
        )
        self.wait_http("receiver", c.base_url(c.receiver_port) + "/readyz")

    def start_worker(
        self,
        name: str = "worker",
        queues: str | None = None,
        *,
        supervised: bool = False,
        wait: bool = True,
        loglevel: str = "INFO",
    ) -> None:
        """A Celery worker, started directly, or `supervised` as `fieldrelay worker` runs it."""
        if supervised:
            flags = [
                "--name",
                f"{name}@%h",
                "--concurrency",
                str(self.config.worker_concurrency),
                "--loglevel",
                loglevel,
            ]
            flags += ["--queues", queues] if queues else []
            code = f"import sys; from fieldrelay_cli.main import main; sys.exit(main({['worker', *flags]!r}))"
            self._spawn(name, _LOGGING + code)
            if wait:
                self.wait_worker(name)
            return
        argv = [
            "--quiet",  # no banner on stdout: workers/signals.py logs what it says as one JSON line
            "worker",
            "--loglevel",
            loglevel,
            "-Q",
            queues or ",".join(ALL_QUEUES),
            "--concurrency",
            str(self.config.worker_concurrency),
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
        self._spawn(name, f"{_LOGGING}from workers.celery_app import app; app.worker_main({argv!r})")
        self.wait_worker(name)

    def start_beat(self) -> None:
        schedule = self.config.data_dir / "celerybeat-schedule"
        self._spawn(
            "beat",
            f"{_LOGGING}from workers.celery_app import app; "
            f"app.start(['--quiet', 'beat', '--loglevel', 'INFO', '--schedule', {str(schedule)!r}])",
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
