"""The SSRF matrix: where `http.request` may not send, over real sockets (issue 12, item 1).

Each refused case has a real listener on 127.0.0.1 behind it and asserts that nothing reached it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from fieldrelay.egress import EgressPolicy, address_kind
from workers.connectors.egress import EgressTransport
from workers.connectors.outbound import (
    MAX_STORED,
    OutboundClient,
    OutboundRefused,
    OutboundRejected,
    OutboundUnavailable,
)

SECRET = "Bearer chat-token-0123456789abcdef"


_OPEN: list[OutboundClient] = []


def client(policy: EgressPolicy, timeout: float = 2.0, **kwargs) -> OutboundClient:
    made = OutboundClient(policy=policy, timeout=timeout, **kwargs)
    _OPEN.append(made)
    return made


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Every client's pooled connections are closed: an unclosed socket is a warning, and warnings fail tests."""
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback"),
        ("127.8.9.10", "a loopback"),
        ("10.0.0.1", "a private"),  # RFC 1918
        ("172.16.5.4", "a private"),
        ("192.168.1.1", "a private"),
        ("169.254.169.254", "a link-local"),  # cloud metadata
        ("100.64.0.1", "a non-public"),  # shared address space (CGNAT)
        ("0.0.0.0", "an unspecified"),
        ("224.0.0.1", "a multicast"),
        ("::1", "a loopback"),
        ("fe80::1", "a link-local"),
        ("fc00::1", "a private"),  # unique local
        ("::ffff:127.0.0.1", "a loopback"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "a link-local"),
        ("64:ff9b::a00:1", "a private"),  # NAT64 of 10.0.0.1
        ("2002:a00:1::1", "a private"),  # 6to4 of 10.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    assert address_kind(address) == kind
    host = f"[{address}]" if ":" in address else address
    reason = EgressPolicy().check_url(f"http://{host}:8080/admin")
    assert reason == f"{address} is {kind} address"


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_kind(address) is None
    assert EgressPolicy().check_address("hooks.example", 443, address) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/internal-admin",
        "http://[::1]:{port}/internal-admin",
        "http://localhost:{port}/internal-admin",  # a DNS name resolving to loopback
        "http://0x7f000001:{port}/internal-admin",  # another spelling of 127.0.0.1
        "http://2130706433:{port}/internal-admin",
    ],
)
def test_nothing_reaches_a_loopback_listener(listener_factory, url: str) -> None:
    target = listener_factory()
    with pytest.raises(OutboundRefused) as info:
        client(EgressPolicy()).request("POST", url.format(port=target.port), headers={"Authorization": SECRET})
    err = info.value
    assert "refused by the egress policy" in str(err) and "loopback" in str(err)
    assert err.status is None and SECRET not in repr(err)
    assert target.hits == []


def test_a_name_that_resolves_to_loopback_at_connect_time_is_refused(listener_factory) -> None:
    """DNS rebinding: the URL check sees a name; the address is judged where the socket connects."""
    target = listener_factory()
    lookups: list[str] = []

    def rebinding(host: str, port: int, **kwargs: object) -> list[tuple]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    policy = EgressPolicy()
    assert policy.check_url(f"http://rebind.example:{target.port}/x") is None  # a name passes the URL check
    c = client(policy, transport=EgressTransport(policy, resolve=rebinding))
    with pytest.raises(OutboundRefused, match=r"rebind\.example resolves to a loopback address"):
        c.request("GET", f"http://rebind.example:{target.port}/x")
    assert lookups == ["rebind.example"] and target.hits == []


def test_only_the_allowed_addresses_of_a_name_are_connected_to(listener_factory) -> None:
    """A name with a public and a loopback address: the loopback one is never tried."""
    target = listener_factory()

    def mixed(host: str, port: int, **kwargs: object) -> list[tuple]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] * 2

    policy = EgressPolicy.from_entries([f"mixed.example:{target.port}"])  # allowlisted: any address
    c = client(policy, transport=EgressTransport(policy, resolve=mixed))
    assert c.request("GET", f"http://mixed.example:{target.port}/ok")["status"] == 200
    assert len(target.hits) == 1


