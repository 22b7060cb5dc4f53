"""CPU and memory bounds around work on rule files or events a person pasted: `fieldrelay rules check`,
`rules test`, and the console's dry run (which runs in a child process for this reason).

The rule language has its own limits (rules/bounds.py, rules/yamlcheck.py); these are the last resort
for whatever gets past them. Inside `resource_bounds()` the process may grow by `memory` bytes of
address space and use `cpu` more seconds of CPU: past the first Python raises `MemoryError`, past the
second the kernel sends SIGXCPU, which raises `ResourceLimitError`. The previous limits come back on
the way out, so a command run inside a longer-lived process (a test) leaves it as it was.

    >>> with resource_bounds(memory=1024**3, cpu=60):   # doctest: +SKIP
    ...     load_rules(directory, actions)
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType

try:
    import resource
except ImportError:  # not on Windows: the bounds are then not applied
    resource = None  # type: ignore[assignment]

MEMORY_BYTES = 1024**3
CPU_SECONDS = 60


class ResourceLimitError(Exception):
    """The work used up the CPU time it was given."""


def _on_cpu_limit(signum: int, frame: FrameType | None) -> None:
    raise ResourceLimitError("stopped: out of CPU time")


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def resource_bounds(memory: int = MEMORY_BYTES, cpu: int = CPU_SECONDS) -> Iterator[bool]:
    """Bound what the work inside may add: `memory` bytes of address space, `cpu` seconds of CPU.

    Yields whether the bounds apply on this platform. Only the main thread may use it (signals).
    """
    if resource is None:
        yield False
        return
    saved = {kind: resource.getrlimit(kind) for kind in (resource.RLIMIT_AS, resource.RLIMIT_CPU)}
    used = resource.getrusage(resource.RUSAGE_SELF)
    wanted = {resource.RLIMIT_CPU: int(used.ru_utime + used.ru_stime) + 1 + cpu}
    size = _address_space()
    if size is not None:
        wanted[resource.RLIMIT_AS] = size + memory
    previous_handler = signal.signal(signal.SIGXCPU, _on_cpu_limit)
    try:
        for kind, value in wanted.items():
            soft, hard = saved[kind]
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            if soft == resource.RLIM_INFINITY or value < soft:
                resource.setrlimit(kind, (value, hard))
        yield True
    finally:
        for kind, limits in saved.items():
            resource.setrlimit(kind, limits)
        signal.signal(signal.SIGXCPU, previous_handler)


def describe(exc: BaseException, cpu: int = CPU_SECONDS) -> str | None:
    """A person's sentence for a bound that was hit, or None for any other exception."""
    if isinstance(exc, MemoryError):
        return "stopped: it needed more memory than it may use; a rule or event builds something too large"
    if isinstance(exc, ResourceLimitError):
        return f"stopped after {cpu} s of CPU; a rule or event takes too long to evaluate"
    return None
