"""ServiceTrade webhook messages the tests send, shaped as seed 002 "Webhooks" shows them."""

from __future__ import annotations

from typing import Any


def job_completed(job_id: int, timestamp: int, message_id: str) -> dict[str, Any]:
    """Job `job_id` going scheduled -> completed, with its changeset."""
    return {
        "messageId": message_id,
        "timestamp": str(timestamp),
        "data": [
            {
                "action": "updated",
                "timestamp": timestamp,
                "entity": {"type": "job", "id": job_id, "uri": f"https://api.servicetrade.com/api/job/{job_id}"},
                "changeset": [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}],
            }
        ],
    }
