"""Date helpers for rule expressions and templates, in the formats the three APIs use."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo


def fromtimestamp(value: int | float | str) -> datetime:
    """ServiceTrade's Unix seconds -> aware UTC datetime: `{{ entity.dueBy | fromtimestamp }}`."""
    return datetime.fromtimestamp(float(value), UTC)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return fromtimestamp(value)
    raise TypeError(f"expected a datetime or Unix seconds, got {value!r}")


_SYNCHROTEAM_ZONE: list[ZoneInfo] = [ZoneInfo("UTC")]


def use_synchroteam_zone(name: str) -> None:
    """Set the Synchroteam account's zone (`FIELDRELAY_SYNCHROTEAM_TIMEZONE`); each process does it at start."""
    _SYNCHROTEAM_ZONE[0] = ZoneInfo(name)


def synchroteam_zone() -> ZoneInfo:
    return _SYNCHROTEAM_ZONE[0]


def _synchroteam_local(value: Any) -> datetime:
    # Seed 000 marks only `changedSince` as UTC (and activities as "Local time"): every other date is a
    # wall time of the account. Aware datetimes and Unix seconds move into its zone; naive ones are kept.
    moment = _as_datetime(value)
    return moment.astimezone(synchroteam_zone()) if moment.tzinfo is not None else moment


def synchroteam_datetime(value: Any) -> str:
    """Synchroteam's schedule format, `yyyy-mm-dd HH:mm:ss`, in the account's zone."""
    return _synchroteam_local(value).strftime("%Y-%m-%d %H:%M:%S")


def synchroteam_job_datetime(value: Any) -> str:
    """The job object's `dd/MM/yyyy HH:mm:ss` (`scheduledStart` in a job upsert), in the account's zone."""
    return _synchroteam_local(value).strftime("%d/%m/%Y %H:%M:%S")


def synchroteam_short_datetime(value: Any) -> str:
    """`yyyy-mm-dd hh:mm` (complete, activities), in the account's zone."""
    return _synchroteam_local(value).strftime("%Y-%m-%d %H:%M")


def synchroteam_date(value: str) -> datetime:
    """Parse Synchroteam's record dates (`19/07/2016 14:43:00`, or `2019-11-06 13:13[:00]`) as a wall time in
    the account's zone (`FIELDRELAY_SYNCHROTEAM_TIMEZONE`); the result is aware."""
    text = value.strip()
    for fmt in ("%d/%m/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=synchroteam_zone())
        except ValueError:
            continue
    raise ValueError(f"not a Synchroteam date (dd/MM/yyyy HH:mm:ss or yyyy-mm-dd hh:mm): {value!r}")


def hours_between(start: Any, end: Any) -> float:
    """Hours from `start` to `end` (datetimes or Unix seconds), rounded to the quarter hour for timesheets."""
    seconds = (_as_datetime(end) - _as_datetime(start)).total_seconds()
    return round(max(0.0, seconds) / 900) / 4


def synergist_date(value: Any) -> Any:
    """A date or datetime -> `YYYY-MM-DD`; a `YYYY-MM-DD` string -> date (`0000-00-00` -> None)."""
    if isinstance(value, str):
        if value.startswith("0000-00-00"):
            return None
        return date.fromisoformat(value[:10])
    if isinstance(value, datetime | date):
        return value.strftime("%Y-%m-%d")
    return _as_datetime(value).strftime("%Y-%m-%d")


def tz(value: Any, name: str) -> datetime:
    """Convert to a named zone: `{{ tz(now, 'America/New_York') }}`; naive values are taken as UTC."""
    moment = _as_datetime(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(name))


HELPERS = {
    "fromtimestamp": fromtimestamp,
    "synchroteam_datetime": synchroteam_datetime,
    "synchroteam_job_datetime": synchroteam_job_datetime,
    "synchroteam_short_datetime": synchroteam_short_datetime,
    "synchroteam_date": synchroteam_date,
    "hours_between": hours_between,
    "synergist_date": synergist_date,
    "tz": tz,
}
