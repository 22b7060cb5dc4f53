"""Loop guard: the echo of our own write is skipped; a person's change is not."""

from __future__ import annotations

import time

from fieldrelay.events import ChangeEvent, EntityRef, FieldChange
from workers.actions.registry import ACTIONS
from workers.echo import SLACK, EchoGuard, written


def job_event(changes: dict[str, tuple[object, object]] | None, at: float | None = None) -> ChangeEvent:
    return ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=35769),
        occurred_at=int(at or time.time()),
        changes=None if changes is None else {k: FieldChange(old=o, new=n) for k, (o, n) in changes.items()},
    )


def update_params(**fields: object):
    return ACTIONS["servicetrade.job.update"].params.model_validate({"jobId": 35769, **fields})


def test_what_each_kind_of_action_wrote():
    assert written("servicetrade.job.update", update_params(customerPo="PO-1"), {}) == [
        ("servicetrade", "job", "35769", ["customerPo"])
    ]
    comment = ACTIONS["servicetrade.job.comment"].params.model_validate({"jobId": 1, "content": "x"})
    assert written("servicetrade.job.comment", comment, {"id": 9}) == [("servicetrade", "job", "1", None)]
    job = ACTIONS["synchroteam.job.upsert"].params.model_validate({"myId": "st-job-1", "description": "d"})
    assert written("synchroteam.job.upsert", job, {"id": "265_1", "myId": "st-job-1"}) == [
        ("synchroteam", "job", "265_1", ["description"])
    ]
    http = ACTIONS["http.request"].params.model_validate({"url": "https://example.com/x"})
    assert written("http.request", http, {"status": 200}) == []


def test_the_echo_of_our_write_is_skipped(redis_client):
    guard = EchoGuard(redis_client)
    guard.remember("servicetrade.job.update", update_params(customerPo="PO-1"), {})
    assert guard.is_echo(job_event({"customerPo": (None, "PO-1")}))
    assert guard.is_echo(job_event(None))  # no changeset: nothing says it was someone else
    assert guard.is_echo(job_event({}))


def test_other_fields_later_changes_and_other_records_still_run(redis_client):
    guard = EchoGuard(redis_client)
    guard.remember("servicetrade.job.update", update_params(customerPo="PO-1"), {})
    assert not guard.is_echo(job_event({"status": ("scheduled", "completed")}))
    assert not guard.is_echo(job_event({"customerPo": (None, "PO-1")}, at=time.time() + SLACK + 5))
    other = ChangeEvent(
        source="servicetrade",
        via="webhook",
        action="updated",
        entity=EntityRef(type="job", id=1),
        occurred_at=int(time.time()),
    )
    assert not guard.is_echo(other)


def test_a_comment_echoes_only_without_field_changes(redis_client):
    guard = EchoGuard(redis_client)
    comment = ACTIONS["servicetrade.job.comment"].params.model_validate({"jobId": 35769, "content": "x"})
    guard.remember("servicetrade.job.comment", comment, {"id": 1})
    assert guard.is_echo(job_event({}))
    assert not guard.is_echo(job_event({"status": ("scheduled", "completed")}))


def test_what_the_two_way_flow_actions_wrote():
    def params(name: str, **values: object):
        return ACTIONS[name].params.model_validate(values)

    complete = params("servicetrade.appointment.complete", jobId=35770)
    assert written("servicetrade.appointment.complete", complete, {"id": 754, "status": "completed"}) == [
        ("servicetrade", "appointment", "754", ["services"]),
        ("servicetrade", "job", "35770", None),
    ]
    upload = params("servicetrade.attachment.upload", entityId=35770, fileName="r.txt", content="x")
    result = {"entityType": "job", "entityId": 35770, "attachments": [{"id": 11}, {"id": 12}]}
    assert written("servicetrade.attachment.upload", upload, result) == [
        ("servicetrade", "attachment", "11", None),
        ("servicetrade", "attachment", "12", None),
        ("servicetrade", "job", "35770", None),
    ]
    close = params("servicetrade.servicerequest.update", serviceRequestId=9902, status="closed")
    assert written("servicetrade.servicerequest.update", close, {"id": 9902}) == [
        ("servicetrade", "servicerequest", "9902", ["status"])
    ]
    created = params("servicetrade.job.create", locationId=33, type="repair")
    assert written("servicetrade.job.create", created, {"id": 40001}) == [("servicetrade", "job", "40001", None)]
