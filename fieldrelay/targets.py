"""The systems actions write to, as data: queue, rate limit, quota and what each API documents about them.

Admission (`workers.admission`), the gate (`workers.gate`), the console and the metrics read this
table; none of them names a target in an `if`. A new rate-limited target is one more row.
"""

from __future__ import annotations

from dataclasses import dataclass

from fieldrelay.queues import ACTION_QUEUES
from fieldrelay.settings import Settings

DAY = 86400.0
SERVICETRADE_SESSIONS = 100  # seed 002, "Authentication": the soft limit per user (the hard one is 200)


@dataclass(frozen=True)
class TargetLimits:
    """How fast one target may be called, by all workers together, and what it says about it.

    `rate` requests per `window` seconds (0: not paced). `quota_period`: a request quota resets
    at every multiple of this many seconds since the epoch (UTC midnight for a day), or None.
    `rate_headers`: the API reports its budget on every answer, so the gate learns from them.
    `credential` keys the shared limiter: budgets are per account, not per deployment.
    `sessions`: how many sessions one credential may hold open, or None; each worker process holds one.
    """

    name: str
    queue: str
    rate: int = 0
    window: float = 60.0
    quota_period: float | None = None
    rate_headers: bool = False
    credential: str = ""
    sessions: int | None = None


def target_limits(settings: Settings) -> dict[str, TargetLimits]:
    """Every target's row, with the limits the settings give (the documented ones by default)."""
    rows = [
        # 000 (Synchroteam API v3), "Rate Limits and Quotas": "throttled at a maximum rate of 120
        # requests every minute", "Each API key has a daily request quota" whose remaining count
        # "resets at UTC midnight", and both are in the headers of every answer.
        TargetLimits(
            "synchroteam",
            ACTION_QUEUES["synchroteam"],
            settings.synchroteam_rate_limit,
            settings.synchroteam_rate_window,
            settings.synchroteam_quota_period,
            rate_headers=True,
            credential=settings.synchroteam_domain,
        ),
        # 001/003 (Synergist v3.2, v3.0) document no limit. Synergist runs on the customer's own
        # server, so the default stays gentle; see FIELDRELAY_SYNERGIST_RATE_LIMIT.
        TargetLimits(
            "synergist",
            ACTION_QUEUES["synergist"],
            settings.synergist_rate_limit,
            settings.synergist_rate_window,
            credential=settings.synergist_user,
        ),
        # 002 (ServiceTrade), "Authentication": a soft limit of 100 open sessions per user and a
        # hard one of 200, but no request rate. Each worker process keeps one session (OAuth2 bearer
        # tokens are not sessions); the rate is unpaced unless FIELDRELAY_SERVICETRADE_RATE_LIMIT says
        # otherwise.
        TargetLimits(
            "servicetrade",
            ACTION_QUEUES["servicetrade"],
            settings.servicetrade_rate_limit,
            settings.servicetrade_rate_window,
            credential=settings.servicetrade_username,
            sessions=SERVICETRADE_SESSIONS if settings.servicetrade_auth == "session" else None,
        ),
        # Any HTTP endpoint a rule names: nothing is known about it.
        TargetLimits("http", ACTION_QUEUES["http"]),
    ]
    return {row.name: row for row in rows}


def next_reset(now: float, period: float = DAY) -> float:
    """The next quota reset after `now`: the next multiple of `period` since the epoch (UTC midnight)."""
    return (now // period + 1) * period


def session_overrun(targets: dict[str, TargetLimits], processes: int) -> str | None:
    """Why a worker of `processes` processes would hold more sessions than a target allows, or None."""
    for row in targets.values():
        if row.sessions is not None and processes > row.sessions:
            return (
                f"{processes} worker processes would hold {processes} {row.name} sessions for one user, past the "
                f"{row.sessions} it allows; run fewer (--concurrency, FIELDRELAY_WORKER_CONCURRENCY)"
            )
    return None
