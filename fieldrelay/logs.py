"""Structured logs: one JSON object per line, with `event_id` and `rule` when known, secrets masked.

`FIELDRELAY_LOG_FORMAT=text` writes the same records as one readable line each, for a person at a
terminal; JSON is the default, and what `fieldrelay run` writes to `var/logs/`.

`grep '"event_id": "<id>"'` across the receiver's and workers' logs follows one event end to end:
every trace step is logged once (`fieldrelay.trace`, from `fieldrelay.metrics.observe`).

    {"time": "2026-11-22T23:50:01.123Z", "level": "INFO", "logger": "fieldrelay.trace",
     "message": "action.succeeded", "event_id": "9f2c…", "rule": "completed-job-to-synchroteam", …}
"""

from __future__ import annotations

import io
import logging
import logging.config
import sys
import time
import traceback
from types import TracebackType
from typing import Any

import orjson

from fieldrelay.redaction import Redactor, redactor_for
from fieldrelay.settings import Settings, load_settings

# Set (as `extra={PRE_REDACTED: redactor.sameness}`) on a record whose message and extras that redactor
# redacted already, a trace entry's: a formatter whose redactor masks the same would find nothing more.
PRE_REDACTED = "_fieldrelay_redacted"
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
        if getattr(record, PRE_REDACTED, None) == self.redactor.sameness and "exception" not in out:
            return orjson.dumps(out, default=str).decode()
        return self.redactor.dumps(out).decode()


class TextFormatter(JsonFormatter):
    """The same record as one readable line: `12:00:01 INFO fieldrelay.trace: action.started event_id=ab12`.

    >>> record = logging.makeLogRecord({"msg": "token=s3cret-token", "event_id": "ab12", "name": "x"})
    >>> TextFormatter(Redactor(["s3cret-token"])).format(record)[13:]
    'INFO x: token=[redacted] event_id=ab12'
    """

    def format(self, record: logging.LogRecord) -> str:
        out = orjson.loads(super().format(record))
        head = f"{out.pop('time')[11:23]} {out.pop('level')} {out.pop('logger')}: {out.pop('message')}"
        exception = out.pop("exception", None)
        extras = " ".join(f"{k}={v if isinstance(v, str) else orjson.dumps(v).decode()}" for k, v in out.items())
        line = f"{head} {extras}" if extras else head
        return f"{line}\n{exception}" if exception else line


FORMATTERS: dict[str, type[JsonFormatter]] = {"json": JsonFormatter, "text": TextFormatter}


def logging_config(settings: Settings | None = None, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping: one format to stderr for our loggers, uvicorn's and Celery's.

    The format is `settings.log_format` (json or text). uvicorn applies the mapping in each of its
    worker processes (`uvicorn.run(log_config=...)`).
    """
    kind = settings.log_format if settings is not None else _format_from_environment()
    formatter: dict[str, Any] = {"()": FORMATTERS[kind]}
    if settings is not None:
        formatter["redactor"] = redactor_for(settings)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"fieldrelay": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "fieldrelay", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's own handlers print plain text; route them through the root instead.
            **{
                name: {"handlers": [], "propagate": True, "level": level}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")
            },
            # httpx writes a line per request at INFO, and Celery one per task that succeeded: every action
            # call and every task's work is a trace step's line already (action.started, then succeeded or
            # failed), and the duplicates cost a worker about a tenth of its CPU (README, Performance).
            # Celery's "received" line stays (a message taken), as do its failures (ERROR); fieldrelay retries
            # its steps itself (the trace's retry steps), not through Celery.
            **{name: {"level": _quieter(level)} for name in ("httpx", "httpcore", "celery.app.trace")},
        },
    }


def _quieter(level: str) -> str:
    """WARNING, or `level` if it is higher (a DEBUG run still sees every request)."""
    number = logging.getLevelName(level.upper())
    if isinstance(number, int) and (number < logging.INFO or number > logging.WARNING):
        return level
    return "WARNING"


def _format_from_environment() -> str:
    try:
        return load_settings().log_format
    except Exception:  # an invalid setting is reported by the command that loads the settings
        return "json"


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("fieldrelay.uncaught").critical("uncaught %s", kind.__name__, exc_info=(kind, exc, tb))


def setup_logging(settings: Settings | None = None, level: str = "INFO") -> None:
    """Every record of this process in one format, Python's warnings and uncaught exceptions included."""
    logging.config.dictConfig(logging_config(settings, level))
    # Neither format writes the caller's file and line, nor thread or process names: not worked out per
    # record (the logging HOWTO's "Optimization"; finding the caller walked the stack for every record).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.captureWarnings(True)  # warnings.warn (Celery's SecurityWarning as root, say) -> logger py.warnings
    sys.excepthook = _log_uncaught


class OutageLog:
    """An outage is logged twice, when it starts and when it ends; never once per failed attempt.

    >>> outage = OutageLog(log, "delayed tasks are not moving", "delayed tasks are moving again")  # doctest: +SKIP
    >>> outage.failed(exc)   # the first failure logs `down`, with the error; the next ones only count
    >>> outage.recovered()   # logs `up` with the count, once
    """

    def __init__(self, logger: logging.Logger, down: str, up: str, *, level: int = logging.WARNING) -> None:
        self.logger, self.down, self.up, self.level = logger, down, up, level
        self.failures = 0

    def failed(self, error: object) -> int:
        """Count one failed attempt; returns how many in a row."""
        self.failures += 1
        if self.failures == 1:
            self.logger.log(self.level, "%s: %s", self.down, error)
        return self.failures

    def recovered(self) -> None:
        if self.failures:
            self.logger.info("%s (after %d failed attempts)", self.up, self.failures)
            self.failures = 0


class PrintsToLog(io.TextIOBase):
    """A stand-in for stdout that turns each printed line into a log record (logger `stdout`).

    Celery prints some lines itself, straight to `sys.__stdout__`: "worker: Warm shutdown
    (MainProcess)" on SIGTERM, for one. In the worker and beat, those become records like any other.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self.logger.info(line.strip())
        return len(text)

    def flush(self) -> None:
        if self._partial.strip():
            self.logger.info(self._partial.strip())
        self._partial = ""

    def isatty(self) -> bool:
        return False


def capture_prints() -> None:
    """Route this process's prints (Python's `sys.stdout` and `sys.__stdout__`) through logging.

    For the worker and beat only: commands that print their results (`fieldrelay dlq list`) keep stdout.
    """
    capture = PrintsToLog(logging.getLogger("stdout"))
    for name in ("stdout", "__stdout__"):  # Celery prints to `sys.__stdout__`, looked up when it prints
        setattr(sys, name, capture)
