"""Structured logs (one redacted JSON line per step) and Sentry: `before_send` redaction and Crons check-ins."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from fieldrelay.logs import JsonFormatter, TextFormatter, logging_config
from fieldrelay.redaction import Redactor
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.steps import Step
from tests.sentry_server import SentryCapture

ROOT = Path(__file__).parents[2]
SECRET = "synchro-secret-0001"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter(Redactor([SECRET])))
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def lines():
    handler = Lines()
    logger = logging.getLogger("fieldrelay")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_a_record_is_one_json_line_with_extras_and_no_secrets(lines):
    log = logging.getLogger("fieldrelay.test")
    try:
        raise RuntimeError(f"refused key {SECRET}")
    except RuntimeError:
        log.exception(
            "call failed: %s",
            SECRET,
            extra={"event_id": "ab12", "rule": "mirror", "headers": {"Authorization": "Basic xyz"}},
        )
    [line] = lines
    assert line["message"] == "call failed: [redacted]"
    assert line["event_id"] == "ab12" and line["rule"] == "mirror" and line["level"] == "ERROR"
    assert line["headers"] == {"Authorization": "[redacted]"}
    assert "RuntimeError: refused key [redacted]" in line["exception"]
    assert SECRET not in json.dumps(line)


def test_every_trace_step_logs_one_line_with_event_and_rule(lines, redis_client):
    state = PipelineState(redis_client)
    state.trace("ev1", Step.RULE_MATCHED, rule="mirror", reason="")
    state.trace(
        "ev1",
        Step.ACTION_STARTED,
        rule="mirror",
        index=0,
        action="synchroteam.job.upsert",
        params={"myId": "st-1", "note": SECRET},
    )
    steps = [line for line in lines if line["logger"] == "fieldrelay.trace"]
    assert [(s["message"], s["event_id"], s["rule"]) for s in steps] == [
        ("rule.matched", "ev1", "mirror"),
        ("action.started", "ev1", "mirror"),
    ]
    assert steps[1]["params"] == {"myId": "st-1", "note": "[redacted]"}


def test_the_logging_config_travels_to_uvicorn_workers():
    config = logging_config(Settings(synchroteam_api_key=SECRET))
    assert pickle.loads(pickle.dumps(config))["formatters"]["fieldrelay"]["redactor"].text(SECRET) == "[redacted]"


SENTRY_SCRIPT = """
import sys, sentry_sdk
from fieldrelay.observability import init_sentry
from fieldrelay.settings import Settings
settings = Settings(sentry_dsn=sys.argv[1], synchroteam_api_key="synchro-secret-0001",
                    webhook_tokens="hook-secret-0002", sentry_environment="test")
assert init_sentry(settings, "worker")
sentry_sdk.set_context("call", {"url": "https://x/?token=hook-secret-0002", "password": "pw-0003-longer"})
try:
    raise RuntimeError("Synchroteam refused key synchro-secret-0001")
except RuntimeError as exc:
    sentry_sdk.capture_exception(exc)
sentry_sdk.flush(5)
"""


def test_before_send_masks_secrets_in_sentry_events():
    with SentryCapture() as sentry:
        subprocess.run([sys.executable, "-c", SENTRY_SCRIPT, sentry.dsn], cwd=ROOT, check=True, timeout=60)
    [event] = sentry.events()
    raw = b"\n".join(sentry.raw).decode()
    for secret in ("synchro-secret-0001", "hook-secret-0002", "pw-0003-longer"):
        assert secret not in raw
    assert event["exception"]["values"][0]["value"] == "Synchroteam refused key [redacted]"
    assert event["contexts"]["call"] == {"url": "https://x/?token=[redacted]", "password": "[redacted]"}
    assert event["environment"] == "test" and event["release"].startswith("fieldrelay@")


BEAT_SCRIPT = """
from celery import signals
from celery.beat import Scheduler
from workers.celery_app import app

app.loader.init_worker()  # what `celery beat` does first: import the task and signal modules (Beat.run)
signals.beat_init.send(sender=None)  # what it sends once its scheduler starts
scheduler = Scheduler(app, lazy=True)
scheduler.setup_schedule()
entry = scheduler.schedule["poll servicetrade.job"]
with app.producer_or_acquire() as producer:
    scheduler.apply_entry(entry, producer=producer)
