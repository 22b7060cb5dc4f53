"""The hand-built message is the one Celery's own apply_async writes to Redis, field for field."""

from __future__ import annotations

import base64
import json

from celery import Celery

from fieldrelay.celery_messages import task_message

VOLATILE_HEADERS = {"id", "root_id", "origin", "argsrepr"}


def test_message_matches_celery_apply_async(redis_client, redis_url):
    app = Celery("t", broker=redis_url, set_as_current=False)
    app.conf.task_serializer = "json"
    app.send_task("fieldrelay.process_event", args=[{"a": 1}], queue="events")
    theirs = json.loads(redis_client.rpop("events"))
    ours = json.loads(task_message("fieldrelay.process_event", [{"a": 1}], "events"))

    decode = lambda m: json.loads(base64.b64decode(m["body"]))  # noqa: E731
    assert decode(ours) == decode(theirs)  # same JSON; kombu's encoder just adds spaces
    assert {k: ours[k] for k in ("content-type", "content-encoding")} == {
        k: theirs[k] for k in ("content-type", "content-encoding")
    }
    strip = lambda h: {k: v for k, v in h.items() if k not in VOLATILE_HEADERS}  # noqa: E731
    assert strip(ours["headers"]) == strip(theirs["headers"])
    their_props = dict(theirs["properties"], correlation_id=None, delivery_tag=None, reply_to="")
    our_props = dict(ours["properties"], correlation_id=None, delivery_tag=None, reply_to="")
    # reply_to names a result consumer; the pipeline keeps no task results.
    assert our_props == their_props
    assert ours["headers"]["id"] == ours["properties"]["correlation_id"] == ours["headers"]["root_id"]
    app.close()
