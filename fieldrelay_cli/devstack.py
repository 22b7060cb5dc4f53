"""Starts the whole pipeline as child processes: used by `fieldrelay run` and the end-to-end tests."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import redis

from fieldrelay.queues import ALL_QUEUES
from fieldrelay.settings import Settings
from fieldrelay_cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError, ensure_redis
from fieldrelay_cli.ports import PortTakenError, check_ports

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
        self, name: str = "worker", queues: str | None = None, *, supervised: bool = False, wait: bool = True
    ) -> None:
        """A Celery worker, started directly, or `supervised` as `fieldrelay worker` runs it."""
        if supervised:
            flags = ["--name", f"{name}@%h", "--concurrency", str(self.config.worker_concurrency)]
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


@dataclass
class RunOptions:
    """What `fieldrelay run` was asked for; ports left None come from the settings."""

    keep: bool = False
    host: str = "127.0.0.1"
    receiver_port: int | None = None
    servicetrade_port: int | None = None
    synchroteam_port: int | None = None
    synergist_port: int | None = None


def stack_config(settings: Settings, options: RunOptions) -> StackConfig:
    return StackConfig(
        data_dir=settings.data_dir,
        redis_url=settings.redis_url,
        host=options.host,
        receiver_port=options.receiver_port or settings.receiver_port,
        servicetrade_port=options.servicetrade_port or settings.sandbox_servicetrade_port,
        synchroteam_port=options.synchroteam_port or settings.sandbox_synchroteam_port,
        synergist_port=options.synergist_port or settings.sandbox_synergist_port,
        rules_dir=settings.rules_dir,
        webhook_tokens=",".join(t.get_secret_value() for t in settings.webhook_tokens) or DEMO_TOKEN,
        console_token=settings.console_token.get_secret_value() if settings.console_token else DEMO_CONSOLE_TOKEN,
        log_dir=settings.data_dir / "logs",
    )


def check_stack_ports(config: StackConfig) -> None:
    """Refuse ports something else holds, naming each one and its option (`PortTakenError`)."""
    check_ports(
        config.host,
        {
            "receiver": (config.receiver_port, "--port or FIELDRELAY_RECEIVER_PORT"),
            "ServiceTrade sandbox": (
                config.servicetrade_port,
                "--servicetrade-port or FIELDRELAY_SANDBOX_SERVICETRADE_PORT",
            ),
            "Synchroteam sandbox": (
                config.synchroteam_port,
                "--synchroteam-port or FIELDRELAY_SANDBOX_SYNCHROTEAM_PORT",
            ),
            "Synergist sandbox": (config.synergist_port, "--synergist-port or FIELDRELAY_SANDBOX_SYNERGIST_PORT"),
        },
    )


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One `fieldrelay run` per data directory: a second one would clear or share the first one's state."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "run.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise StackError(
                f"another `fieldrelay run` (pid {pid}) uses {data_dir}/; stop it, or give this one its own "
                "FIELDRELAY_DATA_DIR and ports"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def clear_dev_state(config: StackConfig) -> list[str]:
    """Remove what a previous run left in the data directory; returns what was cleared, for the banner.

    The embedded Redis's data goes only when the stack runs its own Redis: a configured
    FIELDRELAY_REDIS_URL is never flushed, and neither is the spool of webhooks waiting for it.
    """
    data = config.data_dir
    cleared = []
    if config.redis_url is None:
        url_file = data / "redis" / "url"
        if url_file.exists() and _answers(url_file.read_text().strip()):
            raise StackError(
                f"an embedded Redis that another fieldrelay command started answers at "
                f"{url_file.read_text().strip()} (data in {data / 'redis'}); stop that command first, "
                "or run `fieldrelay run --keep` to use it as it is"
            )
        for part in ("redis", "spool"):
            if (data / part).exists():
                shutil.rmtree(data / part)
        cleared.append("the embedded Redis's events, traces and dead letters")
    for schedule in data.glob("celerybeat-schedule*"):
        schedule.unlink()
    if config.log_dir is not None:
        for log in config.log_dir.glob("*.log"):
            log.unlink()
        cleared.append("the logs")
    return cleared


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def activate_hint() -> str | None:
    """`source .venv/bin/activate` for the virtualenv this runs in, when `fieldrelay` is not on PATH there."""
    if sys.prefix == sys.base_prefix:
        return None
    venv = Path(sys.prefix)
    with_path = shutil.which("fieldrelay")
    if with_path and Path(with_path).parent == venv / "bin":
        return None  # already active
    try:
        shown = venv.relative_to(Path.cwd())
    except ValueError:
        shown = venv
    return f"source {shown}/bin/activate"


def banner(config: StackConfig, cleared: list[str] | None) -> str:
    """What `fieldrelay run` prints once everything answers: where each part is, and the walkthrough."""
    token = config.webhook_tokens.split(",")[0]
    stm = config.base_url(config.synchroteam_port)
    receiver = config.base_url(config.receiver_port)
    if cleared is None:
        state = (
            "Kept the last run's Redis data (--keep). The sandboxes start from their seed data, and a webhook\n"
            "the last run processed is dropped as a duplicate. Without --keep, `fieldrelay run` starts clean."
        )
    else:
        state = (
            "Started from a clean dev state: the sandboxes hold their seed data"
            + "".join(f"; cleared {what}" for what in cleared)
            + ".\n`fieldrelay run --keep` keeps the last run's Redis data instead."
        )
    hint = activate_hint()
    activate = f"\nIn another terminal, put `fieldrelay` on your PATH first:\n  {hint}\n" if hint else ""
    return f"""
