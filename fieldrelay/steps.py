"""The steps of an event's trace: one name per thing that happened to it, shared by every reader.

The pipeline writes them (`PipelineState.trace`), `fieldrelay.metrics` counts them, and the console
and `fieldrelay rules explain` show them. Each reader classifies every step in a table of its own,
and a test fails when a step is missing from one, so a new or renamed step cannot go unseen.
"""

from __future__ import annotations

from enum import StrEnum


class Step(StrEnum):
    """One entry of an event's trace (the value is what is stored and logged)."""

    # An event arrives, or is turned away before the rules see it.
    RECEIVED = "event.received"
    DUPLICATE = "event.duplicate"
    STALE = "event.stale"
    OWN_WRITE = "event.own_write"
    REPLAY_REQUESTED = "event.replay_requested"
    REPLAYED = "event.replayed"
    EVENT_RETRY = "event.retry"
    EVENT_FAILED = "event.failed"
    # The rules' verdicts.
    NO_RULES = "rules.none"
    RULE_MATCHED = "rule.matched"
    RULE_SKIPPED = "rule.skipped"
    # A matched rule's run: when it starts (mode, debounce).
    RUN_STARTED = "run.started"
    RUN_DEBOUNCED = "run.debounced"
    RUN_WAITING = "run.waiting"
    # Each action of a run.
    ACTION_STARTED = "action.started"
    ACTION_DEFERRED = "action.deferred"
    ACTION_RETRY = "action.retry"
    ACTION_SUCCEEDED = "action.succeeded"
    ACTION_FAILED = "action.failed"
    ON_FAILURE_FAILED = "on_failure.failed"
    # What an operator did about a dead letter.
    DLQ_RETRIED = "dlq.retried"
    DLQ_DROPPED = "dlq.dropped"


# Steps after which a person has to look: their traces are kept for the failure retention.
FAILURES = frozenset({Step.EVENT_FAILED, Step.ACTION_FAILED})
