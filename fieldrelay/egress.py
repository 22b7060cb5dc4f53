"""Where the `http.request` action may send: the hosts in FIELDRELAY_HTTP_ALLOWED_HOSTS, or else public addresses.

A rule can aim `http.request` at a URL taken from a webhook, so the URL is not trusted. It is checked
twice, with the same policy:
- before anything is sent: only `http` and `https`, a host, the allowlist, and a literal address;
- at connect time, on every address the host name resolves to (`workers.connectors.egress`), so a
  name that resolves to 127.0.0.1, or starts to between the two checks (DNS rebinding), is refused.

    >>> policy = EgressPolicy.from_entries([])
    >>> policy.check_url("http://169.254.169.254/latest/meta-data/")
    '169.254.169.254 is a link-local address'
    >>> policy.check_url("file:///etc/passwd")
    "only http and https URLs may be called, not 'file'"
    >>> EgressPolicy.from_entries(["hooks.example.com", "127.0.0.1:9000"]).check_url("http://127.0.0.1:9000/x")

Like Svix's and Convoy's outbound webhooks, an allowlisted host may resolve to any address: naming
it is the operator's decision. The three API connectors are not subject to this policy; they call the
base URLs their settings configure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

SETTING = "FIELDRELAY_HTTP_ALLOWED_HOSTS"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(Exception):
    """The egress policy refused a call before anything was sent; `reason` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"refused by the egress policy: {self.reason}"


@dataclass(frozen=True)
class HostPattern:
    """One allowlist entry: `host`, `host:port`, `*.example.com` (any subdomain), `[::1]:8080`."""

    host: str  # lower case; a wildcard keeps its leading "*."
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        if self.port is not None and self.port != port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host


def parse_allowed_hosts(entries: Iterable[str]) -> tuple[HostPattern, ...]:
    """The allowlist; a ValueError names the first entry that is not `host`, `host:port` or `*.domain`."""
    out = []
    for entry in entries:
        text = entry.strip().lower()
        if "://" in text or "/" in text or "@" in text or not text:
            raise ValueError(f"{entry!r} is not a host or host:port (no scheme, path or user)")
        host, port = text, None
        if text.startswith("["):  # [IPv6]:port
            inside, bracket, rest = text[1:].partition("]")
            if not bracket:
                raise ValueError(f"{entry!r} is not a host or host:port")
            host = inside
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{entry!r} is not a host or host:port")
                port = _port(entry, rest[1:])
        elif text.count(":") == 1:
            host, _, raw_port = text.partition(":")
            port = _port(entry, raw_port)
        elif text.count(":") > 1:
            host = text  # a bare IPv6 address
        if not _valid_host(host):
            raise ValueError(f"{entry!r} is not a host or host:port")
        out.append(HostPattern(host.rstrip("."), port))
    return tuple(out)


def _port(entry: str, raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(raw)


def _valid_host(host: str) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[2:] if host.startswith("*.") else host
    labels = name.rstrip(".").split(".")
    return all(label and len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label) for label in labels)


def address_kind(address: str | IPAddress) -> str | None:
    """None for a public (globally routable) address; otherwise what it is, in words.

    Addresses embedded in IPv6 (IPv4-mapped, 6to4, Teredo, NAT64) are judged by the IPv4 address inside.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or (ip.teredo[1] if ip.teredo else None) or ip.sixtofour
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return address_kind(inner)
    for kind, test in (
        ("an unspecified", ip.is_unspecified),
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
    ):
        if test:
            return kind
    if not ip.is_global:
        return "a non-public"  # shared (100.64/10), benchmarking, documentation ranges
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """`check_url` before a call, `check_address` for each address connected to; each gives a reason or None."""

    allowed: tuple[HostPattern, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> EgressPolicy:
        return cls(parse_allowed_hosts(entries))

    def allows_host(self, host: str, port: int) -> bool:
        return any(p.matches(host, port) for p in self.allowed)

    def check_url(self, url: str) -> str | None:
        """Why the URL may not be called, or None; a host name's addresses are checked at connect time."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            return "not a valid URL"
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            return f"only http and https URLs may be called, not {scheme or 'a URL without a scheme'!r}"
        if not host:
            return "the URL has no host"
        port = port or (443 if scheme == "https" else 80)
        if self.allowed:
            if self.allows_host(host, port):
                return None
            return f"{_shown(host, port)} is not in {SETTING}"
        try:
            kind = address_kind(host)
        except ValueError:
            return None  # a name: its addresses are checked when connecting
        return None if kind is None else f"{host} is {kind} address"

    def check_address(self, host: str, port: int, address: str) -> str | None:
        """Why `host` may not be reached at `address`, or None."""
        if self.allowed:
            return None if self.allows_host(host, port) else f"{_shown(host, port)} is not in {SETTING}"
        kind = address_kind(address.split("%", 1)[0])
        if kind is None:
            return None
        return f"{host} is {kind} address" if host == address else f"{host} resolves to {kind} address"


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