fieldrelay is running (logs in {config.log_dir}/):
  receiver      {receiver}   (healthz, readyz, metrics, openapi.json, /webhooks/servicetrade/<token>)
  console       {receiver}/console   (sign in with the token {config.console_token!r})
  redis         {config.redis_url}
  ServiceTrade  {config.base_url(config.servicetrade_port)}/api   (sandbox)
  Synchroteam   {stm}   (sandbox)
  Synergist     {config.base_url(config.synergist_port)}   (sandbox)
  rules         {config.rules_dir}

{state}
{activate}
Send ServiceTrade's documented sample webhook:
  curl -s -X POST {receiver}/webhooks/servicetrade/{token} \\
       -H 'Content-Type: application/json' -d @examples/webhook-sample.json

Then see the job it created in the Synchroteam sandbox:
  curl -s -u {SANDBOX_USER}:{SANDBOX_SYNCHROTEAM_KEY} '{stm}/api/v3/job/details?myId=st-job-35769'
  curl -s {stm}/_sandbox/requests        # every request the sandbox received

Ctrl-C stops everything."""


# The embedded Redis may die (OOM killer, a stray kill); it is started again this many times
# within REDIS_RESTART_WINDOW seconds before the stack gives up and stops.
REDIS_RESTARTS = 3
REDIS_RESTART_WINDOW = 60.0


def run_stack(settings: Settings, options: RunOptions, out: IO[str] | None = None) -> int:
    """`fieldrelay run`: start everything, print how to try it, watch it, and stop all on Ctrl-C.

    Every process it started is watched: a worker or beat that exits is started again (Celery can
    exit on a broker hiccup), the embedded Redis is started again on its port with its data, and
    anything else that exits stops the stack with a message that names it.
    """
    out = out or sys.stdout
    config = stack_config(settings, options)
    try:
        with data_dir_lock(config.data_dir):
            check_stack_ports(config)
            cleared = None if options.keep else clear_dev_state(config)
            return _run(Stack(config), cleared, out)
    except (StackError, EmbeddedRedisError, PortTakenError) as exc:
        print(f"fieldrelay run: {exc}", file=sys.stderr)
        return 1


def _run(stack: Stack, cleared: list[str] | None, out: IO[str]) -> int:
    config = stack.config

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through `finally: stack.stop()` like Ctrl-C

    # SIGINT too: a shell that starts a command in the background makes it ignore SIGINT.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, terminate)
    try:
        try:
            stack.start_all()
        except KeyboardInterrupt:
            return 0
        print(banner(config, cleared), file=out, flush=True)
        return _watch(stack)
    except KeyboardInterrupt:
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        stack.stop()


def _watch(stack: Stack) -> int:
    config = stack.config
    redis_restarts: list[float] = []
    while True:
        time.sleep(0.5)
        code = stack.redis_exit_code()
        if code is not None:
            now = time.monotonic()
            redis_restarts = [t for t in redis_restarts if now - t < REDIS_RESTART_WINDOW] + [now]
            where = config.data_dir / "redis" / "redis.log"
            if len(redis_restarts) > REDIS_RESTARTS:
                print(
                    f"stopping: the embedded Redis exited with {code} {REDIS_RESTARTS + 1} times within "
                    f"{REDIS_RESTART_WINDOW:.0f} s (see {where})",
                    file=sys.stderr,
                )
                return 1
            print(
                f"embedded Redis exited with {code}; starting it again (its AOF keeps the data; see {where})",
                file=sys.stderr,
            )
            try:
                stack.restart_redis()
            except EmbeddedRedisError as exc:
                print(f"stopping: the embedded Redis did not start again: {exc}", file=sys.stderr)
                return 1
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
