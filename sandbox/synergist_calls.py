"""A parsed Synergist request and the helpers every area shares: mandatory fields and key filters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.synergist_store import BAD_INPUT, MISSING_FIELD, UNKNOWN_VIEW, SynergistError

# Seed 001, "Table of views": a view is a saved query; `views.json` lists them. The doc's sample names one,
# -1703 "My open activities"; its examples also pass -1700 (activities), -1303 (jobs) and -1307 (phases)
# without saying what they select, so the sandbox lets those select every record of their area.
VIEWS: dict[str, dict[str, str]] = {
    "activity": {"-1703": "My open activities", "-1700": "Activities (doc example)"},
    "job": {"-1303": "Jobs (doc example)"},
    "phase": {"-1307": "Phases (doc example)"},
}


@dataclass
class Call:
    """One parsed request: lower-cased parameters, the caller and the `input` data items."""

    area: str
    action: str
    params: dict[str, str]
    user: dict[str, Any]
    company: str
    items: list[dict[str, Any]] = field(default_factory=list)
    password: str = ""

    def param(self, name: str) -> str | None:
        return self.params.get(name.lower())


@dataclass
class Result:
    data: list[dict[str, Any]]
    paged: bool = False
    message: str = ""


def need(item: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if item.get(n) in (None, "")]
    if missing:
        raise SynergistError(MISSING_FIELD, f"mandatory field(s) missing: {', '.join(missing)}")


def _timestamp(raw: str, name: str) -> int:
    """`Timestampfrom`/`Timestampto` formats are not documented: Unix seconds or ISO dates are taken."""
    if raw.isdigit():
        return int(raw)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return int(datetime.strptime(raw, fmt).replace(tzinfo=UTC).timestamp())
        except ValueError:
            continue
    raise SynergistError(BAD_INPUT, f"{name}: not a Unix timestamp or YYYY-MM-DD date: {raw!r}")


def key_filter(call: Call, rows: list[dict[str, Any]], prefix: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    """Apply a `view` and the documented key-field filters (`Job=`, `Client=`, `Uuid=`, `Timestampfrom=`...)."""
    stamp = f"{prefix}TimeStampModified"
    if (view := call.param("view")) is not None:
        rows = apply_view(call, rows, prefix, view)
    for param, fieldname in {
        **keys,
        "uuid": f"{prefix}uuid" if prefix == "activity" else f"{prefix}Uuid",
    }.items():
        wanted = call.param(param)
        if wanted is not None:
            rows = [r for r in rows if str(r.get(fieldname)) == wanted]
    if (low := call.param("Timestampfrom")) is not None:
        rows = [r for r in rows if r.get(stamp, 0) >= _timestamp(low, "Timestampfrom")]
    if (high := call.param("Timestampto")) is not None:
        rows = [r for r in rows if r.get(stamp, 0) <= _timestamp(high, "Timestampto")]
    if (search := call.param("Search")) is not None:
        rows = [r for r in rows if search.lower() in " ".join(str(v) for v in r.values()).lower()]
    return rows


def apply_view(call: Call, rows: list[dict[str, Any]], prefix: str, view: str) -> list[dict[str, Any]]:
    """A known saved query, or the documented error for any other id (an error code in 404000-404999)."""
    known = VIEWS.get(prefix, {})
    if view not in known:
        raise SynergistError(UNKNOWN_VIEW, f"view {view}: no saved query with this id for {prefix} records")
    if view == "-1703":  # "My open activities": the caller's, not completed
        owner = call.user.get("userUserId")
        return [r for r in rows if r.get("activityOwnerID") == owner and not r.get("activityCompleted")]
    return rows
