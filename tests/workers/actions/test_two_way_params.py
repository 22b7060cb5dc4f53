"""Bad parameters to the two-way flow's actions are refused with a clear message before any call."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.actions.registry import ACTIONS


def refuse(name: str, values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ACTIONS[name].params.model_validate(values)


def test_bad_parameters_are_refused() -> None:
    refuse("servicetrade.attachment.upload", {"entityId": 1}, "exactly one of content, content_base64")
    refuse("servicetrade.attachment.upload", {"entityId": 1, "content": "x"}, "fileName is required")
    refuse(
        "servicetrade.attachment.upload",
        {"entityId": 1, "content": "x", "fileName": "a", "synchroteam_photos": {"id": "1"}},
        "exactly one of",
    )
    refuse("servicetrade.attachment.upload", {"entityId": 1, "synchroteam_photos": {}}, "needs id, myId or num")
    refuse("servicetrade.attachment.upload", {"entityId": 1, "entityType": "invoice", "content": "x"}, "entityType")
    refuse("servicetrade.appointment.complete", {}, "appointmentId or jobId is required")
    refuse("servicetrade.appointment.update", {"appointmentId": 1, "status": "unscheduled"}, "status")
    refuse("servicetrade.servicerequest.update", {"serviceRequestId": 1, "status": "done"}, "status")
    refuse("synchroteam.job.parts", {"myId": "j", "parts": []}, "at least 1 item")
    refuse("synchroteam.job.parts", {"myId": "j", "parts": [{"quantity": 1}]}, "reference or an id")
    refuse("synchroteam.job.parts", {"myId": "j", "parts": [{"reference": "r"}]}, "quantity, or serialNumbers")
    refuse("synchroteam.lookup", {"kind": "customfield"}, "type is required for customfield")
    refuse("synchroteam.lookup", {"kind": "jobtype", "type": "job"}, "only for it")
    refuse("synergist.activity.update", {"activityID": 1, "on_conflict": "merge"}, "on_conflict")
