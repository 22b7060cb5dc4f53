"""Ports a command is about to listen on: refuse a taken one up front, with a message that names it."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Mapping


class PortTakenError(Exception):
    """A port something else listens on; `str()` names each one and how to choose another."""


def is_taken(host: str, port: int) -> bool:
    """Whether binding `host:port` fails because something else holds it (as uvicorn would bind it)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_ports(host: str, ports: Mapping[str, tuple[int, str]]) -> None:
    """Raise `PortTakenError` naming every taken port.

    `ports` maps what listens there to (port, how to choose another), for example
    `{"Synchroteam sandbox": (8782, "--synchroteam-port or FIELDRELAY_SANDBOX_SYNCHROTEAM_PORT")}`.
    """
    seen: dict[int, str] = {}
    problems = []
    for what, (port, option) in ports.items():
        if port in seen:
            problems.append(
                f"port {port} is given to both the {seen[port]} and the {what}; choose another with {option}"
            )
        elif is_taken(host, port):
            problems.append(
                f"port {port} on {host} ({what}) is taken; stop what uses it, or choose another with {option}"
            )
        seen.setdefault(port, what)
    if problems:
        raise PortTakenError("\n".join(problems))
