"""Structured logs: one JSON object per line, with `event_id` and `rule` when known, secrets masked.

`grep '"event_id": "<id>"'` across the receiver's and workers' logs follows one event end to end:
every trace step is logged once (`fieldrelay.trace`, from `fieldrelay.metrics.observe`).

    {"time": "2026-11-22T23:50:01.123Z", "level": "INFO", "logger": "fieldrelay.trace",
     "message": "action.succeeded", "event_id": "9f2c…", "rule": "completed-job-to-synchroteam", …}
"""

from __future__ import annotations

import logging
import logging.config
import time
import traceback
from typing import Any

import orjson

from fieldrelay.redaction import Redactor, redactor_for
from fieldrelay.settings import Settings, load_settings

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """`logging.Formatter` writing one redacted JSON object per record.

    >>> import logging
    >>> record = logging.makeLogRecord({"msg": "token=s3cret-token", "event_id": "ab12", "name": "x"})
    >>> JsonFormatter(Redactor(["s3cret-token"])).format(record)[-78:]
    '"level":"INFO","logger":"x","message":"token=[redacted]","event_id":"ab12"}'
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        if self._redactor is None:  # built from the environment when made by dictConfig in a child
            try:
                self._redactor = redactor_for(load_settings())
            except Exception:
                self._redactor = Redactor([])
        return self._redactor

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname if record.levelname != "Level 20" else "INFO",
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key != "color_message" and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(self.redactor.scrub(out), default=str).decode()


def logging_config(settings: Settings | None = None, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping: JSON to stderr for our loggers, uvicorn's and Celery's.

    uvicorn applies it in each of its worker processes (`uvicorn.run(log_config=...)`).
    """
    formatter: dict[str, Any] = {"()": JsonFormatter}
    if settings is not None:
        formatter["redactor"] = redactor_for(settings)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's own handlers print plain text; route them through the root instead.
            name: {"handlers": [], "propagate": True, "level": level}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")
        },
    }


def setup_logging(settings: Settings | None = None, level: str = "INFO") -> None:
    logging.config.dictConfig(logging_config(settings, level))
