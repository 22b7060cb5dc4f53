"""In-memory Synchroteam domain: customers, sites, equipment, jobs and activities with `/send` upserts."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

SEED_PATH = Path(__file__).parent / "data" / "synchroteam.json"
TYPES = ("customer", "site", "equipment", "job", "activity")
# Which fields `/send` matches on, in the order the docs list them.
UPSERT_KEYS = {
    "customer": ("id", "myId"),
    "site": ("id", "myId"),
    "equipment": ("id", "myId"),
    "job": ("id", "myId", "num"),
    "activity": ("id",),
}
JOB_STATUSES = (
    "created",
    "scheduled",
    "synchronized",
    "started",
    "paused",
    "completed",
    "validated",
    "cancelled",
)
JOB_DATE = "%d/%m/%Y %H:%M:%S"
FILTER_DATE = "%Y-%m-%d %H:%M:%S"
SHORT_DATE = "%Y-%m-%d %H:%M"
DATE_SHAPES = {
    JOB_DATE: "dd/MM/yyyy HH:mm:ss",
    FILTER_DATE: "yyyy-mm-dd HH:mm:ss",
    SHORT_DATE: "yyyy-mm-dd hh:mm",
}


def names(text: str) -> tuple[str, ...]:
    """Field lists written as one string, in the docs' order."""
    return tuple(text.split())


ADDRESS = names(
    "address addressStreet addressComplement addressZIP addressCity addressProvince addressCountry position "
    "customFieldValues"
)
FIELDS: dict[str, tuple[str, ...]] = {
    "customer": (
        *names("id myId name"),
        *ADDRESS,
        *names(
            "contactLastName contactFirstName contactPhone contactMobile contactEmail contactFax vatNumber "
            "publicLink tags"
        ),
    ),
    "site": (
        *names("id myId name"),
        *ADDRESS,
        # [INCONS] "The site object": the JSON sample has contactName, the field table contactFirstName and
        # contactLastName; all three are kept.
        *names(
            "contactName contactFirstName contactLastName contactPhone contactMobile contactEmail contactFax "
            "publicLink customer tags"
        ),
    ),
    "equipment": names("id myId name publicLink customer site customFieldValues tags"),
    "job": (
        *names(
            "id myId num description priority customer site equipment type reportTemplate technician "
            "otherTechnicians createdBy"
        ),
        *ADDRESS,
        *names(
            "contactFirstName contactLastName contactMobile contactPhone contactEmail scheduledStart "
            "scheduledEnd actualStart actualEnd duration status publicLink timeEntries parts report skills "
            "tags preferences validateBy"
        ),
    ),
    "activity": names("id activityType note dateStart dateEnd distance user team"),
}
READ_ONLY = {"id", "publicLink", "tags", "createdBy", "dateCreated", "dateModified"}
LIST_OMITS = {"report", "parts", "preferences", "otherTechnicians", "timeEntries"}


