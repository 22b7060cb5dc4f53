"""In-memory ServiceTrade account: seeded records, login sessions, webhooks and change tracking."""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sandbox.webhook_delivery import Change, WebhookDispatcher

SEED_PATH = Path(__file__).parent / "data" / "servicetrade.json"
ENTITY_TYPES = (
    "job",
    "appointment",
    "location",
    "company",
    "contact",
    "invoice",
    "quote",
    "deficiency",
    "asset",
    "user",
    "attachment",
    "servicerequest",
    "comment",
    "clock",
)
# The docs' session limits: past the hard limit the oldest sessions go until the soft limit is met.
SESSION_SOFT_LIMIT, SESSION_HARD_LIMIT = 100, 200
# "Webhook > Entity Changesets": "Changeset tracking is NOT enabled on all fields on all entities.
# Changesets are only tracked for certain fields for specific entities": Job (no fields listed) and Job
# Item (libItemId, quantity, source.*). Every other entity's `updated` item carries `changeset: []`
# ("the changeset can be an empty array for some updated messages").
# [INCONS] The Job list is empty, yet the same section's sample changeset is a job's `status`. Both
# readings are modes (`PUT /_sandbox/webhook/controls {"changesets": ...}`): "sample" (the default)
# tracks job `status`; "documented" tracks no job field, so job updates carry `[]` too.
JOB_ITEM_TRACKED = {
    "libItemId",
    "quantity",
    "source.companyId",
    "source.deliveryDate",
    "source.status",
    "source.type",
    "source.userId",
    "source.value",
    "source.warehouseId",
}
CHANGESET_READINGS: dict[str, dict[str, set[str]]] = {
    "sample": {"job": {"status"}, "jobitem": JOB_ITEM_TRACKED},
    "documented": {"job": set(), "jobitem": JOB_ITEM_TRACKED},
}
DEFAULT_CHANGESET_FIELDS = CHANGESET_READINGS["sample"]
# External systems the account knows ("ExternalId": a POST for an unknown one is 404). The doc's
# examples use `system_name` and `other_system`; the seeded jobs show `peachtree` and `salesforce`.
EXTERNAL_SYSTEMS = ("system_name", "other_system", "peachtree", "salesforce", "synergist", "synchroteam")


