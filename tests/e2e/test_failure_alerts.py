"""An action the target rejects for good is dead-lettered and alerted to Sentry, tagged and without secrets."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import redis

from fieldrelay.state import PipelineState
from fieldrelay_cli.devstack import SANDBOX_PASSWORD, SANDBOX_SYNCHROTEAM_KEY
from tests.sentry_server import SentryCapture
from tests.stacks import running_stack

pytestmark = pytest.mark.e2e

# Synchroteam refuses a new job without a customer (400): a permanent failure.
RULES = """
rules:
  - name: job-without-customer
    when: {source: servicetrade, entity: job, action: updated}
    then:
      - synchroteam.job.upsert:
          myId: "st-job-{{ event.entity.id }}"
          description: "{{ event.entity.id }}"
    on_failure:
      - servicetrade.job.comment:
          jobId: "{{ event.entity.id }}"
          content: "fieldrelay: {{ failure.action }} failed: {{ failure.error }}"
"""

MESSAGE = {
    "messageId": "m-fail",
    "timestamp": "1700000000",
    "data": [
        {
            "action": "updated",
            "timestamp": 1700000000,
            "entity": {"type": "job", "id": 35770, "uri": "https://api.servicetrade.com/api/job/35770"},
        }
    ],
}


def test_permanent_failure_is_dead_lettered_and_alerted(redis_server, tmp_path):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "fail.yaml").write_text(RULES)
    with SentryCapture() as sentry:
        with running_stack(
            redis_server,
            tmp_path,
            webhook_tokens="alert-token",
            rules_dir=rules_dir,
            worker_concurrency=1,
            extra_env={"FIELDRELAY_SENTRY_DSN": sentry.dsn, "FIELDRELAY_SENTRY_ENVIRONMENT": "e2e"},
        ) as stack:
            config = stack.config
            resp = httpx.post(
                f"{config.base_url(config.receiver_port)}/webhooks/servicetrade/alert-token", json=MESSAGE, timeout=10
            )
            assert resp.status_code == 200
            state = PipelineState(redis.Redis.from_url(redis_server))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (state.dead_letters() and sentry.events()):
                time.sleep(0.2)
            comments = httpx.get(f"{config.base_url(config.servicetrade_port)}/_sandbox/requests", timeout=10).json()

        [dead] = state.dead_letters()
        assert dead["rule"] == "job-without-customer"
        assert dead["target"] == "synchroteam"
        assert dead["attempts"] == 1  # a 4xx is permanent: no retries burned
        assert "400" in dead["error"]

        [event] = sentry.events()
        assert event["tags"]["rule"] == "job-without-customer"
        assert event["tags"]["event_id"] == dead["event_id"]
        assert event["tags"]["target"] == "synchroteam"
        assert event["environment"] == "e2e"

        everything = b"\n".join(sentry.raw).decode(errors="replace") + json.dumps(state.dead_letters())
        for secret in (SANDBOX_SYNCHROTEAM_KEY, SANDBOX_PASSWORD, "alert-token"):
            assert secret not in everything
        steps = state.load_trace(dead["event_id"])
        trace = [step["step"] for step in steps]
        assert trace[-3:] == ["action.failed", "action.started", "action.succeeded"]  # then the on_failure comment

    [comment] = [r for r in comments if r["method"] == "POST" and r["path"] == "/api/job/35770/comment"]
    assert comment["json"]["content"].startswith("fieldrelay: synchroteam.job.upsert failed: SynchroteamRejected")