class Invalid(ValueError):
    """A request the API answers with 400 (or 404 when `status` says so) and the standard error body."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message, status)
        self.message, self.status = message, status


def parse_date(value: str, fmt: str, field: str) -> datetime:
    try:
        return datetime.strptime(value, fmt).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise Invalid(f"{field}: expected {DATE_SHAPES[fmt]}, got {value!r}") from None


class SynchroteamState:
    """Records keyed by id per type; hidden `_kind`, `_created`, `_modified`, `_deleted` keys stay inside.

    >>> state = SynchroteamState()
    >>> state.find("job", {"myId": "ref-job05014"})["num"]
    154872
    """

    def __init__(
        self, seed: dict[str, Any] | None = None, *, clock: Callable[[], float] = time.time, timezone: str = "UTC"
    ) -> None:
        self.clock = clock
        # Seed 000 marks only `changedSince` as UTC and activities as "Local time": the account's zone is
        # what every other date (dateCreated, dateModified, the schedule) is written in.
        self.zone = ZoneInfo(timezone)
        self._seed = seed if seed is not None else json.loads(SEED_PATH.read_text())
        self.records: dict[str, dict[Any, dict[str, Any]]] = {}
        self.reset()

    def reset(self) -> None:
        seed = copy.deepcopy(self._seed)
        self.users: list[dict[str, Any]] = seed.get("users", [])
        self.teams: list[dict[str, Any]] = seed.get("teams", [])
        self.job_types: list[dict[str, Any]] = seed.get("jobTypes", [])
        self.report_templates: list[dict[str, Any]] = seed.get("reportTemplates", [])
        self.activity_types: list[dict[str, Any]] = seed.get("activityTypes", [])
        self.custom_fields: dict[str, list[dict[str, Any]]] = seed.get("customFields", {})
        # Job id -> the technician's report blocks and photos (seed 000, "Retrieve a job report", "...photos").
        self.reports: dict[str, list[dict[str, Any]]] = seed.get("reports", {})
        self.photos: dict[str, list[dict[str, Any]]] = seed.get("photos", {})
        self.records = {t: {row["id"]: row for row in seed.get(t, [])} for t in TYPES}
        for kind, rows in self.records.items():
            for row in rows.values():
                row["_kind"] = kind
                if "publicLink" in FIELDS[kind]:
                    row.setdefault("publicLink", f"https://sandbox.synchroteam.com/{kind.title()}/Public/{row['id']}")
                row.setdefault("_created", self.clock())
                row.setdefault("_modified", row["_created"])

    # Lookups

    def active(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records[kind].values() if not r.get("_deleted")]

    def find(self, kind: str, keys: dict[str, Any], *, deleted: bool = False) -> dict[str, Any] | None:
        """The record matching the first key present in `keys` (id, then myId, then num)."""
        rows = [r for r in self.records[kind].values() if bool(r.get("_deleted")) == deleted]
        for key in (*UPSERT_KEYS[kind], "name", "email"):
            value = keys.get(key)
            if value in (None, ""):
                continue
            field = "contactEmail" if key == "email" else key
            return next((r for r in rows if str(r.get(field)) == str(value)), None)
        return None

    def user(self, ref: dict[str, Any] | None) -> dict[str, Any] | None:
        if not ref:
            return None
        found = next((u for u in self.users if u["id"] == ref.get("id") or u["login"] == ref.get("login")), None)
        if found is None:
            raise Invalid(f"user not found: {ref}")
        return found

    def reference(self, kind: str, ref: Any) -> dict[str, Any] | None:
        """Resolve `{id|myId}` to the stored `{"id": ...}` form, or raise when it points nowhere."""
        if ref is None:
            return None
        if not isinstance(ref, dict) or not (ref.get("id") or ref.get("myId")):
            raise Invalid(f"{kind}: id or myId required")
        found = self.find(kind, {k: ref.get(k) for k in ("id", "myId")})
        if found is None:
            raise Invalid(f"{kind} not found: {ref}")
        return {"id": found["id"]}

    # Writes

    def local(self, stamp: float, fmt: str = JOB_DATE) -> str:
        """A Unix time as the account's wall time."""
        return datetime.fromtimestamp(stamp, UTC).astimezone(self.zone).strftime(fmt)

    def touch(self, record: dict[str, Any]) -> None:
        record["_modified"] = self.clock()

    def new_id(self, kind: str) -> Any:
        if kind == "job":
            stamp = datetime.fromtimestamp(self.clock(), UTC)
            base = int(stamp.strftime("%y%m%d%H%M%S")) * 1000 + stamp.microsecond // 1000
            while f"265_{base}" in self.records["job"]:
                base += 1
            return f"265_{base}"
        return max((int(k) for k in self.records[kind]), default=1000) + 1

    def create(self, kind: str, values: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        record: dict[str, Any] = dict.fromkeys(FIELDS[kind])
        record.update(id=self.new_id(kind), _kind=kind, _created=now, _modified=now)
        if "tags" in record:
            record["tags"] = []
        if "customFieldValues" in record:
            record["customFieldValues"] = []
        if "publicLink" in record:
            record["publicLink"] = f"https://sandbox.synchroteam.com/{kind.title()}/Public/{uuid.uuid4()}"
        if kind == "job":
            nums = [r["num"] for r in self.records["job"].values() if isinstance(r.get("num"), int)]
            taken = values.get("num") in nums
            record.update(
                num=max(nums, default=1000) + 1 if taken or "num" not in values else values["num"],
                status="created",
                priority="medium",
                otherTechnicians=[],
                timeEntries=[],
                parts=[],
                skills=[],
                createdBy={"id": self.users[0]["id"]} if self.users else None,
            )
        record.update({k: v for k, v in values.items() if k not in READ_ONLY and k != "num"})
        self.records[kind][record["id"]] = record
        return record

    def update(self, record: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        record.update({k: v for k, v in values.items() if k not in READ_ONLY and k in FIELDS[record["_kind"]]})
        self.touch(record)
        return record

    def delete(self, kind: str, record: dict[str, Any]) -> None:
        record["_deleted"] = True
        self.touch(record)

    def undelete(self, kind: str, record: dict[str, Any]) -> None:
        record.pop("_deleted", None)
        self.touch(record)
