"""The rule set in force for a worker process, reloaded when the rules directory changes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from pydantic import BaseModel

from rules import RuleSet, load_rules
from rules.errors import RuleLoadError

log = logging.getLogger("fieldrelay.rules")


def fingerprint(directory: Path) -> tuple[tuple[str, int, int], ...]:
    files = sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))
    return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)


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
        self._fingerprint = fingerprint(directory)
        self._rules = load_rules(directory, action_params, env_names=env_names)  # at start-up a broken set is fatal
        self.loaded_at = time.time()

    def current(self) -> RuleSet:
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            with self._lock:
                self._checked = now
                seen = fingerprint(self.directory)
                if seen != self._fingerprint:
                    self._fingerprint = seen
                    self._reload()
        return self._rules

    def _reload(self) -> None:
        try:
            self._rules = load_rules(self.directory, self.action_params, env_names=self.env_names)
        except RuleLoadError as exc:
            self.last_error = exc
            log.error("rules reload failed, keeping the last good set:\n%s", exc)
        else:
            self.last_error = None
            self.loaded_at = time.time()
            log.info("rules reloaded: %d rules", len(self._rules.rules))
        if self.on_reload is not None:
            self.on_reload(self)

    def status(self) -> dict[str, object]:
        """What `/readyz` and operators see: the set in force and the last reload's errors."""
        return {
            "ok": self.last_error is None,
            "rules": len(self._rules.rules),
            "digest": self._rules.digest,
            "loaded_at": self.loaded_at,
            "errors": [str(e) for e in self.last_error.errors] if self.last_error else [],
        }
