"""Which actions a task runs itself, instead of enqueueing each for a hop of its own.

A matched rule's first action runs inline when its target's queue is one this worker consumes and
the target is not paced (its gate never makes a call wait its turn): the hop would only add a
message, a take and an ack. So does the action after a step a task just ran, up to `CHAIN` steps
in one task (a run of `http.request` calls, or one after a Synchroteam upsert). Everything else
keeps its target's queue. An inline action is the same step a `run_action` task runs (ledger, step
lock, intents, gate, retry policy), owned by the task that runs it, whose message is acknowledged
only once that step is done: a worker killed meanwhile has the task redelivered; an event's run
starts again as the same run (workers/runs.py), an action task finds its own step done in the
ledger, and either takes the next step inline again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from fieldrelay.targets import TargetLimits
from workers.runtime import EnqueueAction

# Steps one task runs inline after the step it was sent for: a long run still makes progress in tasks
# well within the task time limit, each step's ledger written at its end.
CHAIN = 8


def inline_queues(targets: Mapping[str, TargetLimits], consumed: Collection[str]) -> frozenset[str]:
    """The action queues whose first actions may run inline: consumed here, and of an unpaced target."""
    return frozenset(t.queue for t in targets.values() if t.rate <= 0 and t.queue in consumed)


@dataclass
class InlineAction:
    """Takes the action at `index` (a run's first; or the one after a step a task just ran) when its queue is
    an inline one, once; enqueues any other.

    >>> first = InlineAction(frozenset({"actions.http"}), send)        # doctest: +SKIP
    >>> pipeline.process_event(event, task_id, rt, start=first)      # doctest: +SKIP
    >>> first.taken                                                  # doctest: +SKIP
    ('ab12…', 'd07d…', 'actions.http')
    """

    queues: frozenset[str]
    enqueue: EnqueueAction
    index: int = 0
    taken: tuple[str, str, str] | None = None  # (event id, rule digest, queue)

    def would_take(self, queue: str) -> bool:
        """Whether the action at `index` on `queue`, started now, would run inline."""
        return self.taken is None and queue in self.queues

    def __call__(self, event_id: str, digest: str, index: int, queue: str) -> None:
        if index == self.index and self.would_take(queue):
            self.taken = (event_id, digest, queue)
        else:
            self.enqueue(event_id, digest, index, queue)

    def release(self) -> None:
        """The task's step did not complete: enqueue what was taken, as if it never ran inline."""
        if self.taken is not None:
            event_id, digest, queue = self.taken
            self.taken = None
            self.enqueue(event_id, digest, self.index, queue)
