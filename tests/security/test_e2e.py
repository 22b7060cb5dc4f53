"""Issue 12 end to end, with real processes: sandboxes, receiver (uvicorn), a Celery worker, a private Redis.

1. A webhook aims `http.request` at 127.0.0.1 and at the cloud metadata address: nothing is sent, each is
   dead-lettered at once with the egress policy's reason; the allowlisted sink gets the call, and its
   5 MB answer is kept cut in the trace.
2. An event whose rules cannot be evaluated is a dead letter, failed on the console, and `fieldrelay dlq
   retry` runs it again once the cause is gone; a rule reload that blows up keeps the last good set and
   says so in /readyz.
3. A 400 keeps the body; `fieldrelay webhooks rejected` lists it and `... replay ID` pushes one through.
5. No form of any secret reaches a trace, dead letter, console page, log file, Sentry event or CLI output.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from fieldrelay.state import PipelineState
from fieldrelay_cli.devstack import SANDBOX_SYNCHROTEAM_KEY, Stack, StackConfig
from fieldrelay_cli.embedded_redis import free_port
from receiver import rejected
from tests.pipeline_waits import PipelineWaits
from tests.security.conftest import Listener
from tests.sentry_server import SentryCapture

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "security-e2e-token-0123456789"
CONSOLE_TOKEN = "security-console-token-0123456789"
CHAT_TOKEN = "Chat!Token/4f9a+e2e:Secret"
SYNERGIST_PASSWORD = "p@ss:w0rd!-Synergist-77"
SECRETS = (CHAT_TOKEN, SYNERGIST_PASSWORD, WEBHOOK_TOKEN, CONSOLE_TOKEN, SANDBOX_SYNCHROTEAM_KEY)

RULES = """
rules:
  - name: callback
    when: {source: servicetrade, entity: job, action: updated, changed: {callback: true}}
    then:
      - http.request:
          url: "{{ changes.callback.new }}"
          headers: {Authorization: !secret CHAT_TOKEN}
          json:
            job: "{{ event.entity.id }}"
            upper: "{{ env.CHAT_TOKEN | upper }}"
            reversed: "{{ env.CHAT_TOKEN | reverse }}"
            prefix: "{{ env.CHAT_TOKEN[:12] }}"
            encoded: "{{ env.CHAT_TOKEN | urlencode }}"
  - name: needs-entity
    when: {source: servicetrade, entity: job, action: updated, changed: {status: {to: completed}}}
    if: "entity.type == 'repair'"
    then:
      - http.request:
          url: "SINK/needs-entity"
          json: {description: "{{ entity.description }}"}
  - name: synergist-job
    when: {source: servicetrade, entity: invoice, action: created}
    then:
      - synergist.job.create:
          varJobTemplate: "1/00100001"
          jobClientCode: "1/C4126"
          jobDescription: "invoice {{ event.entity.id }}"
