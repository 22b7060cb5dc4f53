"""Loop guard: remember what our own actions wrote, so the change events those writes cause are not acted on.

A rule that updates a ServiceTrade job is triggered by ServiceTrade job updates; without
a guard, its own write comes back as a webhook (or a poll) and runs it again, forever.
After each action the guard records the records it wrote and which fields; an event for
such a record, within `SLACK` seconds of the write and changing nothing but those fields
(or saying nothing about fields), is the echo of our write and is skipped. A person's
change to another field, or later, still runs the rules.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis
from pydantic import BaseModel

from fieldrelay.events import ChangeEvent

SLACK = 120  # seconds between our write and the change time the target reports
TTL = 900  # pollers may see the write a while later
# Parameters that name the record rather than change it.
KEY_FIELDS = {
    "id",
    "myId",
    "num",
    "jobId",
    "appointmentId",
    "serviceRequestId",
    "activityID",
    "jobNumber",
    "calDiaryInternal",
    "tspEntryNo",
}
RESULT_IDS = ("id", "activityID", "jobNumber", "calDiaryInternal", "tspEntryNo")


def written(action: str, params: BaseModel, result: dict[str, Any]) -> list[tuple[str, str, str, list[str] | None]]:
    """(system, entity type, id, fields written or None if unknown) for what an action changed."""
    target, kind, *_ = action.split(".")
    if target == "http":
        return []  # not one of the systems we take events from
    fields = sorted(set(params.model_dump(exclude_none=True, by_alias=True)) - KEY_FIELDS)
    out: list[tuple[str, str, str, list[str] | None]] = []
    if target == "servicetrade":
        job_id = getattr(params, "jobId", None)
        if kind == "job" and job_id is None and result.get("id") is not None:
            out.append((target, "job", str(result["id"]), None))  # a job we created
        elif kind == "job" and job_id is not None:
            # A comment changes no job field we know of; ServiceTrade may still report the job updated.
            out.append((target, "job", str(job_id), fields if action.endswith(".update") else None))
        elif kind == "servicerequest":
            out.append((target, "servicerequest", str(getattr(params, "serviceRequestId", "")), fields))
        elif kind == "attachment":
            # Each file is a new attachment; the job or appointment it hangs on may be reported updated too.
            for item in result.get("attachments") or []:
                if item.get("id") is not None:
                    out.append((target, "attachment", str(item["id"]), None))
            out.append((target, str(result.get("entityType")), str(result.get("entityId")), None))
        elif kind == "externalid":
            # Whether ServiceTrade reports an external id change as an update is undocumented: guard anyway.
            named = params.model_dump()
            out.append((target, str(named["entityType"]), str(named["entityId"]), ["externalIds"]))
        elif kind == "appointment":
            if result.get("id") is not None:
                out.append((target, "appointment", str(result["id"]), fields))
            if job_id is not None:
                out.append((target, "job", str(job_id), None))
        return out
    record_id = next((result[k] for k in RESULT_IDS if result.get(k) is not None), None)
    if record_id is not None:
        out.append((target, kind, str(record_id), fields))
    return out


class EchoGuard:
    """`remember()` after an action succeeds; `is_echo()` before evaluating an event.

    >>> guard.remember("servicetrade.job.update", params, result)   # doctest: +SKIP
    >>> guard.is_echo(event_for_that_job)                          # doctest: +SKIP
    True
    """

    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    @staticmethod
    def key(system: str, entity_type: str, entity_id: str | int) -> str:
        return f"fieldrelay:echo:{system}:{entity_type}:{entity_id}"

    def remember(self, action: str, params: BaseModel, result: dict[str, Any]) -> None:
        now = time.time()
        for system, entity_type, entity_id, fields in written(action, params, result):
            key = self.key(system, entity_type, entity_id)
            previous = self.r.get(key)
            if previous is not None and fields is not None:
                # Several writes to one record within the window: any of their fields may echo.
                known = orjson.loads(previous).get("fields")
                fields = None if known is None else sorted(set(known) | set(fields))
            self.r.set(key, orjson.dumps({"at": now, "fields": fields, "action": action}), ex=TTL)

    def is_echo(self, event: ChangeEvent) -> bool:
        return self.judge(event, self.r.get(self.key(event.source, event.entity.type, event.entity.id)))

    @staticmethod
    def judge(event: ChangeEvent, raw: bytes | str | None) -> bool:
        """Whether `event` is the echo of our write, given the mark stored at `key(...)` (read by the caller)."""
        if raw is None:
            return False
        mark = orjson.loads(raw)
        if abs(event.occurred_at - mark["at"]) > SLACK:
            return False
        if not event.changes:
            return True  # no changeset, or an empty one: nothing says it was anyone else
        fields = mark["fields"]
        return fields is not None and set(event.changes) <= set(fields)
