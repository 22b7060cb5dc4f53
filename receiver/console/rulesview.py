"""The rules as the console sees them: loaded from the rules directory, reloaded when it changes."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from receiver.console.dryrun import run_bounded
from rules import RuleSet, load_rules
from rules.errors import RuleLoadError
from rules.files import fingerprint


class RulesView:
    """The last good rule set, when it loaded, and the errors of the newest attempt (if it failed).

    Workers reload the same directory on their own (workers.rulebook); on one host, or with the
    directory shared, what this shows is what they run. `actions` is the workers' action catalog
    (name -> parameter model), handed in by whoever assembles the receiver process. `synchroteam_zone`
    (FIELDRELAY_SYNCHROTEAM_TIMEZONE) is the zone the dry run renders Synchroteam dates in.
    """

    def __init__(self, directory: Path, actions: Mapping[str, type[BaseModel]], synchroteam_zone: str = "UTC") -> None:
        self.directory = directory
        self.synchroteam_zone = synchroteam_zone
        self.actions = actions  # the action catalog: each action's parameter model
        self.ruleset: RuleSet | None = None
        self.loaded_at: float | None = None
        self.checked_at: float | None = None
        self.errors: list[str] = []
        self._seen: Any = None
        self._lock = threading.Lock()

    def current(self) -> RulesView:
        with self._lock:
            try:
                seen = fingerprint(self.directory)
            except OSError as exc:
                self.errors = [f"{self.directory}: {exc}"]
                return self
            self.checked_at = time.time()
            if seen != self._seen:
                self._seen = seen
                try:
                    self.ruleset = load_rules(self.directory, self.actions)
                except RuleLoadError as exc:
                    self.errors = [str(e) for e in exc.errors]
                except Exception as exc:  # the last good set stays shown, with what went wrong
                    self.errors = [f"{self.directory}: could not be loaded: {type(exc).__name__}: {exc}"]
                else:
                    self.errors, self.loaded_at = [], time.time()
        return self

    def dry_run(self, event_text: str, entity_text: str) -> str:
        """`rules.dryrun.explain` for a webhook message or a normalized event (JSON), as text, computed in
        a bounded child process (receiver/console/dryrun.py)."""
        ruleset = self.current().ruleset
        if ruleset is None:
            return "no rule set is loaded (see the errors above)"
        return run_bounded(ruleset, event_text, entity_text, self.synchroteam_zone)
