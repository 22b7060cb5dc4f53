"""The rule set in force for a worker process, reloaded when the rules directory changes."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from pydantic import BaseModel

from fieldrelay.state import PipelineState, RulesStatus
from rules import RuleSet, load_rules
from rules.errors import RuleError, RuleLoadError
from rules.files import fingerprint

log = logging.getLogger("fieldrelay.rules")


class RuleBook:
    """Holds the last good `RuleSet`; a broken edit never replaces it.

    >>> book = RuleBook(Path("rules/examples"), action_params)   # doctest: +SKIP
    >>> book.current().rules[0].name                             # doctest: +SKIP
    'completed-job-to-synchroteam'
    """

    def __init__(
        self,
        directory: Path,
        action_params: Mapping[str, type[BaseModel]],
        *,
        check_every: float = 1.0,
        on_reload: Callable[[RuleBook], None] | None = None,
        env_names: Collection[str] | None = None,
    ) -> None:
        self.directory = directory
        self.action_params = action_params
        self.check_every = check_every
        self.on_reload = on_reload
        self.env_names = env_names  # the names `!secret` may use (FIELDRELAY_RULES_ENV)
        self.last_error: RuleLoadError | None = None
        self.loaded_at = 0.0
        self._lock = threading.Lock()
        self._checked = 0.0
        self._fingerprint: object = fingerprint(directory)
        self._rules = load_rules(directory, action_params, env_names=env_names)  # at start-up a broken set is fatal
        self.loaded_at = time.time()

    def current(self) -> RuleSet:
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            with self._lock:
                self._checked = now
                try:
                    seen: object = fingerprint(self.directory)
                except OSError as exc:  # the directory went away: the reload below reports it
                    seen = ("unreadable", str(exc))
                if seen != self._fingerprint:
                    self._fingerprint = seen
                    self._reload()
        return self._rules

    def _reload(self) -> None:
        try:
            self._rules = load_rules(self.directory, self.action_params, env_names=self.env_names)
        except Exception as exc:  # whatever breaks a reload, the last good set stays in force
            self.last_error = exc if isinstance(exc, RuleLoadError) else unexpected_load_error(self.directory, exc)
            log.error("rules reload failed, keeping the last good set:\n%s", self.last_error)
        else:
            self.last_error = None
            self.loaded_at = time.time()
            log.info("rules reloaded: %d rules", len(self._rules.rules))
        if self.on_reload is not None:
            self.on_reload(self)

    def status(self) -> RulesStatus:
        """What `/readyz` and operators see: the set in force and the last reload's errors."""
        return {
            "ok": self.last_error is None,
            "rules": len(self._rules.rules),
            "digest": self._rules.digest,
            "loaded_at": self.loaded_at,
            "errors": [str(e) for e in self.last_error.errors] if self.last_error else [],
        }


def publish_status(state: PipelineState, book: RuleBook, alert: Callable[[str, Mapping[str, str]], None]) -> None:
    """Share the rule set's health with `/readyz` and operators; a broken reload alerts once per error set."""
    status = book.status()
    state.publish_rules_status(status)
    if status["errors"]:
        text = "\n".join(status["errors"])
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        if state.first_alert(f"rules:{digest}", ttl=86400):
            alert(f"rules reload failed; the last good set stays in force:\n{text}", {"alert": "rules"})


def unexpected_load_error(directory: Path, exc: BaseException) -> RuleLoadError:
    """A reload that raised something other than a rule error, as one error operators can read."""
    message = f"could not be loaded: {type(exc).__name__}: {exc}"
    return RuleLoadError([RuleError(str(directory), 1, 1, "<rules>", message)])
