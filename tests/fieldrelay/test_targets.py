"""Targets are data: every row from the settings, one reset function, and admission that reads the row."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from fieldrelay.settings import Settings
from fieldrelay.targets import next_reset, session_overrun, target_limits


def test_each_target_has_a_row_with_its_documented_or_configured_limits():
    rows = target_limits(
        Settings(
            _env_file=None,
            synergist_rate_limit=30,
            servicetrade_rate_limit=0,
            synchroteam_domain="acme",
            synergist_user="ops",
        )
    )
    assert set(rows) == {"synchroteam", "synergist", "servicetrade", "http"}
    st = rows["synchroteam"]
    assert (st.rate, st.window, st.quota_period, st.rate_headers, st.credential) == (120, 60.0, 86400.0, True, "acme")
    assert (rows["synergist"].rate, rows["synergist"].credential, rows["synergist"].quota_period) == (30, "ops", None)
    assert rows["servicetrade"].rate == 0 and rows["http"].rate == 0
    assert {row.queue for row in rows.values()} == {f"actions.{name}" for name in rows}


def test_the_next_reset_is_utc_midnight_or_the_next_multiple_of_a_period():
    noon = calendar.timegm(datetime(2026, 11, 30, 12, 0, tzinfo=UTC).utctimetuple())
    assert next_reset(noon) == calendar.timegm(datetime(2026, 12, 1, tzinfo=UTC).utctimetuple())
    assert next_reset(noon - 0.5, period=60) == noon
    assert next_reset(noon, period=60) == noon + 60


def test_servicetrade_sessions_are_data_and_bound_a_worker():
    """Seed 002, "Authentication": a soft limit of 100 sessions per user; bearer tokens (oauth2) are not sessions."""
    session = target_limits(Settings(_env_file=None))
    assert session["servicetrade"].sessions == 100 and session["synchroteam"].sessions is None
    assert session_overrun(session, 100) is None
    assert "past the 100 it allows" in (session_overrun(session, 101) or "")
    oauth = target_limits(
        Settings(_env_file=None, servicetrade_auth="oauth2", servicetrade_client_id="c", servicetrade_client_secret="s")
    )
    assert oauth["servicetrade"].sessions is None and session_overrun(oauth, 256) is None
