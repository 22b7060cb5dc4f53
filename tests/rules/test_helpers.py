"""Date helpers in the three APIs' formats."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from rules.helpers import fromtimestamp, synchroteam_date, synchroteam_datetime, synergist_date, tz


def test_fromtimestamp_is_aware_utc():
    assert fromtimestamp(1401833052) == datetime(2014, 6, 3, 22, 4, 12, tzinfo=UTC)
    assert fromtimestamp("1401833057") == datetime(2014, 6, 3, 22, 4, 17, tzinfo=UTC)


def test_synchroteam_formats():
    moment = datetime(2016, 7, 19, 14, 43, tzinfo=UTC)
    assert synchroteam_datetime(moment) == "2016-07-19 14:43:00"
    assert synchroteam_date("19/07/2016 14:43:00") == moment
    assert synchroteam_date("2016-07-19 14:43:00") == moment  # the schedule format reads too
    with pytest.raises(ValueError):
        synchroteam_date("19.07.2016 14:43")


def test_synchroteam_helpers_use_the_account_zone():
    """Seed 000: only `changedSince` is marked UTC ("List customers"), activities "Local time"; schedule
    dates and `dateModified` carry no zone, so they are the account's wall time. Old: always UTC."""
    from rules.helpers import synchroteam_job_datetime, synchroteam_short_datetime, use_synchroteam_zone

    moment = datetime(2026, 1, 15, 14, 0, tzinfo=UTC)
    try:
        use_synchroteam_zone("America/New_York")
        assert synchroteam_datetime(moment) == "2026-01-15 09:00:00"
        assert synchroteam_job_datetime(moment) == "15/01/2026 09:00:00"
        assert synchroteam_short_datetime(moment.timestamp()) == "2026-01-15 09:00"
        assert synchroteam_date("15/01/2026 09:00:00") == moment
    finally:
        use_synchroteam_zone("UTC")


def test_synergist_dates_both_ways():
    assert synergist_date("2017-04-01") == date(2017, 4, 1)
    assert synergist_date("0000-00-00") is None
    assert synergist_date(date(2017, 4, 1)) == "2017-04-01"
    assert synergist_date(1401833052) == "2014-06-03"


def test_tz_converts_and_treats_naive_as_utc():
    assert tz(datetime(2024, 1, 1, 12), "America/New_York").hour == 7
    assert tz(1401833052, "Europe/Paris").isoformat() == "2014-06-04T00:04:12+02:00"
