"""Process settings from FIELDRELAY_* environment variables (and an optional .env file)."""

from __future__ import annotations

import calendar
from datetime import datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "FIELDRELAY_"


class SettingsError(Exception):
    """Invalid configuration; the message names each variable and its bad value (secrets masked)."""


class Settings(BaseSettings):
    """All configuration. Build with `load_settings()` to get readable errors.

    >>> s = Settings(webhook_tokens="a,b")
    >>> [t.get_secret_value() for t in s.webhook_tokens]
    ['a', 'b']
    """

    # Empty variables mean "unset": docker-compose passes ${VAR:-} through as "".
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", env_ignore_empty=True)

    redis_url: str | None = Field(
        default=None, description="Redis for the Celery broker and state; unset starts an embedded Redis."
    )
    data_dir: Path = Field(default=Path("var"), description="Where the embedded Redis and spools keep data.")
    spool_replay_interval: float = Field(
        default=2.0, gt=0, description="Seconds between attempts to replay webhooks spooled while Redis was down."
    )
    rules_dir: Path = Field(default=Path("rules/examples"), description="Directory of rule YAML files.")
    webhook_tokens: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated tokens accepted in /webhooks/servicetrade/{token}; several allow rotation.",
    )
    rules_env: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated environment variable names rules may read as {{ env.NAME }} or !secret NAME.",
    )
    sentry_dsn: SecretStr | None = Field(default=None, description="Sentry DSN; unset disables Sentry.")
    sentry_environment: str = Field(default="production", description="Sentry environment tag.")

    servicetrade_base_url: str = Field(default="https://api.servicetrade.com/api")
    servicetrade_username: str = ""
    servicetrade_password: SecretStr = SecretStr("")
    servicetrade_rate_limit: int = Field(
        default=0, ge=0, description="Requests per window to ServiceTrade for all workers together; 0 = unpaced."
    )
    servicetrade_rate_window: float = Field(default=60.0, gt=0, description="That window in seconds.")

    synchroteam_base_url: str = Field(default="https://ws.synchroteam.com")
    synchroteam_domain: str = ""
    synchroteam_api_key: SecretStr = SecretStr("")
    synchroteam_rate_limit: int = Field(
        default=120, ge=1, description="Requests per window for all workers together (documented: 120/minute)."
    )
    synchroteam_rate_window: float = Field(default=60.0, gt=0, description="The rate-limit window in seconds.")
    synchroteam_quota_period: float = Field(
        default=86400.0, gt=0, description="Seconds between daily-quota resets (UTC midnight); tests compress it."
    )

    # Synergist is hosted per customer (http://<SERVER>/jsonapi/...): there is no public default host.
    synergist_base_url: str = Field(default="")
    synergist_user: str = ""
    synergist_password: SecretStr = SecretStr("")
    synergist_sha512password: SecretStr | None = Field(
        default=None, description="Sent instead of the password when set (users.json?action=GETSHA512)."
    )
    synergist_company: str = "1"
    synergist_rate_limit: int = Field(
        default=120, ge=0, description="Requests per window to Synergist for all workers together; 0 = unpaced."
    )
    synergist_rate_window: float = Field(default=60.0, gt=0, description="That window in seconds.")

    http_timeout: float = Field(default=10.0, gt=0, description="Seconds for each outbound API call.")
    action_max_retries: int = Field(
        default=8, ge=0, description="Retries of an action after a network error, timeout or 5xx, then the DLQ."
    )
    retry_max_backoff: float = Field(default=300.0, gt=0, description="Longest wait between two retries, seconds.")
    worker_concurrency: int = Field(default=2, ge=1, description="Celery worker processes.")
    console_token: SecretStr | None = Field(
        default=None, description="Token that opens the /console pages; unset disables the console."
    )

    poll_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated systems or pollers to run (servicetrade, synchroteam.job...); "
        "`none` disables polling; unset polls every system whose credentials are set.",
    )
    poll_interval: float = Field(default=60.0, gt=0, description="Seconds between two runs of each poller.")
    poll_overlap: int = Field(default=120, ge=0, description="Seconds of the previous window read again.")
    poll_start: str = Field(default="now", description="Where a poller's first run starts: now, all, a date.")
    poll_lease: int = Field(default=300, gt=0, description="Seconds a poll run holds its lock at most.")
    poll_webhook_grace: int = Field(
        default=60, ge=0, description="ServiceTrade changes younger than this are left to their webhook."
    )
    poll_config: Path | None = Field(default=None, description="Optional YAML file tuning each poller.")

    clock_skew: int = Field(
        default=300, ge=0, description="Seconds a webhook's per-entity timestamp may be ahead of the receiver's clock."
    )
    entity_state_ttl: int = Field(
        default=30 * 86400, gt=0, description="Seconds the last seen version of a record is kept after its last change."
    )
    entity_state_max_bytes: int = Field(
        default=16384, ge=1024, description="Bytes of fields kept per record; the largest fields beyond it are dropped."
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a redis:// URL: {value!r}")
        return value

    @field_validator("webhook_tokens", "rules_env", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("poll_sources", mode="before")
    @classmethod
    def _split_sources(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("poll_start")
    @classmethod
    def _poll_start(cls, value: str) -> str:
        parse_poll_start(value)  # raises ValueError naming the bad value
        return value

    @field_validator("servicetrade_base_url", "synchroteam_base_url", "synergist_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"not an http(s):// URL: {value!r}")
        return value.rstrip("/")


def parse_poll_start(value: str | int | None) -> int | None:
    """`now` (None), `all` (0), Unix seconds, or an ISO date/datetime taken as UTC."""
    if value is None or str(value).strip().lower() in ("", "now"):
        return None
    text = str(value).strip()
    if text.lower() in ("all", "epoch"):
        return 0
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not 'now', 'all', Unix seconds or an ISO date: {text!r}") from None
    return calendar.timegm(parsed.utctimetuple())


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with `SettingsError` naming `FIELDRELAY_<NAME>` on bad input."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ENV_PREFIX + ".".join(str(p) for p in err["loc"]).upper()
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {msg}")
        raise SettingsError("\n".join(lines)) from None
