"""A change made in each sandbox shows up as exactly one event, with the right changeset."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from fieldrelay.events import ChangeEvent
from workers.connectors.synchroteam import SynchroteamClient
from workers.connectors.synergist import SynergistClient

from .conftest import MakeCapture, Sandboxes


def only(events: list[dict]) -> dict:
    assert len(events) == 1, events
    ChangeEvent.model_validate(events[0])  # the same JSON a webhook produces
    return events[0]


def test_servicetrade_update_and_create(sandboxes: Sandboxes, capture: MakeCapture):
    cap = capture(poll_sources="servicetrade.job")
    assert cap.poll("servicetrade.job").events == 0  # first run starts now: no history replayed
    httpx.patch(
        sandboxes.control("servicetrade", "/entities/job/34872"), json={"status": "scheduled"}, timeout=10
    ).raise_for_status()
    cap.poll("servicetrade.job")
    event = only(cap.take())
    assert event["via"] == "poll" and event["action"] == "updated"
    assert event["entity"]["type"] == "job" and event["entity"]["id"] == 34872
    assert event["changes"] is None  # the first sighting of a record that existed before: no old state
    httpx.patch(
        sandboxes.control("servicetrade", "/entities/job/34872"), json={"status": "completed"}, timeout=10
    ).raise_for_status()
    created = httpx.post(
        sandboxes.control("servicetrade", "/entities/job"),
        json={"status": "new", "type": "repair", "locationId": 33},
        timeout=10,
    ).json()
    report = cap.poll("servicetrade.job")
    events = {e["entity"]["id"]: e for e in cap.take()}
    assert report.events == 2 and set(events) == {34872, created["id"]}
    assert events[34872]["changes"] == {"status": {"old": "scheduled", "new": "completed"}}
    assert events[34872]["occurred_at"] == sandboxes.states["servicetrade"].get("job", 34872)["updated"]
    assert events[created["id"]]["action"] == "created"
    assert events[created["id"]]["changes"]["status"] == {"old": None, "new": "new"}
    cap.poll("servicetrade.job")
    assert cap.take() == []  # the overlap reads them again: unchanged snapshots emit nothing


def test_servicetrade_canceled_jobs_are_polled(sandboxes: Sandboxes, capture: MakeCapture):
    cap = capture(poll_sources="servicetrade.job")
    cap.poll("servicetrade.job")
    httpx.patch(
        sandboxes.control("servicetrade", "/entities/job/35770"), json={"status": "canceled"}, timeout=10
    ).raise_for_status()
    cap.poll("servicetrade.job")
    assert only(cap.take())["entity"]["id"] == 35770  # `status=all` leaves canceled out


def test_synchroteam_update_and_delete(
    sandboxes: Sandboxes, capture: MakeCapture, synchroteam_client: SynchroteamClient
):
    cap = capture(poll_sources="synchroteam")
    client = synchroteam_client
    for name in ("synchroteam.job", "synchroteam.customer"):
        cap.poll(name)
    cap.take()
    job = client.upsert_job({"myId": "poll-1", "description": "first", "customer": {"id": 35604}})
    for name in ("synchroteam.job", "synchroteam.customer"):
        cap.poll(name)
    created = only(cap.take())
    assert created["action"] == "created" and created["entity"]["id"] == job["id"]
    client.upsert_job({"myId": "poll-1", "description": "second"})
    client.upsert_customer({"id": 35604, "contactPhone": "555-0100"})
    for name in ("synchroteam.job", "synchroteam.customer"):
        cap.poll(name)
    events = {e["entity"]["type"]: e for e in cap.take()}
    assert events["job"]["changes"] == {"description": {"old": "first", "new": "second"}}
    assert events["customer"]["action"] == "created"  # never seen before (customers carry no dates)
    client.upsert_customer({"id": 35604, "contactPhone": "555-0199"})
    client.delete("job", myId="poll-1")
    for name in ("synchroteam.job", "synchroteam.customer"):
        cap.poll(name)
    events = {e["entity"]["type"]: e for e in cap.take()}
    assert events["customer"]["changes"] == {"contactPhone": {"old": "555-0100", "new": "555-0199"}}
    assert events["job"]["action"] == "deleted" and events["job"]["entity"]["id"] == job["id"]
    for name in ("synchroteam.job", "synchroteam.customer"):
        cap.poll(name)
    assert cap.take() == []


def test_synchroteam_activities_are_diffed_by_date_window(
    sandboxes: Sandboxes, capture: MakeCapture, synchroteam_client: SynchroteamClient
):
    cap = capture(poll_sources="synchroteam.activity")
    client = synchroteam_client
    cap.poll("synchroteam.activity")
    assert cap.take() == []  # the first scan of the window is the baseline (activities carry no times)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    activity = client.upsert_activity(
        {
            "activityType": {"id": 597},
            "user": {"id": 265},
            "note": "lunch",
            "dateStart": f"{today} 12:00",
            "dateEnd": f"{today} 12:30",
        }
    )
    cap.poll("synchroteam.activity")
    assert only(cap.take())["action"] == "created"
    client.upsert_activity({"id": activity["id"], "note": "changed for the poll test"})
    cap.poll("synchroteam.activity")
    event = only(cap.take())
    assert event["entity"]["id"] == activity["id"]
    assert event["changes"]["note"]["new"] == "changed for the poll test"
    cap.poll("synchroteam.activity")
    assert cap.take() == []


def test_synergist_update_and_delete(sandboxes: Sandboxes, capture: MakeCapture, synergist_client: SynergistClient):
    cap = capture(poll_sources="synergist.activity")
    client = synergist_client
    cap.poll("synergist.activity")
    cap.take()  # the seed's records carry the sandbox's start time: inside the first run's overlap
    made = client.create_activity(
        {"activityActivitytypeCode": "Notes", "activityClientCode": "1/F667", "activitySubject": "poll me"}
    )
    cap.poll("synergist.activity")
    assert only(cap.take())["action"] == "created"
    client.update_activity(made["activityID"], {"activitySubject": "polled"})
    report = cap.poll("synergist.activity")
    event = only(cap.take())
    assert event["changes"] == {"activitySubject": {"old": "poll me", "new": "polled"}}
    assert not report.full_scan
    client.delete_activity(made["activityID"])
    # Deletions show only in a full scan (every `full_scan_every` runs): force one.
    cap.context.specs["synergist.activity"].options["full_scan_every"] = 1
    report = cap.poll("synergist.activity")
    event = only(cap.take())
    assert report.full_scan and event["action"] == "deleted" and event["entity"]["id"] == made["activityID"]
