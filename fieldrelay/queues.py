"""Celery task and queue names shared by the receiver (which publishes) and the workers (which consume)."""

INGEST_TASK = "fieldrelay.ingest"
PROCESS_EVENT_TASK = "fieldrelay.process_event"
# Several events in one message: the receiver's group commit under load (receiver/publisher.py).
PROCESS_EVENTS_TASK = "fieldrelay.process_events"
RUN_ACTION_TASK = "fieldrelay.run_action"
NEXT_RUN_TASK = "fieldrelay.next_run"

EVENTS_QUEUE = "events"
# One queue per target, so a slow or rate-limited target cannot starve the others.
ACTION_QUEUES = {
    "servicetrade": "actions.servicetrade",
    "synchroteam": "actions.synchroteam",
    "synergist": "actions.synergist",
    "http": "actions.http",
}
ALL_QUEUES = (EVENTS_QUEUE, *ACTION_QUEUES.values())