class ServiceTradeState:
    """Everything the ServiceTrade sandbox knows; tests may read and mutate it directly.

    >>> state = ServiceTradeState()
    >>> state.get("job", 35769)["status"]
    'completed'
    """

    def __init__(
        self, seed: dict[str, list[dict[str, Any]]] | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self._seed = seed if seed is not None else json.loads(SEED_PATH.read_text())
        self.records: dict[str, dict[int, dict[str, Any]]] = {}
        self.sessions: OrderedDict[str, str] = OrderedDict()
        self.webhooks: dict[int, dict[str, Any]] = {}
        self.changeset_fields = copy.deepcopy(DEFAULT_CHANGESET_FIELDS)
        self.external_systems: set[str] = set(EXTERNAL_SYSTEMS)
        # Lists whose default `limit` the docs do not give use this; tests shrink it to see pages.
        self.default_limits: dict[str, int] = {
            "job": 2000,
            "appointment": 2000,
            "invoice": 2000,
            "location": 10,
        }
        self.fallback_limit = 100
        self.max_limits: dict[str, int] = {
            "job": 2000,
            "appointment": 2000,
            "invoice": 2000,
            "location": 5000,
        }
        self.public_base_url: str | None = None
        # Seed 002, "Pagination" and each list's `limit`: "page" reads limit as the page size (with totalPages),
        # "cap" as a cap on the answer with no paging fields; which one the API does is not documented.
        self.limit_mode = "page"
        self.contents: dict[int, bytes] = {}  # uploaded attachments' bytes
        self.bearer_tokens: dict[str, str] = {}  # OAuth2 access token -> username
        self.oauth_clients: dict[str, str] = {"sandbox-client": "sandbox-client-secret"}
        self.dispatcher = WebhookDispatcher(clock=clock)
        self.reset()

    def now(self) -> int:
        return int(self.clock())

    def reset(self) -> None:
        """Back to the seed: records, sessions, webhooks and delivery log; settings are kept."""
        self.records = {t: {} for t in ENTITY_TYPES}
        for entity_type, rows in copy.deepcopy(self._seed).items():
            self.records.setdefault(entity_type, {}).update({row["id"]: row for row in rows})
        self.sessions.clear()
        self.bearer_tokens.clear()
        self.contents.clear()
        self.webhooks.clear()
        self.dispatcher.reset()
        self.external_systems = set(EXTERNAL_SYSTEMS)

    def tracked_fields(self, entity_type: str) -> set[str]:
        """The fields whose changes `updated` webhook items report, under the chosen reading of the doc."""
        reading = CHANGESET_READINGS.get(self.dispatcher.controls.changesets)
        if reading is None or self.changeset_fields != DEFAULT_CHANGESET_FIELDS:
            return self.changeset_fields.get(entity_type, set())  # a test set its own
        return reading.get(entity_type, set())

    # Records

    def get(self, entity_type: str, entity_id: int) -> dict[str, Any] | None:
        return self.records.get(entity_type, {}).get(entity_id)

    def all(self, entity_type: str) -> list[dict[str, Any]]:
        return [self.records[entity_type][k] for k in sorted(self.records.get(entity_type, {}))]

    def create(self, entity_type: str, values: dict[str, Any]) -> dict[str, Any]:
        table = self.records.setdefault(entity_type, {})
        new_id = max(table, default=1000) + 1
        now = self.now()
        record = {"id": new_id, **values, "created": now, "updated": now}
        if entity_type == "job":
            record.setdefault("number", max((r.get("number", 0) for r in table.values()), default=0) + 1)
            record.setdefault("refNumber", str(record["number"]))
            record.setdefault("name", f"Job {new_id}")
        table[new_id] = record
        return record

    def update(self, entity_type: str, entity_id: int, values: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply `values`; return the changeset of tracked fields (empty when nothing tracked changed).

        The record's `updated` becomes the time of this change; the webhook item's `timestamp` is the
        same instant ("the timestamp at which the action occurred"), so a poll and a webhook report one
        version with one modification time.
        """
        record = self.records[entity_type][entity_id]
        tracked = self.tracked_fields(entity_type)
        changeset = [
            {"field": k, "oldValue": record.get(k), "newValue": v}
            for k, v in values.items()
            if k in tracked and record.get(k) != v
        ]
        record.update(values)
        record["updated"] = self.now()
        return changeset

    def delete(self, entity_type: str, entity_id: int) -> dict[str, Any] | None:
        return self.records.get(entity_type, {}).pop(entity_id, None)

    # Sessions

    def open_session(self, username: str) -> str:
        alphabet = string.ascii_lowercase + string.digits
        token = "".join(secrets.choice(alphabet) for _ in range(26))
        self.sessions[token] = username
        if len(self.sessions) > SESSION_HARD_LIMIT:
            while len(self.sessions) > SESSION_SOFT_LIMIT:
                self.sessions.popitem(last=False)
        return token

    def session_user(self, token: str | None) -> dict[str, Any] | None:
        username = self.sessions.get(token or "")
        if username is None:
            return None
        users = self.all("user")
        return next((u for u in users if u.get("username") == username), users[0] if users else None)

    # Webhooks

    def add_webhook(self, hook_url: str, enabled: bool, include_changesets: bool) -> dict[str, Any]:
        new_id = max(self.webhooks, default=0) + 1
        hook = {
            "id": new_id,
            "hookUrl": hook_url,
            "enabled": enabled,
            "confirmed": False,
            "includeChangesets": include_changesets,
        }
        self.webhooks[new_id] = hook
        return hook

    async def confirm_webhook(self, hook: dict[str, Any]) -> None:
        """Seed 002, "Confirmation": "automatic ... typically immediately after creation. To be confirmed, a
        webhook must meet all the requirements listed in 'Webhook Requirements'": the URL is probed."""
        if self.dispatcher.controls.auto_confirm and not hook["confirmed"]:
            hook["confirmed"] = await self.dispatcher.meets_requirements(hook["hookUrl"])

    def notify(self, changes: Iterable[Change], base: str) -> list[tuple[str, dict[str, Any]]]:
        """Address one message about `changes` to every enabled, confirmed hook (snapshot taken now)."""
        hooks = [h for h in self.webhooks.values() if h["enabled"] and h["confirmed"]]
        return self.dispatcher.address(list(changes), hooks, self.public_base_url or base)
