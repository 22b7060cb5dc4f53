"""What every source adapter yields: one listed record with its id, times and deletion flag."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Record:
    """A record as listed; `modified_at`/`created_at` are Unix seconds, None where the API has none."""

    id: int | str
    data: Mapping[str, Any]  # the record as its connector returned it (its API's TypedDict)
    modified_at: int | None
    created_at: int | None = None
    deleted: bool = False
    uri: str | None = None


class Source(Protocol):
    """One (system, entity type) list, read through its connector.

    `fetch(since, full, mark)` yields the records modified at or after `since` (Unix seconds), or every
    record when `full`; `full_only` sources (no modification filter) always list everything. After each
    page it sets `progress`, which a later `fetch` takes as `mark` to go on from there. `recheck(id)`
    answers for a record missing from a complete full scan: None when it is gone, else its current state.
    """

    system: str
    entity: str
    full_only: bool
    reconcile: bool  # webhooks cover this source too: skip what they already delivered
    verify_filter: bool  # the modification filter is undocumented: distrust it once it lets an old row through
    progress: dict[str, Any] | None  # where the listing stands: a `mark` for the next fetch

    def clock(self) -> int: ...

    def fetch(self, since: int, full: bool, mark: Mapping[str, Any] | None = None) -> Iterator[Record]: ...

    def recheck(self, record_id: int | str) -> Record | None: ...

    def wait_until(self) -> float | None: ...

    def budget(self) -> dict[str, int | None]: ...
