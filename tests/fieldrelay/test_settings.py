"""Settings: every variable documented, bad values named, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldrelay.settings import ENV_PREFIX, Settings, SettingsError, load_settings

ROOT = Path(__file__).parents[2]


def test_every_setting_is_in_the_readme_and_env_example():
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        variable = ENV_PREFIX + name.upper()
        assert f"`{variable}`" in readme, f"{variable} is not documented in README.md"
        if name not in ("data_dir",):
            assert variable in example, f"{variable} is missing from .env.example"


def test_env_variables_are_read(monkeypatch):
    monkeypatch.setenv("FIELDRELAY_WEBHOOK_TOKENS", " one-0123456789abcdef , two-0123456789abcdef ,")
    monkeypatch.setenv("FIELDRELAY_SYNCHROTEAM_BASE_URL", "http://127.0.0.1:8782/")
    s = load_settings()
    assert [t.get_secret_value() for t in s.webhook_tokens] == ["one-0123456789abcdef", "two-0123456789abcdef"]
    assert s.synchroteam_base_url == "http://127.0.0.1:8782"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FIELDRELAY_REDIS_URL", "localhost", "FIELDRELAY_REDIS_URL: not a redis:// URL: 'localhost'"),
        (
            "FIELDRELAY_SYNCHROTEAM_BASE_URL",
            "ws.synchroteam.com",
            "FIELDRELAY_SYNCHROTEAM_BASE_URL: not an http(s):// URL: 'ws.synchroteam.com'",
        ),
        ("FIELDRELAY_HTTP_TIMEOUT", "0", "FIELDRELAY_HTTP_TIMEOUT: Input should be greater than 0"),
        ("FIELDRELAY_WORKER_CONCURRENCY", "many", "FIELDRELAY_WORKER_CONCURRENCY: Input should be a valid integer"),
        # Issue 12: every value below used to be accepted without a word.
        ("FIELDRELAY_HTTP_TIMEOUT", "inf", "FIELDRELAY_HTTP_TIMEOUT: Input should be a finite number"),
        ("FIELDRELAY_HTTP_TIMEOUT", "nan", "FIELDRELAY_HTTP_TIMEOUT: Input should be a finite number"),
        ("FIELDRELAY_HTTP_TIMEOUT", "100000", "FIELDRELAY_HTTP_TIMEOUT: Input should be less than or equal to 600"),
        ("FIELDRELAY_RETRY_MAX_BACKOFF", "1e308", "FIELDRELAY_RETRY_MAX_BACKOFF: Input should be less than or equal"),
        (
            "FIELDRELAY_ACTION_MAX_RETRIES",
            "100000000000000000000000",
            "FIELDRELAY_ACTION_MAX_RETRIES: Input should be less than or equal to 100",
        ),
        ("FIELDRELAY_POLL_INTERVAL", "-inf", "FIELDRELAY_POLL_INTERVAL: Input should be a finite number"),
        (
            "FIELDRELAY_RULES_ENV",
            "GOOD,BAD NAME",
            "FIELDRELAY_RULES_ENV: 'BAD NAME' is not an environment variable name",
        ),
        ("FIELDRELAY_RULES_ENV", "1ST", "FIELDRELAY_RULES_ENV: '1ST' is not an environment variable name"),
        ("FIELDRELAY_SYNERGIST_BASE_URL", "http://", "FIELDRELAY_SYNERGIST_BASE_URL: no host in the URL: 'http://'"),
        ("FIELDRELAY_SERVICETRADE_BASE_URL", "https:///api", "FIELDRELAY_SERVICETRADE_BASE_URL: no host in the URL"),
        ("FIELDRELAY_SYNCHROTEAM_BASE_URL", "http://h:port", "FIELDRELAY_SYNCHROTEAM_BASE_URL: not a URL"),
        ("FIELDRELAY_POLL_SOURCES", "bogus", "FIELDRELAY_POLL_SOURCES: 'bogus' is not a poll source"),
        ("FIELDRELAY_POLL_SOURCES", "none,servicetrade", "FIELDRELAY_POLL_SOURCES: 'none' is not a poll source"),
        ("FIELDRELAY_POLL_CONFIG", "/nonexistent/pollers.yaml", "FIELDRELAY_POLL_CONFIG: no such file"),
        ("FIELDRELAY_HTTP_ALLOWED_HOSTS", "https://x.test/", "FIELDRELAY_HTTP_ALLOWED_HOSTS: 'https://x.test/' is not"),
        ("FIELDRELAY_HTTP_ALLOWED_HOSTS", "x.test:99999", "FIELDRELAY_HTTP_ALLOWED_HOSTS: 'x.test:99999': the port"),
        ("FIELDRELAY_HTTP_MAX_REQUEST_BODY", "10", "FIELDRELAY_HTTP_MAX_REQUEST_BODY: Input should be greater"),
        (
            "FIELDRELAY_WEBHOOK_TOKENS",
            "long-enough-token-1,a",
            "FIELDRELAY_WEBHOOK_TOKENS: token 2 of 2 is 1 characters; at least 16 are required",
        ),
        ("FIELDRELAY_CONSOLE_TOKEN", "console", "FIELDRELAY_CONSOLE_TOKEN: 7 characters; at least 16 are required"),
        ("FIELDRELAY_CLOCK_SKEW", "99999999999", "FIELDRELAY_CLOCK_SKEW: Input should be less than or equal to 86400"),
        ("FIELDRELAY_ENTITY_STATE_TTL", str(2**63), "FIELDRELAY_ENTITY_STATE_TTL: Input should be less than or equal"),
        ("FIELDRELAY_ENTITY_STATE_MAX_BYTES", str(2**40), "FIELDRELAY_ENTITY_STATE_MAX_BYTES: Input should be less"),
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert message in str(err.value)


def test_secrets_are_not_in_reprs(monkeypatch):
    monkeypatch.setenv("FIELDRELAY_SYNCHROTEAM_API_KEY", "key-abcdef")
    monkeypatch.setenv("FIELDRELAY_WEBHOOK_TOKENS", "tok-abcdef-0123456789")
    s = load_settings()
    assert "key-abcdef" not in repr(s) and "tok-abcdef" not in repr(s) and "tok-abcdef" not in str(s)


def test_empty_variables_fall_back_to_defaults(monkeypatch):
    # docker-compose.yml passes every variable as ${VAR:-}, i.e. "" when unset.
    for name in Settings.model_fields:
        monkeypatch.setenv(ENV_PREFIX + name.upper(), "")
    s = load_settings()
    assert s.http_timeout == 10.0
    assert s.servicetrade_base_url == "https://api.servicetrade.com/api"
    assert s.sentry_environment == "production"
    assert s.redis_url is None and s.sentry_dsn is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FIELDRELAY_SENTRY_DSN", "not-a-dsn-but-a-secret-value"),
        ("FIELDRELAY_SENTRY_DSN", "https://sentry.example/1"),  # no key
        ("FIELDRELAY_WEBHOOK_TOKENS", "short-secret"),
        ("FIELDRELAY_CONSOLE_TOKEN", "short-secret"),
        ("FIELDRELAY_SYNERGIST_BASE_URL", "ftp://user:short-secret@host/"),
    ],
)
def test_a_refused_secret_is_named_but_never_printed(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(variable + ":")
    secret = value.rpartition("@")[0].rpartition(":")[2] if "@" in value else value
    assert secret not in str(err.value) and secret not in repr(err.value)


def test_a_sentry_dsn_is_parsed(monkeypatch):
    monkeypatch.setenv("FIELDRELAY_SENTRY_DSN", "https://public@sentry.example/1")
    assert load_settings().sentry_dsn is not None


def test_short_tokens_are_accepted_only_in_dev_mode(monkeypatch):
    monkeypatch.setenv("FIELDRELAY_WEBHOOK_TOKENS", "demo-token")
    monkeypatch.setenv("FIELDRELAY_CONSOLE_TOKEN", "demo-console-token")
    with pytest.raises(SettingsError):
        load_settings()
    monkeypatch.setenv("FIELDRELAY_DEV_MODE", "1")
    s = load_settings()
    assert s.dev_mode and s.webhook_tokens[0].get_secret_value() == "demo-token"


def test_allowed_hosts_are_parsed(monkeypatch):
    monkeypatch.setenv(
        "FIELDRELAY_HTTP_ALLOWED_HOSTS", "hooks.example.com, *.chat.example:8443,127.0.0.1:9000,[::1]:80"
    )
    assert load_settings().http_allowed_hosts == [
        "hooks.example.com",
        "*.chat.example:8443",
        "127.0.0.1:9000",
        "[::1]:80",
    ]
