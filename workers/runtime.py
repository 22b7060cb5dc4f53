"""What the pipeline runs with in a worker process, and how one is wired from the settings.

One `Runtime` per process (`workers.process`): its clients keep their sessions (ServiceTrade's
PHPSESSID) across tasks, and its rulebook reloads the rules directory when it changes. Tests
build one around a real Redis, with fakes where they need them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import redis

from fieldrelay.entitystate import migrate_legacy_state
from fieldrelay.redaction import redactor_for
from fieldrelay.settings import Settings
from fieldrelay.state import PipelineState
from fieldrelay.targets import TargetLimits, target_limits
from rules.engine import allowed_env
from rules.helpers import use_synchroteam_zone
from workers.actions.context import Clients
from workers.actions.registry import action_params
from workers.alerts import alert
from workers.clients import SettingsClients
from workers.connectors.errors import RateInfo
from workers.delayed import DelayedTasks
from workers.echo import EchoGuard
from workers.gate import TargetGate
from workers.intents import Intents, MemoryIntents, RedisIntents
from workers.rulebook import RuleBook, publish_status
from workers.runs import RunCoordinator

# (event_id, rule digest, action index, queue)
EnqueueAction = Callable[[str, str, int, str], None]
# (task name, args, queue, delay): the restart-safe delayed queue, never an ETA task
Schedule = Callable[[str, list[object], str, float], None]
Alert = Callable[[str, Mapping[str, str]], None]


def _no_alert(message: str, tags: Mapping[str, str]) -> None:
    pass


@dataclass
class Runtime:
    """What the pipeline needs from its worker process."""

    state: PipelineState
    clients: Clients
    rulebook: RuleBook
    enqueue_action: EnqueueAction
    gate: TargetGate
    runs: RunCoordinator
    echoes: EchoGuard
    schedule: Schedule
    targets: Mapping[str, TargetLimits]
    alert: Alert = _no_alert
    env: dict[str, str] = field(default_factory=dict)  # the allowlisted variables rules may read
    clock_skew: int = 300  # seconds a record's modification time may be ahead of ours (FIELDRELAY_CLOCK_SKEW)
    intents: Intents = field(default_factory=MemoryIntents)  # creates without a natural key (workers/intents.py)

    recorded: dict[str, RateInfo] = field(default_factory=dict)  # the last rate info stored per target

    def queue_for(self, target: str) -> str:
        return self.targets[target].queue

    def record_rates(self) -> None:
        """Store the rate budget and quota each target last reported (for `target status`, the console)."""
        for name, limits in self.targets.items():
            rate = self.clients.last_rate(name) if limits.rate_headers else None
            if rate is not None and rate is not self.recorded.get(name):
                self.state.record_rate(name, rate)
                self.recorded[name] = rate


def build_runtime(settings: Settings, client: redis.Redis, *, enqueue_action: EnqueueAction) -> Runtime:
    """A worker process's runtime: clients, rules, the shared gate with each target's limits from `settings`."""
    use_synchroteam_zone(settings.synchroteam_timezone)
    state = PipelineState(
        client,
        redactor=redactor_for(settings),
        entity_ttl=settings.entity_state_ttl,
        entity_max_bytes=settings.entity_state_max_bytes,
    )
    targets = target_limits(settings)
    rulebook = RuleBook(
        settings.rules_dir,
        action_params(),
        env_names=settings.rules_env,
        on_reload=lambda book: publish_status(state, book, alert),
    )
    publish_status(state, rulebook, alert)
    migrate_legacy_state(client, state.entities)  # once per Redis: the snapshots and ordering kept before
    delayed = DelayedTasks(client)

    # A task message leaves only after the step's batched writes (the trace entries that led to it).
    def enqueue(event_id: str, digest: str, index: int, queue: str) -> None:
        state.flush()
        enqueue_action(event_id, digest, index, queue)

    def schedule(task: str, args: list[object], queue: str, delay: float) -> None:
        state.flush()
        delayed.schedule(task, args, queue, delay)

    return Runtime(
        state=state,
        clients=SettingsClients(settings),
        rulebook=rulebook,
        enqueue_action=enqueue,
        gate=TargetGate(client, targets),
        runs=RunCoordinator(client),
        echoes=EchoGuard(client),
        schedule=schedule,
        targets=targets,
        alert=alert,
        env=allowed_env(settings.rules_env),
        clock_skew=settings.clock_skew,
        # A read-back waits until an earlier attempt's call can no longer be in flight: its HTTP timeout.
        intents=RedisIntents(client, settle=settings.http_timeout),
    )
