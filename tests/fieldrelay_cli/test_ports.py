"""`fieldrelay sandbox`, `receiver` and `run` refuse a taken port up front, naming it and how to choose another."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldrelay_cli.embedded_redis import free_port
from fieldrelay_cli.ports import PortTakenError, check_ports, is_taken

ROOT = Path(__file__).parents[2]


@contextlib.contextmanager
def listening() -> Iterator[int]:
    """A port something else listens on, for as long as the block runs."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def fieldrelay(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FIELDRELAY_")}
    environ.update(FIELDRELAY_DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "fieldrelay_cli", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_taken_port_is_named_with_the_option_that_moves_it():
    with listening() as port:
        assert is_taken("127.0.0.1", port)
        with pytest.raises(PortTakenError) as err:
            check_ports("127.0.0.1", {"Synchroteam sandbox": (port, "--synchroteam-port")})
    assert str(err.value) == (
        f"port {port} on 127.0.0.1 (Synchroteam sandbox) is taken; stop what uses it, "
        "or choose another with --synchroteam-port"
    )


def test_one_port_given_twice_is_refused():
    port = free_port()
    with pytest.raises(PortTakenError, match=f"port {port} is given to both the receiver and the sandbox"):
        check_ports("127.0.0.1", {"receiver": (port, "--port"), "sandbox": (port, "--sandbox-port")})


def test_sandbox_refuses_a_taken_port(tmp_path):
    with listening() as port:
        result = fieldrelay("sandbox", "--synchroteam-port", str(port), data_dir=tmp_path)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 (synchroteam sandbox) is taken" in result.stderr
    assert "--synchroteam-port or FIELDRELAY_SANDBOX_SYNCHROTEAM_PORT" in result.stderr


def test_sandbox_ports_come_from_the_settings_too(tmp_path):
    with listening() as port:
        result = fieldrelay("sandbox", data_dir=tmp_path, FIELDRELAY_SANDBOX_SERVICETRADE_PORT=str(port))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 (servicetrade sandbox) is taken" in result.stderr


def test_run_refuses_a_taken_port_before_it_starts_or_clears_anything(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "worker.log").write_text("{}\n")
    with listening() as port:
        result = fieldrelay(
            "run",
            "--port",
            str(free_port()),
            "--servicetrade-port",
            str(free_port()),
            "--synchroteam-port",
            str(free_port()),
            "--synergist-port",
            str(port),
            data_dir=tmp_path,
        )
    assert result.returncode == 1
    assert f"fieldrelay run: port {port} on 127.0.0.1 (Synergist sandbox) is taken" in result.stderr
    assert "--synergist-port or FIELDRELAY_SANDBOX_SYNERGIST_PORT" in result.stderr
    assert (tmp_path / "logs" / "worker.log").exists()  # the last run's logs are still there
    assert not (tmp_path / "redis").exists()


def test_receiver_refuses_a_taken_port(tmp_path):
    with listening() as port:
        result = fieldrelay("receiver", data_dir=tmp_path, FIELDRELAY_RECEIVER_PORT=str(port))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 (receiver) is taken" in result.stderr


def test_a_port_option_must_be_a_port(tmp_path):
    result = fieldrelay("run", "--synchroteam-port", "70000", data_dir=tmp_path)
    assert result.returncode == 2
    assert "argument --synchroteam-port: not a TCP port (1-65535): '70000'" in result.stderr


def test_a_port_setting_must_be_a_port(tmp_path):
    result = fieldrelay("sandbox", data_dir=tmp_path, FIELDRELAY_SANDBOX_SYNERGIST_PORT="0")
    assert result.returncode == 1
    assert "FIELDRELAY_SANDBOX_SYNERGIST_PORT: Input should be greater than or equal to 1" in result.stderr


def test_a_second_run_on_one_data_directory_is_refused(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / "run.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242")
        held.flush()
        result = fieldrelay("run", "--port", str(free_port()), data_dir=tmp_path)
    assert result.returncode == 1
    assert f"another `fieldrelay run` (pid 4242) uses {tmp_path}/" in result.stderr
    assert "give this one its own FIELDRELAY_DATA_DIR and ports" in result.stderr