def test_an_allowlisted_host_is_called_and_others_are_not(listener_factory) -> None:
    sink, admin = listener_factory(), listener_factory()
    policy = EgressPolicy.from_entries([f"127.0.0.1:{sink.port}"])
    c = client(policy)
    assert c.request("POST", sink.url("/hook"), json={"a": 1}, headers={"Authorization": SECRET})["status"] == 200
    assert sink.hits[0].headers["Authorization"] == SECRET
    with pytest.raises(OutboundRefused, match=f"127.0.0.1:{admin.port} is not in FIELDRELAY_HTTP_ALLOWED_HOSTS"):
        c.request("POST", admin.url("/internal-admin"), headers={"Authorization": SECRET})
    assert admin.hits == []


def test_a_redirect_to_loopback_is_not_followed(listener_factory) -> None:
    internal = listener_factory()
    redirector = listener_factory(lambda h: (302, {"Location": internal.url("/internal-admin")}, b""))
    policy = EgressPolicy.from_entries([f"127.0.0.1:{redirector.port}"])
    with pytest.raises(OutboundRejected) as info:
        client(policy).request("POST", redirector.url("/hook"), json={"a": 1}, headers={"Authorization": SECRET})
    assert info.value.status == 302 and "redirect not followed" in str(info.value)
    assert len(redirector.hits) == 1 and internal.hits == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://x.example/", "//x/"])
def test_only_http_and_https_are_called(url: str) -> None:
    with pytest.raises(OutboundRefused, match="only http and https URLs may be called"):
        client(EgressPolicy()).request("GET", url)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def slamming_port() -> Iterator[int]:
    """A TCP port that accepts and closes at once (open, but no HTTP)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return int(port)


def test_failed_connections_do_not_tell_open_ports_from_closed_ones(silent_port: int, slamming_port: int) -> None:
    """Closed, open-but-silent and open-but-not-HTTP read alike: the trace is no port scanner."""
    details = set()
    for port in (closed_port(), silent_port, slamming_port):
        policy = EgressPolicy.from_entries(["127.0.0.1"])
        c = client(policy, timeout=0.5)
        with pytest.raises(OutboundUnavailable) as info:
            c.request("GET", f"http://127.0.0.1:{port}/")
        details.add(str(info.value).replace(str(port), "PORT"))
    assert details == {"http /: no response: could not connect"}


def test_a_long_answer_is_cut_and_says_so(listener_factory) -> None:
    big = listener_factory(lambda h: (200, {"Content-Type": "application/json"}, b'{"x": "' + b"a" * 5_000_000 + b'"}'))
    result = client(EgressPolicy.from_entries([f"127.0.0.1:{big.port}"])).request("GET", big.url("/"))
    assert result["status"] == 200 and result["json"] is None
    assert len(result["text"]) == MAX_STORED and "only its start is kept" in result["truncated"]


def test_a_request_body_over_the_limit_is_refused_unsent(listener_factory) -> None:
    sink = listener_factory()
    c = client(EgressPolicy.from_entries([f"127.0.0.1:{sink.port}"]), max_body=2048)
    with pytest.raises(OutboundRefused, match="the request body is 3008 bytes; FIELDRELAY_HTTP_MAX_REQUEST_BODY"):
        c.request("POST", sink.url("/"), json={"x": "a" * 3000})
    assert sink.hits == []
    assert c.request("POST", sink.url("/"), json={"x": "a" * 1000})["status"] == 200


RULE = """\
rules:
  - name: callback
    when: {source: servicetrade, entity: job}
    then:
      - http.request:
          url: %s
"""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "only http and https URLs are allowed, not 'file'"),
        ("gopher://127.0.0.1:70/x", "only http and https URLs are allowed, not 'gopher'"),
        ("http:///no-host", "not an http(s) URL (no host)"),
    ],
)
def test_rules_check_refuses_a_literal_url_that_is_not_http(tmp_path, url: str, message: str) -> None:
    from rules import RuleLoadError, load_rules
    from workers.actions.registry import action_params

    (tmp_path / "r.yaml").write_text(RULE % url)
    with pytest.raises(RuleLoadError) as info:
        load_rules(tmp_path, action_params())
    [error] = info.value.errors
    assert str(error).startswith(f"{tmp_path / 'r.yaml'}:6:11: rules[0].then[0].http.request.url: ")
    assert message in str(error)


def test_a_templated_url_is_checked_when_it_renders() -> None:
    from pydantic import ValidationError

    from workers.actions.http import HttpRequest

    with pytest.raises(ValidationError, match="only http and https URLs are allowed, not 'file'"):
        HttpRequest.model_validate({"url": "file:///etc/passwd"})
