"""The flagship two-way flow, end to end: real sandboxes, receiver, Celery worker and beat (the Synchroteam job
poller), with rules/examples as shipped. A technician completes a Synchroteam job; ServiceTrade gets the
appointment completed, a comment with the report and the files; Synergist gets the time; and the write-back's
own webhook is recognised by the loop guard instead of re-triggering the office -> field rule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fieldrelay.queries import list_events
from fieldrelay.state import PipelineState
from fieldrelay_cli.devstack import SANDBOX_PASSWORD, SANDBOX_SYNCHROTEAM_KEY, SANDBOX_USER
from tests.e2e.conftest import Pipeline
from tests.stacks import running_stack
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synchroteam import SynchroteamClient
from workers.connectors.synergist import SynergistClient
from workers.delayed import DelayedTasks
from workers.polling.store import PollStore

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
TOKEN = "two-way-token"
ST_JOB, APPOINTMENT = 35770, 754  # seeded: a scheduled job whose current appointment is 754
ZONE = "Europe/Paris"  # the Synchroteam account's zone, set on both sides


@pytest.fixture(scope="module")
def stack(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    extra_env = {
        "FIELDRELAY_POLL_SOURCES": "synchroteam.job",
        "FIELDRELAY_POLL_INTERVAL": "1",
        "FIELDRELAY_SYNCHROTEAM_TIMEZONE": ZONE,
    }
    with running_stack(
        redis_server,
        tmp_path_factory.mktemp("two-way"),
        beat=True,
        webhook_tokens=TOKEN,
        rules_dir=ROOT / "rules" / "examples",
        synchroteam_options={"timezone": ZONE},
        extra_env=extra_env,
    ) as running:
        handle = Pipeline(running, redis_server)
        try:
            yield handle
        finally:
            handle.redis.close()


def clients(stack: Pipeline) -> tuple[ServiceTradeClient, SynchroteamClient, SynergistClient]:
    c = stack.config
    return (
        ServiceTradeClient(c.base_url(c.servicetrade_port) + "/api", SANDBOX_USER, SecretStr(SANDBOX_PASSWORD)),
        SynchroteamClient(
            c.base_url(c.synchroteam_port), SANDBOX_USER, SecretStr(SANDBOX_SYNCHROTEAM_KEY), timezone=ZONE
        ),
        SynergistClient(c.base_url(c.synergist_port), SANDBOX_USER, SecretStr(SANDBOX_PASSWORD), "1"),
    )


def job_comments(servicetrade: ServiceTradeClient) -> list[dict[str, Any]]:
    listing: dict[str, Any] = dict(servicetrade.get(f"/job/{ST_JOB}/comment"))
    return [dict(c) for c in listing.get("comments") or []]


def timesheets(synergist: SynergistClient) -> list[dict[str, Any]]:
    rows = synergist.call("tspending", style="modeldata", modelstructure="tspendingslist", resource='["1/JOHNDOE"]')
    return [r for r in rows.get("data") or [] if r.get("tspJobAndPhase") == "1/00000510.001"]


def test_a_job_completed_in_the_field_flows_back_to_the_office(stack: Pipeline) -> None:
    servicetrade, synchroteam, synergist = clients(stack)
    state = PipelineState(stack.redis)
    try:
        servicetrade.create_webhook(f"{stack.receiver}/webhooks/servicetrade/{TOKEN}", include_changesets=True)
        # The office -> field rules made this job for ServiceTrade job 35770; dispatch linked it to a Synergist phase.
        job = synchroteam.upsert_job(
            {
                "myId": f"st-job-{ST_JOB}",
                "customer": {"id": 35604},
                "description": "Walk-in cooler alarm sounding.",
                "technician": {"id": 1551},
                "customFieldValues": [{"id": 190, "label": "Synergist phase", "value": "1/00000510.001"}],
            }
        )
        store = PollStore(stack.redis)
        stack.wait_until(
            lambda: bool(store.snapshots("synchroteam.job", [job["id"]])), what="the poller to see the job"
        )

        # The technician finishes on site (the sandbox plays the mobile app): report, photo, time, completed.
        done = httpx.post(
            stack.url(stack.config.synchroteam_port, "/_sandbox/technician/complete"),
            json={
                "job": {"myId": f"st-job-{ST_JOB}"},
                "actualStart": "2026-07-21 00:30",  # local (Paris) wall time: 22:30 UTC the day before
                "actualEnd": "2026-07-21 02:45",
                "summary": "Replaced the alarm relay; cooler holds 3 C.",
            },
            timeout=10,
        )
        assert done.status_code == 200, done.text

        def attachments() -> list[dict[str, Any]]:
            return [dict(a) for a in servicetrade.list_attachments("job", ST_JOB)]

        stack.wait_until(lambda: len(attachments()) >= 2, timeout=90, what="the report and the photo on the job")
        stack.wait_until(lambda: bool(timesheets(synergist)), timeout=60, what="the Synergist timesheet")

        appointment = servicetrade.get_entity("appointment", APPOINTMENT)
        assert appointment["status"] == "completed"
        comments = job_comments(servicetrade)
        [comment] = [c for c in comments if "Completed in Synchroteam" in str(c.get("content"))]
        assert "Summary: Replaced the alarm relay; cooler holds 3 C." in comment["content"]
        files = {a["fileName"]: a for a in attachments()}
        assert set(files) == {f"synchroteam-job-{job['num']}-report.txt", "after.png"}
        assert (files["after.png"]["purposeId"], files["after.png"]["fileType"]) == (3, "image/png")
        [entry] = timesheets(synergist)
        assert (entry["tspTimeDate"], entry["tspResourceCode"], float(entry["tspHoursNormal"])) == (
            "2026-07-21",  # the account's local date, not the UTC one
            "1/JOHNDOE",
            2.25,
        )

        # The appointment update comes back as a ServiceTrade webhook: our own write, so no rule runs on it.
        def appointment_events() -> list[dict[str, Any]]:
            return [
                e
                for e in list_events(state)
                if (e["source"], e["entity_type"], e["entity_id"]) == ("servicetrade", "appointment", str(APPOINTMENT))
            ]

        stack.wait_until(lambda: bool(appointment_events()), timeout=60, what="the appointment's webhook")
        delayed = DelayedTasks(stack.redis)
        stack.wait_until(lambda: not delayed.pending(), what="the delayed queue to empty")
        stack.wait_idle()
        assert {e["outcome"] for e in appointment_events()} == {"own write"}
        validates = [r for r in stack.requests("synchroteam") if r["path"].endswith("/job/validate")]
        assert validates == []  # office-appointment-completed-to-field did not run for our write-back

        # Each effect happened once, though the poller keeps running.
        assert len([c for c in job_comments(servicetrade) if "Completed in" in str(c.get("content"))]) == 1
        assert len(timesheets(synergist)) == 1 and len(attachments()) == 2
    finally:
        servicetrade.close()
        synchroteam.close()
        synergist.close()