import sentry_sdk
sentry_sdk.flush(5)
"""


@pytest.mark.e2e
@pytest.mark.slow
def test_beat_schedules_check_in_to_sentry_crons(redis_server, tmp_path):
    """A poll scheduled by beat checks in to Sentry Crons when sent (beat) and when done (worker).

    Beat's own loop waits a whole interval (Sentry Crons needs at least a minute) before the first
    run, so the beat side runs Celery's `Scheduler.apply_entry` directly, after the `beat_init`
    signal that `fieldrelay beat` sends; a real worker runs the poll.
    """
    from fieldrelay_cli.devstack import Stack, StackConfig
    from fieldrelay_cli.embedded_redis import free_port

    redis.Redis.from_url(redis_server).flushdb()
    with SentryCapture() as sentry:
        config = StackConfig(
            data_dir=tmp_path,
            redis_url=redis_server,
            receiver_port=free_port(),
            servicetrade_port=free_port(),
            synchroteam_port=free_port(),
            synergist_port=free_port(),
            webhook_tokens="crons-token",
            rules_dir=ROOT / "rules" / "examples",
            worker_concurrency=1,
            log_dir=tmp_path / "logs",
            extra_env={
                "FIELDRELAY_SENTRY_DSN": sentry.dsn,
                "FIELDRELAY_SENTRY_ENVIRONMENT": "e2e",
                "FIELDRELAY_POLL_SOURCES": "servicetrade",
                "FIELDRELAY_POLL_INTERVAL": "60",
            },
        )
        with Stack(config) as stack:
            stack.start_redis()
            stack.start_sandbox()
            stack.start_worker()
            subprocess.run([sys.executable, "-c", BEAT_SCRIPT], cwd=ROOT, env=config.env(), check=True, timeout=60)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                check_ins = [i for i in sentry.items() if "monitor_slug" in i]
                if any(c["status"] != "in_progress" for c in check_ins):
                    break
                time.sleep(0.2)
    started = [c for c in check_ins if c["status"] == "in_progress"]
    finished = [c for c in check_ins if c["status"] != "in_progress"]
    assert [c["monitor_slug"] for c in started] == ["poll servicetrade.job"]
    assert started[0]["monitor_config"]["schedule"] == {"type": "interval", "value": 1, "unit": "minute"}
    assert [(c["status"], c["check_in_id"]) for c in finished] == [("ok", started[0]["check_in_id"])]
    assert all(c["environment"] == "e2e" for c in check_ins)


LOGGING_SCRIPT = """
import logging, warnings
from fieldrelay.logs import setup_logging
setup_logging()
logging.getLogger("fieldrelay.test").info("hello", extra={"event_id": "ab12"})
warnings.warn("a warning from a library", UserWarning)
raise RuntimeError("uncaught, with synchro-secret-0001 in it")
"""


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_warnings_and_uncaught_exceptions_go_through_the_one_format(fmt):
    """Celery's root SecurityWarning and a crash's traceback were plain text in worker.log."""
    env = {"FIELDRELAY_LOG_FORMAT": fmt, "FIELDRELAY_SYNCHROTEAM_API_KEY": SECRET, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and result.stdout == ""
    assert SECRET not in result.stderr
    if fmt == "json":
        records = [json.loads(line) for line in result.stderr.splitlines()]
        assert [(r["level"], r["logger"]) for r in records] == [
            ("INFO", "fieldrelay.test"),
            ("WARNING", "py.warnings"),
            ("CRITICAL", "fieldrelay.uncaught"),
        ]
        assert records[0]["event_id"] == "ab12"
        assert "UserWarning: a warning from a library" in records[1]["message"]
        assert "RuntimeError: uncaught, with [redacted] in it" in records[2]["exception"]
    else:
        first, second = result.stderr.splitlines()[:2]
        assert first[12:] == " INFO fieldrelay.test: hello event_id=ab12"
        assert " WARNING py.warnings: " in second
        assert "RuntimeError: uncaught, with [redacted] in it" in result.stderr


def test_the_text_format_is_one_readable_line_per_record():
    formatter = TextFormatter(Redactor([SECRET]))
    record = logging.makeLogRecord(
        {"name": "fieldrelay.trace", "msg": "action.started", "levelname": "INFO", "created": 0.5, "msecs": 500.0}
    )
    record.event_id, record.params = "ab12", {"key": SECRET}
    assert formatter.format(record) == (
        '00:00:00.500 INFO fieldrelay.trace: action.started event_id=ab12 params={"key":"[redacted]"}'
    )


@pytest.mark.parametrize(("level", "httpx_level"), [("INFO", "WARNING"), ("DEBUG", "DEBUG"), ("ERROR", "ERROR")])
def test_httpx_and_celery_success_lines_are_left_to_the_trace_unless_debugging(level, httpx_level):
    loggers = logging_config(Settings(), level)["loggers"]
    assert loggers["httpx"]["level"] == loggers["httpcore"]["level"] == httpx_level
    assert loggers["celery.app.trace"]["level"] == httpx_level  # "Task ... succeeded in ..."
    assert "celery.worker.strategy" not in loggers  # "Task ... received" stays at the worker's level


def test_a_prepared_entry_is_logged_only_once_its_script_granted_it(lines, redis_client):
    state = PipelineState(redis_client)
    words, log_started = state.prepared_trace("ev1", Step.ACTION_STARTED, rule="mirror", index=0, action="a.b")
    assert words and not [line for line in lines if line["logger"] == "fieldrelay.trace"]
    log_started()
    [line] = [line for line in lines if line["logger"] == "fieldrelay.trace"]
    assert (line["message"], line["event_id"], line["rule"]) == ("action.started", "ev1", "mirror")
