"""Sentry set-up shared by the receiver and the workers, with secrets scrubbed before sending."""

from __future__ import annotations

from typing import Any, Literal

import sentry_sdk
from sentry_sdk.integrations.celery import CeleryIntegration
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.integrations.starlette import StarletteIntegration

from fieldrelay import __version__
from fieldrelay.redaction import redactor_for
from fieldrelay.settings import Settings


def init_sentry(settings: Settings, component: Literal["receiver", "worker", "beat"]) -> bool:
    """Initialise Sentry when a DSN is configured; returns whether it did."""
    if settings.sentry_dsn is None or not settings.sentry_dsn.get_secret_value():
        return False
    redactor = redactor_for(settings)

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        scrubbed: dict[str, Any] = redactor.scrub(event)
        return scrubbed

    sentry_sdk.init(
        dsn=settings.sentry_dsn.get_secret_value(),
        environment=settings.sentry_environment,
        release=f"fieldrelay@{__version__}",
        integrations=[StarletteIntegration(), CeleryIntegration(monitor_beat_tasks=True)],
        send_default_pii=False,
        before_send=before_send,  # type: ignore[arg-type]
        before_send_transaction=before_send,  # type: ignore[arg-type]
        traces_sample_rate=0.0,
    )
    sentry_sdk.set_tag("component", component)
    # Explicitly captured with tags by workers.tasks.fail_for_good; the log line would be a second alert.
    ignore_logger("fieldrelay.failures")
    return True
