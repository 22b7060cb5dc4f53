"""Process settings from FIELDRELAY_* environment variables (and an optional .env file)."""

from __future__ import annotations

import calendar
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sentry_sdk.utils import BadDsn, Dsn

from fieldrelay.egress import parse_allowed_hosts

ENV_PREFIX = "FIELDRELAY_"
# Tokens a person could guess or brute-force are refused outside the dev stack (FIELDRELAY_DEV_MODE).
MIN_TOKEN_LENGTH = 16
POLL_SYSTEMS = ("servicetrade", "synchroteam", "synergist")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_POLL_SOURCE = re.compile(r"^(servicetrade|synchroteam|synergist)(\.[a-z]+)?$")
DAY = 86400.0


class SettingsError(Exception):
    """Invalid configuration; the message names each variable and its bad value (secrets masked)."""


class Settings(BaseSettings):
    """All configuration. Build with `load_settings()` to get readable errors.

    >>> s = Settings(webhook_tokens="a,b")
    >>> [t.get_secret_value() for t in s.webhook_tokens]
    ['a', 'b']
    """

    # Empty variables mean "unset": docker-compose passes ${VAR:-} through as "". Inputs never appear in
    # validation errors (they may be secrets), and no number may be inf or nan.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        extra="ignore",
        env_ignore_empty=True,
        hide_input_in_errors=True,
        allow_inf_nan=False,
    )

    redis_url: str | None = Field(
        default=None, description="Redis for the Celery broker and state; unset starts an embedded Redis."
    )
    data_dir: Path = Field(default=Path("var"), description="Where the embedded Redis and spools keep data.")
    spool_replay_interval: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="Seconds between attempts to replay webhooks spooled while Redis was down.",
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
    servicetrade_auth: Literal["session", "oauth2"] = Field(
        default="session",
        description="session: POST /auth and the PHPSESSID cookie (documented); oauth2: bearer tokens from "
        "POST /oauth2/token, as the official SDK's setBearerToken sends them.",
    )
    servicetrade_oauth_grant: Literal["password", "client_credentials"] = Field(
        default="password", description="The OAuth2 grant: the username and password, or a client id and secret."
    )
    servicetrade_client_id: str = ""
    servicetrade_client_secret: SecretStr = SecretStr("")
    servicetrade_rate_limit: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Requests per window to ServiceTrade for all workers together; 0 = unpaced.",
    )
    servicetrade_rate_window: float = Field(default=60.0, gt=0, le=DAY, description="That window in seconds.")

    synchroteam_base_url: str = Field(default="https://ws.synchroteam.com")
    synchroteam_domain: str = ""
    synchroteam_api_key: SecretStr = SecretStr("")
    synchroteam_rate_limit: int = Field(
        default=120,
        ge=1,
        le=1_000_000,
        description="Requests per window for all workers together (documented: 120/minute).",
    )
    synchroteam_rate_window: float = Field(default=60.0, gt=0, le=DAY, description="The rate-limit window in seconds.")
    synchroteam_quota_period: float = Field(
        default=86400.0,
        gt=0,
        le=31 * DAY,
        description="Seconds between daily-quota resets (UTC midnight); tests compress it.",
    )
    synchroteam_timezone: str = Field(
        default="UTC",
        description="IANA zone of the Synchroteam account: every date the doc does not mark as UTC is local.",
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
        default=120,
        ge=0,
        le=1_000_000,
        description="Requests per window to Synergist for all workers together; 0 = unpaced.",
    )
    synergist_rate_window: float = Field(default=60.0, gt=0, le=DAY, description="That window in seconds.")

    http_timeout: float = Field(default=10.0, gt=0, le=600, description="Seconds for each outbound API call.")
    action_max_retries: int = Field(
        default=8, ge=0, le=100, description="Retries of an action after a network error, timeout or 5xx, then the DLQ."
    )
    retry_max_backoff: float = Field(
        default=300.0, gt=0, le=DAY, description="Longest wait between two retries, seconds."
    )
    worker_concurrency: int = Field(default=2, ge=1, le=256, description="Celery worker processes.")
    console_token: SecretStr | None = Field(
        default=None, description="Token that opens the /console pages; unset disables the console."
    )
    http_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts (host, host:port, *.example.com) http.request may call; "
        "unset allows public addresses only.",
    )
    http_max_request_body: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=100 * 1024 * 1024,
        description="Largest request body, in bytes, an http.request action may send.",
    )
    dev_mode: bool = Field(
        default=False,
        description="Plain-http local development (`fieldrelay run` sets it): console cookies without Secure, "
        "tokens shorter than 16 characters accepted. Never in production.",
    )

    poll_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated systems or pollers to run (servicetrade, synchroteam.job...); "
        "`none` disables polling; unset polls every system whose credentials are set.",
    )
    poll_interval: float = Field(default=60.0, gt=0, le=DAY, description="Seconds between two runs of each poller.")
    poll_overlap: int = Field(
        default=120, ge=0, le=30 * 86400, description="Seconds of the previous window read again."
    )
    poll_start: str = Field(default="now", description="Where a poller's first run starts: now, all, a date.")
    poll_lease: int = Field(default=300, gt=0, le=86400, description="Seconds a poll run holds its lock at most.")
    poll_webhook_grace: int = Field(
        default=60, ge=0, le=86400, description="ServiceTrade changes younger than this are left to their webhook."
    )
    poll_config: Path | None = Field(default=None, description="Optional YAML file tuning each poller.")

    # How processes log, and where `fieldrelay receiver|sandbox|run` listen (their --port options win).
    log_format: Literal["json", "text"] = Field(
        default="json", description="json: one JSON object per line; text: one readable line per record."
    )
    events_per_message: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Events the receiver puts in one task message when webhooks arrive together (1: one each).",
    )
    receiver_port: int = Field(default=8000, ge=1, le=65535, description="Port of `fieldrelay receiver` and `run`.")
    sandbox_servicetrade_port: int = Field(default=8781, ge=1, le=65535, description="ServiceTrade sandbox port.")
    sandbox_synchroteam_port: int = Field(default=8782, ge=1, le=65535, description="Synchroteam sandbox port.")
    sandbox_synergist_port: int = Field(default=8783, ge=1, le=65535, description="Synergist sandbox port.")
    clock_skew: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="Seconds a webhook's per-entity timestamp may be ahead of the receiver's clock.",
    )
    entity_state_ttl: int = Field(
        default=30 * 86400,
        gt=0,
        le=10 * 366 * 86400,
        description="Seconds the last seen version of a record is kept after its last change.",
    )
    entity_state_max_bytes: int = Field(
        default=16384,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Bytes of fields kept per record; the largest fields beyond it are dropped.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"not a redis:// URL: {value!r}")
        return value

    @field_validator("webhook_tokens", "rules_env", "poll_sources", "http_allowed_hosts", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        return _comma_list(value) if isinstance(value, str) else value

    @field_validator("rules_env")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(
                    f"{name!r} is not an environment variable name (letters, digits and _, not starting with a digit)"
                )
        return value

    @field_validator("poll_sources")
    @classmethod
    def _poll_sources(cls, value: list[str]) -> list[str]:
        for name in value:
            if not (name == "none" and value == ["none"]) and not _POLL_SOURCE.match(name):
                raise ValueError(
                    f"{name!r} is not a poll source: use a system ({', '.join(POLL_SYSTEMS)}), "
                    "a poller such as servicetrade.job, or `none` alone"
                )
        return value

    @field_validator("poll_config")
    @classmethod
    def _poll_config(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {str(value)!r}")
        return value

    @field_validator("http_allowed_hosts")
    @classmethod
    def _allowed_hosts(cls, value: list[str]) -> list[str]:
        parse_allowed_hosts(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return value
        try:
            Dsn(value.get_secret_value())
        except BadDsn:
            # The DSN holds its key: say what is wrong with it, never what it is.
            raise ValueError("not a Sentry DSN (expected https://<public key>@<host>/<project id>)") from None
        return value

    @model_validator(mode="after")
    def _token_lengths(self) -> Self:
        if self.dev_mode:
            return self
        problems = []
        for i, token in enumerate(self.webhook_tokens, 1):
            if len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
                problems.append(
                    f"{ENV_PREFIX}WEBHOOK_TOKENS: token {i} of {len(self.webhook_tokens)} is "
                    f"{len(token.get_secret_value())} characters; at least {MIN_TOKEN_LENGTH} are required"
                )
        console = self.console_token.get_secret_value() if self.console_token else ""
        if console and len(console) < MIN_TOKEN_LENGTH:
            problems.append(
                f"{ENV_PREFIX}CONSOLE_TOKEN: {len(console)} characters; at least {MIN_TOKEN_LENGTH} are required"
            )
        if problems:
            hint = "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            raise ValueError("\n".join([*problems[:-1], f"{problems[-1]} {hint}"]))
        return self

    @field_validator("poll_start")
    @classmethod
    def _poll_start(cls, value: str) -> str:
        parse_poll_start(value)  # raises ValueError naming the bad value
        return value

    @field_validator("synchroteam_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone name (e.g. Europe/Paris): {value!r}") from None
        return value

    @field_validator("servicetrade_base_url", "synchroteam_base_url", "synergist_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            parts = urlsplit(value)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ValueError(f"not a URL: {_without_userinfo(value)!r}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s):// URL: {_without_userinfo(value)!r}")
        if not host:
            raise ValueError(f"no host in the URL: {_without_userinfo(value)!r}")
        return value.rstrip("/")


def _without_userinfo(url: str) -> str:
    """A URL fit for an error message: any `user:password@` is dropped."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}{sep}{netloc.rpartition('@')[2]}{slash}{path}" if sep else url


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


class _AllowedHostsOnly(BaseSettings):
    model_config = Settings.model_config
    http_allowed_hosts: str = ""


def http_allowed_hosts() -> list[str]:
    """FIELDRELAY_HTTP_ALLOWED_HOSTS alone, from the environment or `.env` as Settings reads it, split on commas.

    The rule loader checks a literal `http.request` URL with it, where the rest of the settings may not be
    needed (or valid): the same allowlist the worker will send with, so `rules check` agrees with the run.
    """
    return _comma_list(_AllowedHostsOnly().http_allowed_hosts)


def _comma_list(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with `SettingsError` naming `FIELDRELAY_<NAME>` on bad input."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if not err["loc"]:  # a check across settings writes the variables' names itself
                lines.append(msg)
                continue
            name = ENV_PREFIX + str(err["loc"][0]).upper()
            lines.append(f"{name}: {msg}")
        raise SettingsError("\n".join(lines)) from None
