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


def synchroteam_datetime(value: Any) -> str:
    """Synchroteam's schedule and filter format, `yyyy-mm-dd HH:mm:ss`."""
    return _as_datetime(value).strftime("%Y-%m-%d %H:%M:%S")


def synchroteam_date(value: str) -> datetime:
    """Parse Synchroteam's record dates (`19/07/2016 14:43:00`); the zone is undocumented, so UTC."""
    return datetime.strptime(value.strip(), "%d/%m/%Y %H:%M:%S").replace(tzinfo=UTC)


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
    "synchroteam_date": synchroteam_date,
    "synergist_date": synergist_date,
    "tz": tz,
}
