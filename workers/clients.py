"""The API clients of one worker process, built lazily from the settings and shared by its tasks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, TypeVar, cast

import httpx

from fieldrelay.egress import EgressPolicy
from fieldrelay.settings import Settings
from workers.connectors.errors import RateInfo
from workers.connectors.outbound import OutboundClient
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synchroteam import SynchroteamClient
from workers.connectors.synergist import SynergistClient


class _Client(Protocol):
    """What every connector has in common, as far as the cache of built clients cares."""

    @property
    def last_rate(self) -> RateInfo | None: ...

    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Client)


class SettingsClients:
    """``Clients`` built lazily from ``Settings``; share one per worker process.

    >>> clients = SettingsClients(load_settings())  # doctest: +SKIP
    >>> clients.synchroteam.upsert_job({"myId": "st-1", "customer": {"myId": "st-9"}})  # doctest: +SKIP
    """

    def __init__(self, settings: Settings, transport: httpx.BaseTransport | None = None) -> None:
        self.settings, self._transport = settings, transport
        self._lock = threading.Lock()
        self._built: dict[str, _Client] = {}

    def last_rate(self, target: str) -> RateInfo | None:
        with self._lock:
            client = self._built.get(target)
        return client.last_rate if client is not None else None

    def close(self) -> None:
        """Close every client built so far (their connection pools)."""
        with self._lock:
            built, self._built = self._built, {}
        for client in built.values():
            client.close()

    def _transport_for(self, system: str) -> httpx.BaseTransport | None:
        """The transport a system's client is built with (once, under the lock); subclasses wrap it."""
        return self._transport

    def _once(self, name: str, build: Callable[[], _C]) -> _C:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            # Each name is only ever built by its own property, so the entry is what `build` makes.
            return cast(_C, self._built[name])

    @property
    def servicetrade(self) -> ServiceTradeClient:
        s = self.settings
        return self._once(
            "servicetrade",
            lambda: ServiceTradeClient(
                s.servicetrade_base_url,
                s.servicetrade_username,
                s.servicetrade_password,
                transport=self._transport_for("servicetrade"),
                timeout=s.http_timeout,
                auth=s.servicetrade_auth,
                grant=s.servicetrade_oauth_grant,
                client_id=s.servicetrade_client_id,
                client_secret=s.servicetrade_client_secret,
            ),
        )

    @property
    def synchroteam(self) -> SynchroteamClient:
        s = self.settings
        return self._once(
            "synchroteam",
            lambda: SynchroteamClient(
                s.synchroteam_base_url,
                s.synchroteam_domain,
                s.synchroteam_api_key,
                transport=self._transport_for("synchroteam"),
                timeout=s.http_timeout,
                timezone=s.synchroteam_timezone,
            ),
        )

    @property
    def synergist(self) -> SynergistClient:
        s = self.settings
        return self._once(
            "synergist",
            lambda: SynergistClient(
                s.synergist_base_url,
                s.synergist_user,
                s.synergist_password,
                s.synergist_company,
                sha512password=s.synergist_sha512password,
                transport=self._transport_for("synergist"),
                timeout=s.http_timeout,
            ),
        )

    @property
    def http(self) -> OutboundClient:
        s = self.settings
        return self._once(
            "http",
            lambda: OutboundClient(
                transport=self._transport,
                timeout=s.http_timeout,
                policy=EgressPolicy.from_entries(s.http_allowed_hosts),
                max_body=s.http_max_request_body,
            ),
        )
