"""The action registry: every name a rule's ``then:`` may call, with its parameter model."""

from __future__ import annotations

from workers.actions import http, servicetrade, synchroteam, synergist
from workers.actions.context import (
    ActionContext,
    ActionSpec,
    Clients,
    LinkStore,
    MemoryLinkStore,
)

__all__ = [
    "ACTIONS",
    "ActionContext",
    "ActionSpec",
    "Clients",
    "LinkStore",
    "MemoryLinkStore",
    "action_params",
]


def _index(*groups: list[ActionSpec]) -> dict[str, ActionSpec]:
    actions: dict[str, ActionSpec] = {}
    for spec in (s for group in groups for s in group):
        if spec.name in actions:
            raise RuntimeError(f"action {spec.name!r} registered twice")
        actions[spec.name] = spec
    return dict(sorted(actions.items()))


ACTIONS: dict[str, ActionSpec] = _index(synchroteam.SPECS, synergist.SPECS, servicetrade.SPECS, http.SPECS)


def action_params() -> dict[str, type]:
    """Action name -> parameter model, the mapping ``rules.load_rules`` takes."""
    return {name: spec.params for name, spec in ACTIONS.items()}
