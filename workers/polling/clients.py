"""Connector clients for the pollers, built from the settings, with every request counted per thread."""

from __future__ import annotations

import threading

import httpx

from fieldrelay.settings import Settings
from workers.clients import SettingsClients


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


class PollClients(SettingsClients):
    """The worker's clients, each on its own counting transport (the pollers report requests per run).

    >>> clients = PollClients(load_settings())     # doctest: +SKIP
    >>> clients.requests("synchroteam")             # requests sent by this thread so far  # doctest: +SKIP
    """

    def __init__(self, settings: Settings, inner: httpx.BaseTransport | None = None) -> None:
        super().__init__(settings, inner)
        self.transports: dict[str, CountingTransport] = {}

    def requests(self, system: str) -> int:
        transport = self.transports.get(system)
        return transport.count if transport else 0

    def _transport_for(self, system: str) -> httpx.BaseTransport:
        self.transports[system] = CountingTransport(self._transport)
        return self.transports[system]
