"""Source adapters: each lists one entity type through its connector and yields `Record`s.

- ServiceTrade: `updatedAfter` (inclusive), checkpointed on `updated`; the connector already
  reads jobs as `status=all` then `status=canceled`, appointments in every status and locations
  with the maximum `limit`. Locations add an `isVendor=true` pass (the API defaults to customers).
- Synchroteam: `changedSince` (UTC) for job, customer, site, equipment; jobs sorted by
  `datemodified` and checkpointed on `dateModified`, with a `show=deleted` pass. Activities have no
  modification filter: the date window is scanned and diffed.
- Synergist: `Timestampfrom` as Unix seconds (the format is undocumented) on
  `<prefix>TimeStampModified`, with a periodic full scan as the fallback (see `runner.py`).
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

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

    def clock(self) -> int:
        # The server's clock, not ours: the first window and the webhook grace are then skew-free.
        server = _int(self.client.heartbeat().get("serverTime"))
        return server if server is not None else int(time.time())

    def fetch(self, since: int, full: bool) -> Iterator[Record]:
        for extra in SERVICETRADE_PASSES.get(self.entity, ({},)):
            bound = {} if full else {"updatedAfter": since}
            for row in self.client.iter_list(self.entity, **self.filters, **extra, **bound):
                yield Record(row["id"], row, _int(row.get("updated")), _int(row.get("created")), uri=row.get("uri"))

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


def _synchroteam_time(value: Any) -> int | None:
    # dateModified's zone is undocumented; changedSince is UTC, so it is read as UTC (the overlap absorbs it).
    try:
        parsed = parse_job_date(value)
    except (TypeError, ValueError):
        return None
    return None if parsed is None else calendar.timegm(parsed.timetuple())


class SynchroteamSource:
    """`SynchroteamSource(client, spec).fetch(since, full=False)`: changed records, then deleted jobs."""

    system, reconcile, verify_filter = "synchroteam", False, False

    def __init__(self, client: SynchroteamClient, spec: PollerSpec) -> None:
        self.client, self.entity, self.options = client, spec.entity, spec.options
        self.full_only = spec.entity == "activity"
        self.reserve = float(spec.options.get("reserve", 0.1))  # share of each rate window left to the actions

    def clock(self) -> int:
        return int(time.time())

    def _record(self, row: SynchroteamRecord, deleted: bool = False) -> Record:
        return Record(
            row["id"],
            row,
            _synchroteam_time(row.get("dateModified")),
            _synchroteam_time(row.get("dateCreated")),
            deleted=deleted,
        )

    def fetch(self, since: int, full: bool) -> Iterator[Record]:
        size = int(self.options.get("page_size", 100))
        if self.entity == "activity":
            today = datetime.now(UTC)
            start = today - timedelta(days=int(self.options.get("days_back", 30)))
            end = today + timedelta(days=int(self.options.get("days_ahead", 90)))
            for row in self.client.iter_list(
                "activity",
                page_size=size,
                startDate=start.strftime("%Y-%m-%d 00:00"),
                endDate=end.strftime("%Y-%m-%d 23:59"),
            ):
                yield self._record(row)
            return
        changed = None if full else datetime.fromtimestamp(since, UTC)
        order = {"sort": "datemodified", "sortOrder": "ascending"} if self.entity in ("job", "customer") else {}
        for row in self.client.iter_list(self.entity, changed, page_size=size, **order):
            yield self._record(row)
        if self.options.get("show_deleted"):
            for row in self.client.iter_list(self.entity, changed, page_size=size, show="deleted", **order):
                yield self._record(row, deleted=True)

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

    def clock(self) -> int:
        return int(time.time())

    def _record(self, row: SynergistRecord) -> Record:
        fields: Mapping[str, Any] = row  # which fields are the key and the stamp depends on the entity
        return Record(fields[self.key], row, _int(fields.get(self.stamp)))

    def fetch(self, since: int, full: bool) -> Iterator[Record]:
        rows = int(self.options.get("page_size", 100))
        bound = None if full else since
        listing = self.client.iter_activities if self.entity == "activity" else self.client.iter_jobs
        for row in listing(bound, rows=rows):
            yield self._record(row)

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
    if spec.system == "servicetrade":
        return ServiceTradeSource(clients.servicetrade, spec)
    if spec.system == "synchroteam":
        return SynchroteamSource(clients.synchroteam, spec)
    return SynergistSource(clients.synergist, spec)
