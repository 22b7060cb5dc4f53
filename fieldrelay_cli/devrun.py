"""`fieldrelay run`: the whole pipeline on one laptop, from a clean dev state, watched until Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis

from fieldrelay.settings import Settings
from fieldrelay_cli.devstack import (
    DEMO_CONSOLE_TOKEN,
    DEMO_TOKEN,
    SANDBOX_SYNCHROTEAM_KEY,
    SANDBOX_USER,
    Stack,
    StackConfig,
    StackError,
)
from fieldrelay_cli.embedded_redis import EmbeddedRedisError
from fieldrelay_cli.ports import PortTakenError, check_ports


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
        # The Synchroteam sandbox writes its dates in the same account zone the workers read them in.
        synchroteam_options={"timezone": settings.synchroteam_timezone},
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

Two-way flow: README "Two-way flow" has a technician complete job st-job-35770 in the field, and shows
its appointment, comment, files and timesheet reach ServiceTrade and Synergist.

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
