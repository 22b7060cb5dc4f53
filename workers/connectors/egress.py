"""The egress policy at connect time: an httpx transport that connects only to addresses the policy allows.

The name is resolved here, each address is checked (`fieldrelay.egress.EgressPolicy.check_address`),
and the socket connects to that checked address itself, so there is no second lookup for a DNS
rebinding to slip into. TLS still verifies the certificate against the URL's host name (httpcore
passes it as `server_hostname`). Environment proxies are not used: a proxy would make the
connection's real destination invisible to the check.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from fieldrelay.egress import EgressPolicy, EgressRefused

Resolver = Callable[..., list[tuple[Any, ...]]]


class EgressBackend(httpcore.SyncBackend):
    """httpcore's socket backend, connecting only to addresses `policy` allows."""

    def __init__(self, policy: EgressPolicy, resolve: Resolver = socket.getaddrinfo) -> None:
        self.policy = policy
        self.resolve = resolve

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = self.resolve(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(str(exc)) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed: list[str] = []
        refusals: list[str] = []
        for address in addresses:
            reason = self.policy.check_address(host, port, address)
            (refusals if reason else allowed).append(reason or address)
        if not allowed:
            raise EgressRefused(refusals[0] if refusals else f"{host} resolves to no address")
        last: Exception | None = None
        for address in allowed:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


class EgressTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` over `EgressBackend`: the transport of every call a rule can aim."""

    def __init__(self, policy: EgressPolicy, *, resolve: Resolver = socket.getaddrinfo) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=EgressBackend(policy, resolve),
        )
