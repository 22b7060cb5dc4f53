"""ServiceTrade webhook messages the tests send, shaped as seed 002 "Webhooks" shows them."""

from __future__ import annotations

from typing import Any

COMPLETED = [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}]


def jobs_updated(
    job_ids: list[int], timestamp: int, message_id: str, changeset: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One `updated` item per job id, each with `changeset` when one is given."""
    return {
        "messageId": message_id,
        "timestamp": str(timestamp),
        "data": [
            {
                "action": "updated",
                "timestamp": timestamp,
                "entity": {"type": "job", "id": i, "uri": f"https://api.servicetrade.com/api/job/{i}"},
                **({"changeset": changeset} if changeset is not None else {}),
            }
            for i in job_ids
        ],
    }


def job_completed(job_id: int, timestamp: int, message_id: str) -> dict[str, Any]:
    """Job `job_id` going scheduled -> completed, with its changeset."""
    return jobs_updated([job_id], timestamp, message_id, COMPLETED)
