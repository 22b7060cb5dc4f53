"""Connector clients for the pollers, built from the settings, with every request counted per thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx

from fieldrelay.settings import Settings
from workers.connectors.servicetrade import ServiceTradeClient
from workers.connectors.synchroteam import SynchroteamClient
from workers.connectors.synergist import SynergistClient


class CountingTransport(httpx.BaseTransport):
    """An httpx transport that counts the requests sent from each thread (a poll run is one thread)."""

    def __init__(self, inner: httpx.BaseTransport | None = None) -> None:
        self.inner = inner or httpx.HTTPTransport()
        self._local = threading.local()

    @property
    def count(self) -> int:
        return int(getattr(self._local, "count", 0))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._local.count = self.count + 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class PollClients:
    """One client per system, shared by the pollers of a process (ServiceTrade keeps its session).

    >>> clients = PollClients(load_settings())     # doctest: +SKIP
    >>> clients.requests("synchroteam")             # requests sent by this thread so far  # doctest: +SKIP
    """

    def __init__(self, settings: Settings, inner: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._inner = inner
        self._lock = threading.Lock()
        self._built: dict[str, Any] = {}
        self.transports: dict[str, CountingTransport] = {}

    def requests(self, system: str) -> int:
        transport = self.transports.get(system)
        return transport.count if transport else 0

    def _once(self, system: str, build: Callable[[CountingTransport], Any]) -> Any:
        with self._lock:
            if system not in self._built:
                self.transports[system] = CountingTransport(self._inner)
                self._built[system] = build(self.transports[system])
            return self._built[system]

    @property
    def servicetrade(self) -> ServiceTradeClient:
        s = self.settings
        client: ServiceTradeClient = self._once("servicetrade", lambda t: ServiceTradeClient(
            s.servicetrade_base_url, s.servicetrade_username, s.servicetrade_password,
            transport=t, timeout=s.http_timeout))
        return client

    @property
    def synchroteam(self) -> SynchroteamClient:
        s = self.settings
        client: SynchroteamClient = self._once("synchroteam", lambda t: SynchroteamClient(
            s.synchroteam_base_url, s.synchroteam_domain, s.synchroteam_api_key,
            transport=t, timeout=s.http_timeout))
        return client

    @property
    def synergist(self) -> SynergistClient:
        s = self.settings
        client: SynergistClient = self._once("synergist", lambda t: SynergistClient(
            s.synergist_base_url, s.synergist_user, s.synergist_password, s.synergist_company,
            sha512password=s.synergist_sha512password, transport=t, timeout=s.http_timeout))
        return client

    def close(self) -> None:
        for client in self._built.values():
            client.close()
