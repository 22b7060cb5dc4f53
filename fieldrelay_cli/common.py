"""What every command needs: the settings (or a readable exit), Redis, and the pipeline's state in it."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path

import redis

from fieldrelay.redaction import redactor_for
from fieldrelay.settings import Settings, SettingsError, load_settings
from fieldrelay.state import PipelineState
from fieldrelay_cli.embedded_redis import ensure_redis


def settings_or_exit(**overrides: object) -> Settings:
    """The settings; an invalid one ends the command with every problem named, secrets masked."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        sys.exit(f"invalid configuration:\n{exc}")


def with_redis(settings: Settings) -> Settings:
    """Resolve the Redis URL (starting the embedded server if none is set) and export it to children."""
    url, server = ensure_redis(settings.data_dir, settings.redis_url)
    if server is not None:
        atexit.register(server.stop)
        print(f"embedded Redis at {url} (data in {server.data_dir})", file=sys.stderr)
    os.environ["FIELDRELAY_REDIS_URL"] = url
    return settings.model_copy(update={"redis_url": url})


def running_redis_url(settings_redis_url: str | None, data_dir: Path) -> str | None:
    """The configured Redis, or the embedded one a running `fieldrelay run` wrote down; never starts one."""
    if settings_redis_url:
        return settings_redis_url
    url_file = data_dir / "redis" / "url"
    return url_file.read_text().strip() if url_file.exists() else None


def pipeline_state(settings: Settings) -> PipelineState:
    """The pipeline's state in the Redis the settings name (or the embedded one, started if need be)."""
    settings = with_redis(settings)
    return PipelineState(
        redis.Redis.from_url(settings.redis_url or "", socket_timeout=10), redactor=redactor_for(settings)
    )


def running_state(settings: Settings) -> PipelineState:
    """The state of a pipeline that runs already; exits with a message when there is none to read."""
    url = running_redis_url(settings.redis_url, settings.data_dir)
    if not url:
        sys.exit("no Redis: set FIELDRELAY_REDIS_URL (or start `fieldrelay run`)")
    return PipelineState(redis.Redis.from_url(url), redactor=redactor_for(settings))
