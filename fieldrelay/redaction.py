"""Removes configured secret values from anything on its way to logs, traces or Sentry."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr

from fieldrelay.settings import Settings

MASK = "[redacted]"
# Keys whose values are secret whatever they hold, in headers, query strings and bodies.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "cookie",
        "set-cookie",
        "password",
        "sha512password",
        "api_key",
        "apikey",
        "authtoken",
        "phpsessid",
        "token",
        "x-api-key",
        "dsn",
    }
)


class Redactor:
    """Replaces every known secret value, and the value of every secret-looking key.

    >>> Redactor(["s3cret"]).scrub({"url": "https://x/?password=s3cret", "password": "other"})
    {'url': 'https://x/?password=[redacted]', 'password': '[redacted]'}
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole; very short values
        # would mask ordinary text, and a secret that short is not worth pretending to hide.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                k: MASK if isinstance(k, str) and k.lower() in SECRET_KEYS and v else self.scrub(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return type(value)(self.scrub(v) for v in value)
        return value


def settings_secrets(settings: Settings) -> list[str]:
    import os

    # Values rules may read through env/!secret are treated as secrets wherever they surface.
    rule_values = [os.environ[name] for name in settings.rules_env if os.environ.get(name)]
    values: list[SecretStr | None] = [
        settings.servicetrade_password,
        settings.servicetrade_client_secret,  # OAuth2 (issue 15)
        settings.synchroteam_api_key,
        settings.synergist_password,
        settings.synergist_sha512password,
        settings.sentry_dsn,
        settings.console_token,
        *settings.webhook_tokens,
    ]
    return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()] + rule_values


def redactor_for(settings: Settings) -> Redactor:
    return Redactor(settings_secrets(settings))
