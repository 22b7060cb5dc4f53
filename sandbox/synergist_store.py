"""In-memory Synergist data set: activities, jobs, calendar bookings, pending timesheets and lookups."""

from __future__ import annotations

import copy
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

SEED_PATH = Path(__file__).parent / "data" / "synergist.json"
# Table name -> (key field, uuid field, timestamp field, version field); casing is the docs' own.
TABLES = {
    "activities": ("activityID", "activityuuid", "activityTimeStampModified", "activityRecordVersionNumber"),
    "jobs": ("jobNumber", "jobUuid", "jobTimeStampModified", "jobRecommendedVersionNumber"),
    "calendar": ("calDiaryInternal", "calUuid", "calTimeStampModified", "calRecordVersionNumber"),
    "tspending": ("tspEntryNo", "tspUuid", "tspTimeStampModified", "tspRecordVersionNumber"),
}


class SynergistError(Exception):
    """An API failure; Synergist answers every one with HTTP 404 and an error code in 404000-404999."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message


NO_CREDENTIALS = 404001
BAD_CREDENTIALS = 404002
ACCOUNT_DISABLED = 404003
NOT_RECOGNISED = 404004
# Only 404001-404004 are documented; these stay inside the documented 404000-404999 range.
BAD_COMPANY = 404010
BAD_INPUT = 404011
MISSING_FIELD = 404012
NOT_FOUND = 404013
VERSION_CONFLICT = 404014
UNKNOWN_VIEW = 404015
# Seed 001, "JSON Response": an error is `Success false` + Errormessage/Errorcode, and "In case of any error,
# the Synergist server will return an HTTP 404 error together with an XML structure". Which one a server sends
# is configurable: "xml" (404 + XML, the stated one), "json404" (404 + JSON) or "json200" (200 + success:false).
ERROR_FORMS = ("xml", "json404", "json200")


def sha512(password: str) -> str:
    return hashlib.sha512(password.encode()).hexdigest()


def new_uuid() -> str:
    return uuid.uuid4().hex.upper()


class SynergistState:
    """Tables keyed by their record key; `disabled` makes every login fail with 404003.

    >>> state = SynergistState()
    >>> state.get("activities", 6712)["activityRecordVersionNumber"]
    45
    """

    def __init__(self, seed: dict[str, Any] | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._seed = seed if seed is not None else json.loads(SEED_PATH.read_text())
        self.default_error_form = "xml"
        self.reset()

    def reset(self) -> None:
        self.disabled = False  # back to the seed means a working account too
        self.error_form = self.default_error_form
        seed = copy.deepcopy(self._seed)
        self.companies: list[dict[str, Any]] = seed.get("companies", [])
        self.users: list[dict[str, Any]] = seed.get("users", [])
        for user in self.users:
            user.setdefault("userUuid", new_uuid())
            user.setdefault("userTimestampModified", self.now())
            user.setdefault("userRecordVersionNumber", 1)
        self.clients: list[dict[str, Any]] = seed.get("clients", [])
        self.activitytypes: list[dict[str, Any]] = seed.get("activitytypes", [])
        self.job_templates: list[str] = seed.get("jobTemplates", [])
        self.time_summaries: list[dict[str, Any]] = seed.get("timeSummaries", [])
        self.job_statuses: dict[str, str] = seed.get("jobStatuses", {})
        self.tables: dict[str, dict[Any, dict[str, Any]]] = {}
        for table, (key, uuid_field, stamp, version) in TABLES.items():
            rows = self.tables[table] = {}
            for row in seed.get(table, []):
                row.setdefault(uuid_field, new_uuid())
                row.setdefault(stamp, int(self.clock()))
                row.setdefault(version, 0)
                rows[row[key]] = row
        self._issued: dict[str, int] = {}  # the highest key handed out per table, deleted rows included

    def now(self) -> int:
        return int(self.clock())

    def get(self, table: str, key: Any) -> dict[str, Any]:
        rows = self.tables[table]
        record = rows.get(key)
        if record is None and isinstance(key, str) and key.isdigit():
            record = rows.get(int(key))
        if record is None:
            # The doc gives no text for a missing record: a plain one, worded like no client's pattern.
            raise SynergistError(NOT_FOUND, f"{TABLES[table][0]} {key}: unavailable")
        return record

    def insert(self, table: str, key: Any, values: dict[str, Any]) -> dict[str, Any]:
        key_field, uuid_field, stamp, version = TABLES[table]
        record = {key_field: key, uuid_field: new_uuid(), stamp: self.now(), version: 1, **values}
        self.tables[table][key] = record
        return record

    def touch(self, table: str, record: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        _, _, stamp, version = TABLES[table]
        record.update(values)
        record[stamp] = self.now()
        record[version] = int(record.get(version, 0)) + 1
        return record

    def next_key(self, table: str) -> int:
        """A key never used before in `table`: a deleted record's id is not given to a new one (a
        linked id that now names another record would hide the deletion from whoever linked it)."""
        key = max([*(int(k) for k in self.tables[table]), self._issued.get(table, 1000)], default=1000) + 1
        self._issued[table] = key
        return key

    def client(self, code: str) -> dict[str, Any]:
        found = next((c for c in self.clients if c["clientCode"] == code), None)
        if found is None:
            raise SynergistError(NOT_FOUND, f"client {code}: unavailable")
        return found

    def user_by_login(self, login: str) -> dict[str, Any] | None:
        return next((u for u in self.users if u["userLogin"] == login), None)
