"""One poll run: list what changed, derive events from snapshots, enqueue them, then move the cursor.

The order is what makes a crash harmless: events are enqueued first, snapshots written next, the
cursor last. A run killed after the enqueue reads the same window again, derives the same changes
with the same `occurred_at`, hence the same event ids, and the worker's claim drops them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fieldrelay.entitystate import EntityVersion, successor
from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from fieldrelay.poll_metrics import PollMetrics
from workers.connectors.errors import RateLimited, Unavailable
from workers.polling.config import PollerSpec
from workers.polling.diff import changeset, comparable
from workers.polling.lease import Lease
from workers.polling.record import Record, Source
from workers.polling.store import Cursor, PollStore, digest

log = logging.getLogger("fieldrelay.polling")

RECENT = 0.8  # a run started within this share of the interval is the same tick, sent twice

Enqueue = Callable[[dict[str, Any]], None]  # the event JSON, sent as one `fieldrelay.process_event` task
Writes = dict[str, tuple[EntityVersion, str]]  # record id -> (its new version, the token it replaces)


@dataclass
class RunReport:
    """What one run did; kept in Redis (`fieldrelay:poll:run:<poller>`) and logged."""

    poller: str
    status: str = "ok"  # ok | partial (429) | failed | locked | recent | backoff | lease_lost
    events: int = 0
    listed: int = 0
    deferred: int = 0  # younger than the webhook grace: left for the next run
    reconciled: int = 0  # already delivered by a webhook
    missed_webhooks: int = 0
    requests: int = 0
    full_scan: bool = False
    since: int | None = None
    seconds: float = 0.0
    budget: dict[str, int | None] = field(default_factory=dict)  # what the API says is left (Synchroteam)
    error: str = ""


class Poller:
    """Runs one `PollerSpec` against its `Source`.

    >>> Poller(spec, source, PollStore(r), enqueue=events.append, requests=lambda: 0).run()  # doctest: +SKIP
    RunReport(poller='servicetrade.job', status='ok', events=1, ...)
    """

    def __init__(
        self,
        spec: PollerSpec,
        source: Source,
        store: PollStore,
        *,
        enqueue: Enqueue,
        requests: Callable[[], int],
        reconcile: bool = False,
    ) -> None:
        self.spec, self.source, self.store, self.enqueue = spec, source, store, enqueue
        self.requests = requests
        self.metrics = PollMetrics(store.r)
        # Webhooks cover this source too: leave to them what they already decided (the stored `newest`).
        self._reconciling = source.reconcile and reconcile

    def run(self) -> RunReport:
        report = RunReport(self.spec.name)
        started = time.time()
        if self.store.backoff_until(self.spec.system) > started:
            report.status = "backoff"
            return report
        lease = Lease(self.store.r, self.store.key("lock", self.spec.name), self.spec.lease)
        if not lease.acquire():
            report.status = "locked"
            return report
        # Two beats (or a task redelivered late) send each tick twice: the lock stops overlapping
        # runs, this stops back-to-back ones. Below a whole interval, so queue jitter rarely skips a tick.
        if started - self.store.last_started(self.spec.name) < self.spec.interval * RECENT:
            lease.release()
            report.status = "recent"
            return report
        self.store.mark_started(self.spec.name, started)
        before = self.requests()
        try:
            self._run(report, lease)
        except RateLimited as exc:  # outside the listing (ServiceTrade's clock, a recheck): wait as well
            self.store.back_off(self.spec.system, exc.reset_at or time.time() + self.spec.interval, time.time())
            self.metrics.add("fieldrelay_poll_rate_limited_total", source=self.spec.system)
            report.status, report.error = "partial", str(exc)
        except Unavailable as exc:
            # Network trouble or a 5xx: nothing was enqueued, the cursor stays, the next tick retries.
            report.status, report.error = "failed", str(exc)
            log.warning("poll %s failed: %s", self.spec.name, exc)
        except Exception as exc:  # a refusal (bad credentials) or a bug: recorded, then raised to alert
            report.status, report.error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            lease.release()
            report.requests = self.requests() - before
            report.budget = self.source.budget()
            report.seconds = round(time.time() - started, 3)
            self.metrics.add("fieldrelay_poll_requests_total", report.requests, source=self.spec.system)
            self.store.save_report(self.spec.name, {**asdict(report), "at": int(started)})
            log.info("poll %s: %s", self.spec.name, report)
        return report

    def _run(self, report: RunReport, lease: Lease) -> None:
        spec, src = self.spec, self.source
        wait = src.wait_until()
        if wait is not None:
            self.store.back_off(spec.system, wait, time.time())
            report.status = "backoff"
            return
        now = src.clock()
        cursor = self.store.cursor(spec.name)
        if cursor is None:
            start = now if spec.start is None else spec.start
            cursor = Cursor(position=start, since=start, fresh_until=start)
        every = int(spec.options.get("full_scan_every", 0))
        resume = cursor.resume
        if resume is not None:
            # The last run ran out of rate budget mid-listing: the same window, from where it stopped.
            full, since, mark = bool(resume["full"]), int(resume["since"]), resume.get("mark")
        else:
            full = src.full_only or cursor.untrusted_filter or bool(every and cursor.runs and cursor.runs % every == 0)
            since, mark = max(0, cursor.position - spec.overlap), None
        horizon = now - spec.webhook_grace if self._reconciling else now
        report.full_scan, report.since = full, since
        listed: dict[str, Record] = {}
        complete = True
        src.progress = mark
        try:
            for record in src.fetch(since, full, mark):
                known = listed.get(str(record.id))
                # The same record twice in one run (two passes, or a page shift): keep the newest.
                if known is None or (record.modified_at or 0) >= (known.modified_at or 0):
                    listed[str(record.id)] = record
        except RateLimited as exc:
            complete = False
            until = exc.reset_at or time.time() + spec.interval
            self.store.back_off(spec.system, until, time.time())
            self.metrics.add("fieldrelay_poll_rate_limited_total", source=spec.system)
            report.status = "partial"
        report.listed = len(listed)
        if not lease.extend():
            # The listing outlived the lease and another run may hold the lock now: leave the rest to it.
            report.status = "lease_lost"
            return
        if (
            src.verify_filter
            and not full
            and any(r.modified_at is not None and r.modified_at < since for r in listed.values())
        ):
            # The server ignored the modification filter: trust only full scans from now on.
            log.warning("poll %s: %s filter ignored by the server; full scans from now on", spec.name, since)
            cursor.untrusted_filter = True
        # A resumed full scan has not listed the earlier pages this run: absence proves nothing then.
        absent = self._recheck_missing(listed) if complete and full and resume is None else set()
        events, snapshots, unchanged, newest = self._derive(listed, cursor, horizon, now, report, absent)
        if resume is not None and resume.get("newest") is not None:
            newest = max(newest or 0, int(resume["newest"]))
        for event in events:
            self.enqueue(event)
        scans = src.full_only or src.verify_filter or bool(every)  # a poller that may list everything
        self.store.save_snapshots(spec.name, snapshots, track_ids=scans)
        self.store.touch(spec.name, unchanged)
        self.metrics.add("fieldrelay_poll_events_total", len(events), source=spec.system, entity=spec.entity)
        if src.reconcile:
            self.metrics.add("fieldrelay_missed_webhooks_caught_total", report.missed_webhooks, entity=spec.entity)
        report.events = len(events)
        if complete:
            fresh = max(cursor.fresh_until, horizon)
            self.store.save_cursor(
                spec.name,
                Cursor(
                    self._position(cursor, listed, newest, horizon),
                    cursor.since,
                    fresh,
                    cursor.runs + 1,
                    cursor.untrusted_filter,
                    None,
                ),
            )
            self.metrics.mark_fresh(spec.name, fresh)
        else:
            # Events and snapshots of the pages read are kept; the cursor stays, the next run goes on from here.
            progress = {"since": since, "full": full, "mark": src.progress, "newest": newest}
            self.store.save_cursor(spec.name, replace(cursor, resume=progress))

    def _before_watch(self, record: Record, cursor: Cursor) -> bool:
        if record.modified_at is not None:
            # The overlap applies here too: a change just before the start may carry a skewed time.
            return record.modified_at < cursor.since - self.spec.overlap
        # No modification time (a full scan of Synchroteam activities): the first run is the baseline,
        # unless FIELDRELAY_POLL_START asked for history.
        return cursor.runs == 0 and self.spec.start is None

    @staticmethod
    def _position(cursor: Cursor, listed: dict[str, Record], newest: int | None, horizon: int) -> int:
        """The newest modification processed, never past the horizon; `now` for records without times."""
        if newest is not None:
            return max(cursor.position, min(newest, horizon))
        untimed = bool(listed) and all(r.modified_at is None for r in listed.values())
        return max(cursor.position, horizon) if untimed else cursor.position

    def _recheck_missing(self, listed: dict[str, Record]) -> set[str]:
        """Records missing from a complete full scan: gone (a deletion), or moved out of the listing."""
        absent = set()
        missing = sorted(self.store.all_snapshot_ids(self.spec.name) - set(listed))
        found = self.store.snapshots(self.spec.name, missing)
        self.store.forget_ids(self.spec.name, set(missing) - set(found))  # expired: nothing left to compare
        for rid, snap in found.items():
            if snap.deleted or snap.absent or snap.record is None:
                continue
            current = self.source.recheck(snap.entity_id if snap.entity_id is not None else rid)
            if current is None:
                listed[rid] = Record(snap.entity_id if snap.entity_id is not None else rid, {}, None, deleted=True)
            else:
                listed[rid] = current
                absent.add(rid)
        return absent

    def _derive(
        self, listed: dict[str, Record], cursor: Cursor, horizon: int, now: int, report: RunReport, absent: set[str]
    ) -> tuple[list[dict[str, Any]], Writes, list[str], int | None]:
        """The events to emit, the versions to store (each with the token it replaces), the records
        listed unchanged, and the newest modification time processed.

        A stored version whose fields are all known (the poller's own, or one a webhook event fetched) is
        diffed into a complete changeset. One that knows only some fields (a webhook changeset's values,
        or a record cut to the size bound) gives `changes: null`: the worker then compares field by field
        with what is known (`EntityVersion.previous`).
        """
        spec = self.spec
        known = self.store.snapshots(spec.name, list(listed))
        max_bytes = self.store.entities.max_bytes
        events: list[dict[str, Any]] = []
        writes: Writes = {}
        unchanged: list[str] = []
        newest: int | None = None
        for rid, record in sorted(listed.items(), key=lambda kv: (kv[1].modified_at or 0, kv[0])):
            if self._reconciling and record.modified_at is not None and record.modified_at > horizon:
                report.deferred += 1  # its webhook may still be on the way
                continue
            if record.modified_at is not None:
                newest = max(newest or 0, record.modified_at)
            stored = known.get(rid) or EntityVersion(entity_id=record.id)
            snap = stored if stored.record is not None else None
            token = stored.token
            data = comparable(record.data, spec.ignore_fields)
            version = digest(data)
            changes: dict[str, dict[str, Any]] | None
            if record.deleted:
                if snap is not None and snap.deleted:
                    continue
                action, changes, version = "deleted", None, "deleted"
            elif snap is None and self._before_watch(record, cursor):
                # Unchanged since before the first run's start: a baseline, not news.
                base = EntityVersion(entity_id=record.id, newest=stored.newest)
                at = record.modified_at or now
                writes[rid] = (self._version(base, data, at, None, "updated", max_bytes, record, absent), token)
                continue
            elif snap is None:
                # Never seen: "created", unless it provably existed before this poller started watching.
                existed = record.created_at is not None and record.created_at < cursor.since - spec.overlap
                action, changes = ("updated", None) if existed else ("created", changeset(None, data))
            elif snap.digest == version and not snap.deleted:
                if self._reconciling and snap.via == "webhook" and not snap.polled:
                    report.reconciled += 1  # a webhook event already stored this very version
                    writes[rid] = (replace(snap, polled=True, absent=rid in absent), token)
                elif snap.absent != (rid in absent):
                    writes[rid] = (replace(snap, absent=rid in absent), token)
                else:
                    unchanged.append(rid)
                continue  # read again in the overlap, unchanged
            else:
                whole = not snap.partial and not snap.dropped and not snap.deleted
                action, changes = "updated", changeset(snap.record, data) if whole else None
            occurred = record.modified_at
            if occurred is None:
                occurred = self.store.observed_at(spec.name, rid, version, now)
            if self._reconciling and action != "deleted":
                seen = stored.newest
                if seen is not None and record.modified_at is not None and record.modified_at <= seen:
                    # A webhook event delivered and decided this change (or a newer one): keep what it
                    # recorded of itself, take the fields as listed.
                    report.reconciled += 1
                    fresh = self._version(stored, data, occurred, None, action, max_bytes, record, absent)
                    writes[rid] = (
                        replace(
                            fresh,
                            event_id=stored.event_id,
                            via=stored.via,
                            action=stored.action,
                            before=stored.before,
                            unknown_before=stored.unknown_before,
                            first=stored.first,
                            polled=True,
                        ),
                        token,
                    )
                    continue
                report.missed_webhooks += 1
            event = ChangeEvent(
                source=spec.system,
                via="poll",
                action=action,
                entity=EntityRef(type=spec.entity, id=record.id, uri=record.uri),
                occurred_at=occurred,
                changes=None if changes is None else {k: FieldChange(**v) for k, v in changes.items()},
            )
            events.append(event.model_dump(mode="json"))
            if action == "deleted":
                gone = replace(stored, deleted=True, event_id=event.id, via="poll", action=action, token="")
                writes[rid] = (replace(gone, version_at=occurred, entity_id=record.id), token)
            else:
                writes[rid] = (
                    self._version(stored, data, occurred, event.id, action, max_bytes, record, absent),
                    token,
                )
        return events, writes, unchanged, newest

    @staticmethod
    def _version(
        stored: EntityVersion,
        data: dict[str, Any],
        at: int,
        event_id: str | None,
        action: str,
        max_bytes: int,
        record: Record,
        absent: set[str],
    ) -> EntityVersion:
        """The version a poll run stores; `newest` stays: the event is not decided until a worker runs it."""
        fresh = successor(
            stored, data, at=at, event_id=event_id, via="poll", action=action, max_bytes=max_bytes, decided=False
        )
        return replace(fresh, absent=str(record.id) in absent, entity_id=record.id)
