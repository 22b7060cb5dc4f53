"""The worker's Celery signal handlers (workers/signals.py)."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest


@pytest.mark.parametrize(
    ("given", "root", "httpx"),
    [(logging.DEBUG, "DEBUG", "DEBUG"), ("WARNING", "WARNING", "WARNING"), (None, "INFO", "WARNING")],
)
def test_the_worker_logs_at_its_loglevel(monkeypatch, redis_url, given, root, httpx):
    monkeypatch.setenv("FIELDRELAY_REDIS_URL", redis_url)  # the Celery app reads it when first imported
    signals = importlib.import_module("workers.signals")
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # setup_logging replaces it
    before = logging.getLogger().level, logging.getLogger().handlers[:]
    named = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "celery.app.trace")}
    try:
        signals._setup_logging(loglevel=given)
        assert logging.getLevelName(logging.getLogger().level) == root
        assert logging.getLevelName(logging.getLogger("httpx").level) == httpx
    finally:
        for name, level in named.items():  # the next tests' caplog sets the root's level only
            logging.getLogger(name).setLevel(level)
        logging.getLogger().setLevel(before[0])
        logging.getLogger().handlers[:] = before[1]
        logging.captureWarnings(False)
