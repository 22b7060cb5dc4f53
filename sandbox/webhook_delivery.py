"""ServiceTrade-style webhook delivery with test controls for duplicates, reordering and loss."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

Delivery = tuple[str, dict[str, Any]]


@dataclass
class Change:
    """One `data[]` item of a webhook message before it is addressed to a hook."""

    action: str
    type: str
    id: int
    timestamp: int
    changeset: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DeliveryControls:
    """Knobs tests turn through `PUT /_sandbox/webhook/controls`.

    `duplicates` sends each message that many times; `shuffle` reorders items and messages;
    `drop_next` silently loses the next N deliveries and `drop_rate` a random share of them;
    `hold` queues messages until `POST /_sandbox/webhook/flush`.
    """

    duplicates: int = 1
    shuffle: bool = False
    drop_next: int = 0
    drop_rate: float = 0.0
    hold: bool = False
    auto_confirm: bool = True
    # Which reading of the doc's tracked-field list `updated` items follow: "sample" or "documented"
    # (see sandbox.servicetrade_store.CHANGESET_READINGS).
    changesets: str = "sample"
    # The docs give the 5 s answer window and 3 attempts; the pause between attempts is ours.
    timeout: float = 5.0
    attempts: int = 3
    retry_delay: float = 0.5
    seed: int | None = None

    def update(self, values: dict[str, Any]) -> None:
        unknown = set(values) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown controls: {sorted(unknown)}")
        if values.get("changesets", self.changesets) not in ("sample", "documented"):
            raise ValueError("changesets must be 'sample' or 'documented'")
        for key, value in values.items():
            setattr(self, key, value)


class WebhookDispatcher:
    """Builds the documented messages and posts them; every attempt lands in `log`."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.controls = DeliveryControls()
        self.log: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.probes: deque[dict[str, Any]] = deque(maxlen=1_000)  # confirmation probes, apart from deliveries
        self.held: list[Delivery] = []
        self._rng = random.Random()
        self._lock = threading.Lock()
        # Tests may swap in an httpx.MockTransport; by default messages go over the network.
        self.transport: httpx.AsyncBaseTransport | None = None

    def reset(self) -> None:
        self.controls = DeliveryControls()
        self.log.clear()
        self.probes.clear()
        self.held.clear()

    def set_controls(self, values: dict[str, Any]) -> None:
        self.controls.update(values)
        if "seed" in values:
            self._rng = random.Random(self.controls.seed)

    def address(self, changes: list[Change], hooks: list[dict[str, Any]], base: str) -> list[Delivery]:
        """One message id for the change batch; each hook gets its own copy (changesets differ)."""
        if not changes or not hooks:
            return []
        message_id = str(uuid.uuid4())
        sent_at = str(int(self.clock()))
        deliveries = []
        for hook in hooks:
            items = []
            for change in changes:
                item: dict[str, Any] = {
                    "action": change.action,
                    "timestamp": change.timestamp,
                    "entity": {
                        "type": change.type,
                        "id": change.id,
                        "uri": f"{base}/{change.type}/{change.id}",
                    },
                }
                if change.action == "updated" and hook["includeChangesets"]:
                    item["changeset"] = list(change.changeset)
                items.append(item)
            deliveries.append((hook["hookUrl"], {"messageId": message_id, "timestamp": sent_at, "data": items}))
        if self.controls.hold:
            with self._lock:
                self.held.extend(deliveries)
            return []
        return deliveries

    def release(self) -> list[Delivery]:
        with self._lock:
            held, self.held = self.held, []
        return held

    def _plan(self, deliveries: list[Delivery]) -> list[Delivery]:
        planned = [d for d in deliveries for _ in range(max(1, self.controls.duplicates))]
        if self.controls.shuffle:
            self._rng.shuffle(planned)
            for _, message in planned:
                self._rng.shuffle(message["data"])
        return planned

    def _should_drop(self) -> bool:
        with self._lock:
            if self.controls.drop_next > 0:
                self.controls.drop_next -= 1
                return True
        return self.controls.drop_rate > 0 and self._rng.random() < self.controls.drop_rate

    async def send(self, deliveries: list[Delivery]) -> None:
        """Post each delivery, retrying on 5xx, timeouts and network errors, then give up."""
        if not deliveries:
            return
        controls = self.controls
        async with httpx.AsyncClient(timeout=controls.timeout, transport=self.transport) as client:
            for url, message in self._plan(deliveries):
                if self._should_drop():
                    self.log.append(
                        {
                            "url": url,
                            "messageId": message["messageId"],
                            "attempt": 0,
                            "outcome": "dropped",
                            "message": message,
                        }
                    )
                    continue
                for attempt in range(1, controls.attempts + 1):
                    entry: dict[str, Any] = {
                        "url": url,
                        "messageId": message["messageId"],
                        "attempt": attempt,
                        "message": message,
                    }
                    try:
                        response = await client.post(url, json=message)
                    except httpx.HTTPError as exc:
                        entry.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
                    else:
                        ok = 200 <= response.status_code < 500
                        entry.update(outcome="delivered" if ok else "failed", status=response.status_code)
                    self.log.append(entry)
                    if entry["outcome"] == "delivered":
                        break
                    if attempt < controls.attempts:
                        await asyncio.sleep(controls.retry_delay)
                else:
                    self.log.append(
                        {
                            "url": url,
                            "messageId": message["messageId"],
                            "attempt": controls.attempts,
                            "outcome": "discarded",
                            "message": message,
                        }
                    )

    async def meets_requirements(self, url: str) -> bool:
        """Seed 002, "Webhook Requirements" (which "Confirmation" says a hook must meet): the URL must "Accept
        HTTP POST requests" and "Respond with HTTP status code between 200-499" within 5 seconds. The probe is
        a message with no entities; how ServiceTrade really checks is not documented."""
        probe = {"messageId": f"confirm-{uuid.uuid4()}", "timestamp": str(int(self.clock())), "data": []}
        try:
            async with httpx.AsyncClient(timeout=self.controls.timeout, transport=self.transport) as client:
                response = await client.post(url, json=probe)
        except httpx.HTTPError as exc:
            self.probes.append({"url": url, "outcome": "unconfirmed", "error": f"{type(exc).__name__}: {exc}"})
            return False
        # 200-499 counts as answered; 405 says the URL does not take POST, the first requirement.
        ok = 200 <= response.status_code < 500 and response.status_code != 405
        self.probes.append(
            {"url": url, "outcome": "confirmed" if ok else "unconfirmed", "status": response.status_code}
        )
        return ok

    def describe(self) -> dict[str, Any]:
        return asdict(self.controls)
