"""Alerts: the one way a failure reaches a person, as a Sentry event with tags and one error log line.

The `fieldrelay.failures` logger is kept out of Sentry's logging integration (see
fieldrelay.observability), so each failure alerts once: here, explicitly, with its tags.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import sentry_sdk

failures = logging.getLogger("fieldrelay.failures")


def alert(message: str, tags: Mapping[str, str]) -> None:
    """A failure without an exception behind it (a quota used up, a broken rules reload)."""
    failures.error(message, extra=dict(tags))
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        sentry_sdk.capture_message(message, level="error")


def alert_exception(exc: BaseException, message: str, tags: Mapping[str, str], fingerprint: Sequence[str]) -> None:
    """A failure for good: one Sentry event grouped by `fingerprint` (rule and target, say), one log line."""
    failures.error(message, extra=dict(tags))
    with sentry_sdk.new_scope() as scope:
        for key, value in tags.items():
            scope.set_tag(key, value)
        scope.fingerprint = list(fingerprint)
        sentry_sdk.capture_exception(exc)
