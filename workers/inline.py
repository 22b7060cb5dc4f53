"""Which first action an event's task runs itself, instead of enqueueing it for a second hop.

A matched rule's first action runs inline when its target's queue is one this worker consumes and
the target is not paced (its gate never makes a call wait its turn): the hop would only add a
message, a take and an ack. Everything else keeps its target's queue. The inline action is the
same step a `run_action` task runs (ledger, step lock, intents, gate, retry policy), owned by the
event's task, whose message is acknowledged only once that step is done: a worker killed meanwhile
has the event redelivered, and the run's same start (workers/runs.py) runs the step again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from fieldrelay.targets import TargetLimits
from workers.runtime import EnqueueAction


def inline_queues(targets: Mapping[str, TargetLimits], consumed: Collection[str]) -> frozenset[str]:
    """The action queues whose first actions may run inline: consumed here, and of an unpaced target."""
    return frozenset(t.queue for t in targets.values() if t.rate <= 0 and t.queue in consumed)


@dataclass
class FirstAction:
    """Takes the first action of the first run an event starts on an inline queue; enqueues any other.

    >>> first = FirstAction(frozenset({"actions.http"}), send)        # doctest: +SKIP
    >>> pipeline.process_event(event, task_id, rt, start=first)      # doctest: +SKIP
    >>> first.taken                                                  # doctest: +SKIP
    ('ab12…', 'd07d…', 'actions.http')
    """

    queues: frozenset[str]
    enqueue: EnqueueAction
    taken: tuple[str, str, str] | None = None  # (event id, rule digest, queue)
    event: dict[str, Any] | None = None  # the event as saved, when the task saved it

    def would_take(self, queue: str) -> bool:
        """Whether a first action on `queue` started now would run inline."""
        return self.taken is None and queue in self.queues

    def __call__(self, event_id: str, digest: str, index: int, queue: str) -> None:
        if index == 0 and self.would_take(queue):
            self.taken = (event_id, digest, queue)
        else:
            self.enqueue(event_id, digest, index, queue)

    def release(self) -> None:
        """The event's step did not complete: enqueue what was taken, as if it never ran inline."""
        if self.taken is not None:
            event_id, digest, queue = self.taken
            self.taken = None
            self.enqueue(event_id, digest, 0, queue)
