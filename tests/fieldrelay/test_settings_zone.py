"""The settings issue 15 adds: the Synchroteam account's zone and ServiceTrade's OAuth2 login."""

from __future__ import annotations

import pytest

from fieldrelay.redaction import settings_secrets
from fieldrelay.settings import SettingsError, load_settings
from fieldrelay_cli.main import main


def test_a_bad_synchroteam_zone_names_the_variable_and_the_value() -> None:
    with pytest.raises(SettingsError, match=r"FIELDRELAY_SYNCHROTEAM_TIMEZONE: not an IANA time zone name .*'CEST'"):
        load_settings(synchroteam_timezone="CEST")
    assert load_settings(synchroteam_timezone="America/New_York").synchroteam_timezone == "America/New_York"


def test_servicetrade_auth_is_session_or_oauth2_and_the_client_secret_is_masked() -> None:
    with pytest.raises(SettingsError, match="FIELDRELAY_SERVICETRADE_AUTH"):
        load_settings(servicetrade_auth="cookie")
    with pytest.raises(SettingsError, match="FIELDRELAY_SERVICETRADE_OAUTH_GRANT"):
        load_settings(servicetrade_oauth_grant="implicit")
    settings = load_settings(servicetrade_auth="oauth2", servicetrade_client_secret="shh-client-secret")
    assert "shh-client-secret" in settings_secrets(settings)
    assert "shh-client-secret" not in repr(settings)


def test_the_sandbox_command_refuses_an_unknown_zone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--synchroteam-timezone", "Mars/Olympus"]) == 2
    assert "not an IANA time zone name" in capsys.readouterr().err
