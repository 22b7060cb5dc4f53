"""The ServiceTrade webhook that feeds the receiver: registered once per URL, enabled or disabled by URL or id."""

from __future__ import annotations

from fieldrelay.queries import OperationError
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.servicetrade_records import Webhook


def register_webhook(client: ServiceTradeClient, url: str) -> tuple[Webhook, bool]:
    """The webhook for `url`, enabled and with changesets; created only if none has that URL.

    Returns the hook and whether it was created. Running it again changes nothing.
    """
    for hook in client.list_webhooks():
        if hook.get("hookUrl") == url:
            if not hook.get("enabled") or not hook.get("includeChangesets"):
                hook = client.update_webhook(hook["id"], enabled=True, include_changesets=True)
            return hook, False
    return client.create_webhook(url, enabled=True, include_changesets=True), True


def set_webhook_enabled(client: ServiceTradeClient, url_or_id: str, enabled: bool) -> Webhook:
    for hook in client.list_webhooks():
        if url_or_id in (hook.get("hookUrl"), str(hook.get("id"))):
            return client.update_webhook(hook["id"], enabled=enabled)
    raise OperationError(f"no ServiceTrade webhook with URL or id {url_or_id!r}")