"""


def message(entity_id: int, *, entity: str = "job", action: str = "updated", changes: list | None = None) -> dict:
    item: dict[str, Any] = {
        "action": action,
        "timestamp": 1700000000 + entity_id,
        "entity": {"type": entity, "id": entity_id, "uri": f"https://api.servicetrade.com/api/{entity}/{entity_id}"},
    }
    if changes is not None:
        item["changeset"] = changes
    return {"messageId": f"m-{entity}-{entity_id}-{time.time_ns()}", "timestamp": "1700000000", "data": [item]}


class Secured(PipelineWaits):
    def __init__(self, stack: Stack, sink: Listener, admin: Listener, sentry: SentryCapture, tmp: Path) -> None:
        self.stack, self.config, self.sink, self.admin, self.sentry, self.tmp = (
            stack,
            stack.config,
            sink,
            admin,
            sentry,
            tmp,
        )
        self.redis = redis.Redis.from_url(stack.config.redis_url or "")
        self.state = PipelineState(self.redis)

    @property
    def receiver(self) -> str:
        return self.config.base_url(self.config.receiver_port)

    def post(self, body: dict | bytes) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(
            f"{self.receiver}/webhooks/servicetrade/{WEBHOOK_TOKEN}",
            content=content,
            headers={"content-type": "application/json"},
            timeout=10,
        )

    def console(self, path: str) -> httpx.Response:
        return httpx.get(
            f"{self.receiver}/console{path}", headers={"Authorization": f"Bearer {CONSOLE_TOKEN}"}, timeout=30
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FIELDRELAY_REDIS_URL": self.config.redis_url or "", "FIELDRELAY_DEV_MODE": "1"}
        env.update({k: v for k, v in self.config.extra_env.items() if k.startswith("FIELDRELAY_")})
        env.update({"FIELDRELAY_DATA_DIR": str(self.tmp / "cli"), "FIELDRELAY_RULES_DIR": str(self.config.rules_dir)})
        return subprocess.run(
            [sys.executable, "-P", "-m", "fieldrelay_cli", *args], capture_output=True, text=True, env=env, timeout=60
        )

    def dead_letter_for(self, event_entity: int, kind: str = "action") -> dict | None:
        for entry in self.state.dead_letters():
            event = self.state.load_event(entry["event_id"]) or {}
            if entry.get("kind") == kind and (event.get("entity") or {}).get("id") == event_entity:
                return entry
        return None


@pytest.fixture(scope="module")
def secured(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    redis.Redis.from_url(redis_server).flushdb()
    tmp = tmp_path_factory.mktemp("hardening-stack")
    big = b'{"answer": "' + b"x" * 5_000_000 + b'"}'
    sink = Listener(lambda h: (200, {"Content-Type": "application/json"}, big)).start()
    admin = Listener().start()
    rules_dir = tmp / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RULES.replace("SINK", sink.url("")))
    with SentryCapture() as sentry:
        config = StackConfig(
            data_dir=tmp,
            redis_url=redis_server,
            receiver_port=free_port(),
            servicetrade_port=free_port(),
            synchroteam_port=free_port(),
            synergist_port=free_port(),
            webhook_tokens=WEBHOOK_TOKEN,
            console_token=CONSOLE_TOKEN,
            rules_dir=rules_dir,
            worker_concurrency=2,
            log_dir=tmp / "logs",
            extra_env={
                "FIELDRELAY_HTTP_ALLOWED_HOSTS": f"127.0.0.1:{sink.port}",
                "FIELDRELAY_RULES_ENV": "CHAT_TOKEN",
                "CHAT_TOKEN": CHAT_TOKEN,
                "FIELDRELAY_SYNERGIST_PASSWORD": SYNERGIST_PASSWORD,  # the sandbox refuses it: fine, it is sent
                "FIELDRELAY_SENTRY_DSN": sentry.dsn,
                "FIELDRELAY_SENTRY_ENVIRONMENT": "e2e",
                "FIELDRELAY_ACTION_MAX_RETRIES": "1",
                "FIELDRELAY_RETRY_MAX_BACKOFF": "1",
            },
        )
        stack = Stack(config)
        try:
            stack.start_redis()
            stack.start_sandbox()
            stack.start_receiver()
            # DEBUG: httpx writes its line per request (left out at INFO), which test 5 reads for leaks.
            stack.start_worker(loglevel="DEBUG")
            yield Secured(stack, sink, admin, sentry, tmp)
        finally:
            stack.stop()
            sink.stop()
            admin.stop()
            for log in sorted((tmp / "logs").glob("*.log")):
                print(f"----- {log.name} (tail) -----\n{log.read_text(errors='replace')[-3000:]}")


def test_1_no_request_reaches_a_refused_address_and_each_is_dead_lettered_at_once(secured: Secured) -> None:
    targets = {
        9001: secured.admin.url("/internal-admin"),
        9002: "http://169.254.169.254/latest/meta-data/",
        9003: f"http://localhost:{secured.admin.port}/internal-admin",
        9004: "file:///etc/passwd",
    }
    for job, url in targets.items():
        changes = [{"field": "callback", "oldValue": None, "newValue": url}]
        assert secured.post(message(job, changes=changes)).status_code == 200
    secured.wait_until(lambda: all(secured.dead_letter_for(j) for j in targets), what="four dead letters")
    assert secured.admin.hits == []  # the listener received nothing, secret or otherwise
    reasons = {j: secured.dead_letter_for(j) for j in targets}
    for job in (9001, 9002, 9003):
        entry = reasons[job]
        assert entry is not None and entry["attempts"] == 1 and entry["rule"] == "callback"  # no retries
        assert "refused by the egress policy" in entry["error"]
    first, second, fourth = reasons[9001], reasons[9002], reasons[9004]
    assert first is not None and second is not None and fourth is not None
    assert f"127.0.0.1:{secured.admin.port} is not in FIELDRELAY_HTTP_ALLOWED_HOSTS" in first["error"]
    assert "169.254.169.254:80 is not in FIELDRELAY_HTTP_ALLOWED_HOSTS" in second["error"]
    assert "only http and https URLs are allowed, not 'file'" in fourth["error"]

    # The allowlisted sink is called, with the real secret; its 5 MB answer is kept cut.
    changes = [{"field": "callback", "oldValue": None, "newValue": secured.sink.url("/hook")}]
    assert secured.post(message(9005, changes=changes)).status_code == 200
    secured.wait_until(lambda: len(secured.sink.hits) >= 1, what="the sink's request")
    [hit] = secured.sink.hits
    assert hit.headers["Authorization"] == CHAT_TOKEN
    sent = json.loads(hit.body)
    assert sent["upper"] == CHAT_TOKEN.upper() and sent["reversed"] == CHAT_TOKEN[::-1]
    secured.wait_idle()
    done = [
        step
        for key in secured.redis.scan_iter(match="fieldrelay:trace:*")
        for step in secured.state.load_trace(key.decode().rsplit(":", 1)[1])
        if step["step"] == "action.succeeded" and step.get("rule") == "callback"
    ]
    [succeeded] = done
    assert "only its start is kept" in succeeded["result"]["truncated"]
    assert len(json.dumps(succeeded)) < 200_000
    started = [
        step
        for key in secured.redis.scan_iter(match="fieldrelay:trace:*")
        for step in secured.state.load_trace(key.decode().rsplit(":", 1)[1])
        if step["step"] == "action.started" and step.get("rule") == "callback"
    ]
    for step in started:  # what derives from the secret is masked whole in the trace
        params = step["params"]
        assert params["headers"] == {"Authorization": "[redacted]"}
        assert all(params["json_body"][k] == "[redacted]" for k in ("upper", "reversed", "prefix", "encoded"))


def test_2_an_event_that_cannot_be_evaluated_is_a_dead_letter_that_runs_again(secured: Secured) -> None:
    faults = f"{secured.config.base_url(secured.config.servicetrade_port)}/_sandbox/faults"
    httpx.post(faults, json={"status": 403, "method": "GET"}, timeout=10).raise_for_status()
    changes = [{"field": "status", "oldValue": "scheduled", "newValue": "completed"}]
    assert secured.post(message(35769, changes=changes)).status_code == 200
    secured.wait_until(lambda: secured.dead_letter_for(35769, "event") is not None, what="the event's dead letter")
    entry = secured.dead_letter_for(35769, "event")
    assert entry is not None and entry["target"] == "events" and "403" in entry["error"]
    trace = [s["step"] for s in secured.state.load_trace(entry["event_id"])]
    assert trace[-1] == "event.failed"
    events = secured.console("/events?outcome=failed").text
    assert f"/console/events/{entry['event_id']}" in events  # failed, never "no match"
    secured.wait_until(
        lambda: any(e.get("tags", {}).get("alert") == "event" for e in secured.sentry.events()), what="the alert"
    )

    httpx.delete(faults, timeout=10).raise_for_status()
    before = len(secured.sink.hits)
    proc = secured.cli("dlq", "retry", entry["id"])
    assert proc.returncode == 0, proc.stderr
    assert "re-enqueued on events" in proc.stdout
    secured.wait_until(lambda: len(secured.sink.hits) > before, what="the event's action after the retry")
    assert json.loads(secured.sink.hits[-1].body) == {"description": "Fix the hood in the back."}
    assert secured.dead_letter_for(35769, "event") is None


def test_2b_a_reload_that_blows_up_keeps_the_last_good_set_and_says_so(secured: Secured) -> None:
    bomb = secured.config.rules_dir / "deep.yaml"
    bomb.write_text("x-deep: " + "[" * 5000 + "]" * 5000 + "\n")

    def rules_status() -> dict:
        return httpx.get(f"{secured.receiver}/readyz", timeout=10).json()["rules"]

    try:
        # Workers look at the rules directory when an event comes (at most once a second): send some.
        def reloaded() -> bool:
            before = len(secured.sink.hits)
            changes = [{"field": "callback", "oldValue": None, "newValue": secured.sink.url("/after-reload")}]
            assert secured.post(message(9010 + before, changes=changes)).status_code == 200
            secured.wait_until(lambda: len(secured.sink.hits) > before, what="the last good set at work")
            return not rules_status()["ok"]

        secured.wait_until(reloaded, what="/readyz to report the broken reload", every=1.2)
        [error] = rules_status()["errors"]
        assert error.startswith(f"{bomb}:1:") and "nested deeper than 64 levels" in error
        assert "nested deeper than 64 levels" in secured.console("/rules").text
    finally:
        bomb.unlink()


def test_3_a_rejected_webhook_is_kept_listed_and_replayed(secured: Secured) -> None:
    bad = message(9020, changes=[])
    bad["data"][0]["action"] = "merged"
    resp = secured.post(bad)
    assert resp.status_code == 400
    rejected_id = resp.json()["rejected_id"]
    listed = secured.cli("webhooks", "rejected", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [e for e in json.loads(listed.stdout) if e["id"] == rejected_id]
    assert entry["message_id"] == bad["messageId"] and "data.0.action" in entry["reason"]
    still = secured.cli("webhooks", "rejected", "replay", rejected_id)
    assert still.returncode == 1 and "is still invalid" in still.stderr
    assert rejected_id in secured.console("/rejected").text

    # A body an older schema refused, valid now: replay sends it through the real worker.
    fixed = message(9021, changes=[{"field": "callback", "oldValue": None, "newValue": secured.sink.url("/replayed")}])

    async def keep_old() -> str:
        client = aioredis.Redis.from_url(secured.config.redis_url or "")
        try:
            return await rejected.keep(client, json.dumps(fixed).encode(), "an older schema", "invalid")
        finally:
            await client.aclose()

    old_id = asyncio.run(keep_old())
    before = len(secured.sink.hits)
    replayed = secured.cli("webhooks", "rejected", "replay", old_id)
    assert replayed.returncode == 0 and "1 event(s) enqueued" in replayed.stdout, replayed.stderr
    secured.wait_until(lambda: len(secured.sink.hits) > before, what="the replayed webhook's action")
    assert secured.sink.hits[-1].path == "/replayed"


def test_5_no_form_of_a_secret_leaves_a_process(secured: Secured) -> None:
    # A Synergist call puts its password in the query string (001, "Authentication"): httpx logs that URL
    # (at DEBUG, as this worker runs; it is left out at INFO).
    assert secured.post(message(9030, entity="invoice", action="created")).status_code == 200
    secured.wait_until(lambda: secured.dead_letter_for(9030) is not None, what="the Synergist dead letter")
    secured.wait_idle()
    worker_log = (secured.tmp / "logs" / "worker.log").read_text(errors="replace")
    assert "jsonapi" in worker_log and "[query omitted]" in worker_log

    texts = {"worker.log": worker_log, "receiver.log": (secured.tmp / "logs" / "receiver.log").read_text("utf-8")}
    texts["traces"] = json.dumps(
        [secured.redis.lrange(k, 0, -1) for k in secured.redis.scan_iter(match="fieldrelay:trace:*")], default=str
    )
    texts["dead letters"] = json.dumps(secured.state.dead_letters())
    texts["sentry"] = b"\n".join(secured.sentry.raw).decode(errors="replace")
    pages = ["/", "/events", "/dead-letters", "/rejected", "/rules", "/targets"]
    event_ids = [k.decode().rsplit(":", 1)[1] for k in secured.redis.scan_iter(match="fieldrelay:trace:*")]
    pages += [f"/events/{event_id}" for event_id in event_ids]
    for page in pages:
        resp = secured.console(page)
        assert resp.status_code == 200, page
        texts[f"console {page}"] = resp.text
    for args in (("dlq", "list", "--json"), ("webhooks", "rejected", "--json")):
        texts[" ".join(args)] = secured.cli(*args).stdout
    dlq_id = secured.dead_letter_for(9030)["id"]  # type: ignore[index]
    texts["dlq show"] = secured.cli("dlq", "show", dlq_id).stdout
    texts["rules explain"] = "\n".join(secured.cli("rules", "explain", e).stdout for e in event_ids[:5])

    forms: dict[str, str] = {}
    for secret in SECRETS:
        forms.update(
            {
                f"{secret} raw": secret,
                f"{secret} quote": quote(secret, safe=""),
                f"{secret} quote_plus": quote_plus(secret),
                f"{secret} upper": secret.upper(),
                f"{secret} reversed": secret[::-1],
                f"{secret} prefix": secret[:12],
                f"{secret} base64": base64.b64encode(secret.encode()).decode(),
            }
        )
    forms["synchroteam basic"] = base64.b64encode(f"sandbox:{SANDBOX_SYNCHROTEAM_KEY}".encode()).decode()
    leaks = [(where, name) for where, text in texts.items() for name, form in forms.items() if form in text]
    assert leaks == []
