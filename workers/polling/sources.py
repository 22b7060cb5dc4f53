"""Source adapters: each lists one entity type through its connector and yields `Record`s.

- ServiceTrade: `updatedAfter`..`updatedBefore` windows (inclusive), checkpointed on `updated`; the
  connector reads jobs as `status=all` then `status=canceled`, appointments in every status and
  locations with the maximum `limit`, and splits a window whose answer looks capped at `limit`.
  Locations add an `isVendor=true` pass (the API defaults to customers). Clock events have no
  `updated`: `startTime`..`endTime` on `eventTime`.
- Synchroteam: `changedSince` (UTC) for job, customer, site, equipment; jobs sorted by
  `datemodified` and checkpointed on `dateModified`, read in the account's zone
  (FIELDRELAY_SYNCHROTEAM_TIMEZONE), with a `show=deleted` pass. Activities have no modification
  filter: the date window (local time) is scanned and diffed.
- Synergist: `Timestampfrom` as Unix seconds (the format is undocumented) on
  `<prefix>TimeStampModified`, with a periodic full scan as the fallback (see `runner.py`); no
  `view` unless the poller names one.

Every source reports `progress` after each page, so a run cut short by a rate limit resumes there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from workers.connectors.errors import NotFound
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synchroteam import SynchroteamClient, parse_job_date
from workers.connectors.synchroteam_records import SynchroteamRecord
from workers.connectors.synergist import SynergistClient
from workers.connectors.synergist_records import SynergistRecord
from workers.polling.clients import PollClients
from workers.polling.config import PollerSpec
from workers.polling.record import Record, Source

# Extra list passes where one query misses records: locations default to `isCustomer=true`.
SERVICETRADE_PASSES: dict[str, tuple[dict[str, Any], ...]] = {"location": ({}, {"isVendor": "true"})}
SYNERGIST_KEYS = {"activity": ("activityID", "activityTimeStampModified"), "job": ("jobNumber", "jobTimeStampModified")}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class ServiceTradeSource:
    """`ServiceTradeSource(client, spec).fetch(since, full=False)`: records updated at or after `since`."""

    system, full_only, reconcile, verify_filter = "servicetrade", False, True, False

    def __init__(self, client: ServiceTradeClient, spec: PollerSpec) -> None:
        self.client, self.entity, self.filters = client, spec.entity, dict(spec.options.get("filters") or {})
        self.progress: dict[str, Any] | None = None
        self._now: int | None = None

    def clock(self) -> int:
        # The server's clock, not ours: the first window and the webhook grace are then skew-free.
        server = _int(self.client.heartbeat().get("serverTime"))
        self._now = server if server is not None else int(time.time())
        return self._now

    def _queries(self) -> list[dict[str, Any]]:
        return [
            {**self.filters, **extra, **query}
            for extra in SERVICETRADE_PASSES.get(self.entity, ({},))
            for query in self.client.passes(self.entity, {**self.filters, **extra})
        ]

    def fetch(self, since: int, full: bool, mark: Mapping[str, Any] | None = None) -> Iterator[Record]:
        before = self._now if self._now is not None else self.clock()
        start = int((mark or {}).get("pass", 0))
        for n, query in enumerate(self._queries()):
            if n < start:
                continue
            window = (mark or {}).get("window") if n == start else None

            def at(page_mark: dict[str, Any], n: int = n) -> None:
                self.progress = {"pass": n, "window": page_mark}

            rows = self.client.iter_window(self.entity, 0 if full else since, before, mark=window, on_page=at, **query)
            for row in rows:
                yield Record(row["id"], row, _int(row.get("updated")), _int(row.get("created")), uri=row.get("uri"))
            self.progress = {"pass": n + 1, "window": None}

    def recheck(self, record_id: int | str) -> Record | None:
        try:
            row = self.client.get_entity(self.entity, record_id)
        except NotFound:
            return None
        return Record(row["id"], row, _int(row.get("updated")), _int(row.get("created")), uri=row.get("uri"))

    def wait_until(self) -> float | None:
        return None

    def budget(self) -> dict[str, int | None]:
        return {}  # ServiceTrade documents no rate limit


class ServiceTradeClockSource(ServiceTradeSource):
    """Clock events: seed 002, "Clockin/Clockout": no `updated` field or filter, only `eventTime`, and
    `GET /clock` needs a filter. The window is `startTime`..`endTime` on `eventTime`; webhooks for clock
    events carry no time to reconcile against, so every change the snapshots show is emitted."""

    reconcile = False

    def __init__(self, client: ServiceTradeClient, spec: PollerSpec) -> None:
        super().__init__(client, spec)
        self.days_back = int(spec.options.get("days_back", 30))

    def fetch(self, since: int, full: bool, mark: Mapping[str, Any] | None = None) -> Iterator[Record]:
        before = self._now if self._now is not None else self.clock()
        start = before - self.days_back * 86400 if full else since
        for row in self.client.clock_events(startTime=start, endTime=before, **self.filters):
            when = _int(row.get("eventTime"))
            yield Record(row["id"], row, when, when, uri=row.get("uri"))
        self.progress = None


def _synchroteam_time(value: Any, zone: ZoneInfo) -> int | None:
    # Seed 000 gives `dateModified` no zone (only changedSince is UTC): it is the account's wall time.
    try:
        parsed = parse_job_date(value, zone)
    except (TypeError, ValueError):
        return None
    return None if parsed is None else int(parsed.timestamp())


class SynchroteamSource:
    """`SynchroteamSource(client, spec).fetch(since, full=False)`: changed records, then deleted jobs."""

    system, reconcile, verify_filter = "synchroteam", False, False

    def __init__(self, client: SynchroteamClient, spec: PollerSpec) -> None:
        self.client, self.entity, self.options = client, spec.entity, spec.options
        self.full_only = spec.entity == "activity"
        self.reserve = float(spec.options.get("reserve", 0.1))  # share of each rate window left to the actions
        self.progress: dict[str, Any] | None = None

    def clock(self) -> int:
        return int(time.time())

    def _record(self, row: SynchroteamRecord, deleted: bool = False) -> Record:
        return Record(
            row["id"],
            row,
            _synchroteam_time(row.get("dateModified"), self.client.zone),
            _synchroteam_time(row.get("dateCreated"), self.client.zone),
            deleted=deleted,
        )

    def _passes(self, since: int, full: bool) -> list[tuple[dict[str, Any], bool]]:
        size = int(self.options.get("page_size", 100))
        if self.entity == "activity":
            # Seed 000, "The activity object": dateStart/dateEnd are "Local time", so is the window.
            today = datetime.now(UTC).astimezone(self.client.zone)
            start = today - timedelta(days=int(self.options.get("days_back", 30)))
            end = today + timedelta(days=int(self.options.get("days_ahead", 90)))
            window = {"startDate": start.strftime("%Y-%m-%d 00:00"), "endDate": end.strftime("%Y-%m-%d 23:59")}
            return [({"page_size": size, **window}, False)]
        changed = None if full else datetime.fromtimestamp(since, UTC)
        order = {"sort": "datemodified", "sortOrder": "ascending"} if self.entity in ("job", "customer") else {}
        passes = [({"changed_since": changed, "page_size": size, **order}, False)]
        if self.options.get("show_deleted"):
            passes.append(({"changed_since": changed, "page_size": size, "show": "deleted", **order}, True))
        return passes

    def fetch(self, since: int, full: bool, mark: Mapping[str, Any] | None = None) -> Iterator[Record]:
        first = int((mark or {}).get("pass", 0))
        for n, (query, deleted) in enumerate(self._passes(since, full)):
            if n < first:
                continue
            # Resume on the last complete page: rows that moved up a page meanwhile are read again.
            page = int((mark or {}).get("page", 1)) if n == first else 1

            def at(done: int, n: int = n) -> None:
                self.progress = {"pass": n, "page": done}

            for row in self.client.iter_list(self.entity, start_page=page, on_page=at, **query):
                yield self._record(row, deleted=deleted)
            self.progress = {"pass": n + 1, "page": 1}

    def recheck(self, record_id: int | str) -> Record | None:
        try:
            return self._record(self.client.details(self.entity, id=record_id))
        except NotFound:
            return None

    def budget(self) -> dict[str, int | None]:
        """What the last response said is left of the rate window and the daily quota."""
        rate = self.client.last_rate
        return {} if rate is None else {"rate_remaining": rate.remaining, "quota_remaining": rate.quota_remaining}

    def wait_until(self) -> float | None:
        """Leave a `reserve` share of the rate window to the actions: below it, wait for the reset."""
        rate = self.client.last_rate
        if not rate or rate.remaining is None or rate.limit is None or not rate.reset_at:
            return None
        if rate.remaining < math.ceil(rate.limit * self.reserve):
            return rate.reset_at if rate.reset_at > time.time() else None
        return None


class SynergistSource:
    """`SynergistSource(client, spec).fetch(since, full)`: `Timestampfrom` listings, or everything when `full`."""

    system, full_only, reconcile, verify_filter = "synergist", False, False, True

    def __init__(self, client: SynergistClient, spec: PollerSpec) -> None:
        self.client, self.entity, self.options = client, spec.entity, spec.options
        self.key, self.stamp = SYNERGIST_KEYS[spec.entity]
        self.progress: dict[str, Any] | None = None

    def clock(self) -> int:
        return int(time.time())

    def _record(self, row: SynergistRecord) -> Record:
        fields: Mapping[str, Any] = row  # which fields are the key and the stamp depends on the entity
        return Record(fields[self.key], row, _int(fields.get(self.stamp)))

    def fetch(self, since: int, full: bool, mark: Mapping[str, Any] | None = None) -> Iterator[Record]:
        rows = int(self.options.get("page_size", 100))
        bound = None if full else since
        listing = self.client.iter_activities if self.entity == "activity" else self.client.iter_jobs
        # Seed 001, "Activity list": "If no 'view' parameter is passed all records ... are returned"; a view is
        # a saved query whose selection the doc does not give, so one is sent only when configured.
        view = {"view": self.options["view"]} if self.options.get("view") else {}

        def at(done: int) -> None:
            self.progress = {"page": done}

        start = int((mark or {}).get("page", 0))
        for row in listing(bound, rows=rows, start_page=start, on_page=at, **view):
            yield self._record(row)
        self.progress = None

    def recheck(self, record_id: int | str) -> Record | None:
        try:
            row = self.client.activity(int(record_id)) if self.entity == "activity" else self.client.job(str(record_id))
        except NotFound:
            return None
        return self._record(row)

    def wait_until(self) -> float | None:
        return None

    def budget(self) -> dict[str, int | None]:
        return {}  # Synergist documents no rate limit


def build_source(spec: PollerSpec, clients: PollClients) -> Source:
    if spec.system == "servicetrade" and spec.entity == "clock":
        return ServiceTradeClockSource(clients.servicetrade, spec)
    if spec.system == "servicetrade":
        return ServiceTradeSource(clients.servicetrade, spec)
    if spec.system == "synchroteam":
        return SynchroteamSource(clients.synchroteam, spec)
    return SynergistSource(clients.synergist, spec)
