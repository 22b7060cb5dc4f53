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
    monkeypatch.setenv("FIELDRELAY_WEBHOOK_TOKENS", " one , two ,")
    monkeypatch.setenv("FIELDRELAY_SYNCHROTEAM_BASE_URL", "http://127.0.0.1:8782/")
    s = load_settings()
    assert [t.get_secret_value() for t in s.webhook_tokens] == ["one", "two"]
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
    ],
)
def test_invalid_settings_name_the_variable(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert message in str(err.value)


def test_secrets_are_not_in_reprs(monkeypatch):
    monkeypatch.setenv("FIELDRELAY_SYNCHROTEAM_API_KEY", "key-abcdef")
    monkeypatch.setenv("FIELDRELAY_WEBHOOK_TOKENS", "tok-abcdef")
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
