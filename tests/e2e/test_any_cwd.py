"""fieldrelay runs its own code whatever the working directory holds, from an editable install and from a wheel.

An ops repository with `rules/*.yaml` is the natural place to start the processes from. Python puts
the working directory first on `sys.path` for `python -m`/`-c`, and Celery's loader does so while it
imports task modules; a `rules/` folder there then shadowed the installed package and the worker
crash-looped. Here the processes start from a directory with `rules/`, `workers/`, `receiver/`,
`sandbox/`, `fieldrelay/` and `fieldrelay_cli/` folders full of YAML, with secrets that hold `@ : / +`,
and the documented sample webhook must still reach its Synchroteam job.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from fieldrelay_cli.embedded_redis import free_port
from sandbox import servicetrade, synchroteam, synergist
from sandbox.runner import SandboxRunner

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hook@tok:en/with+signs-0123456789"
ST_PASSWORD = "p@ss:w0rd/x+y"
STM_KEY = "k3y@domain:part/two+three"
SHADOWS = ("rules", "workers", "receiver", "sandbox", "fieldrelay", "fieldrelay_cli")


def ops_repository(base: Path) -> Path:
    """A directory like an ops team's: its own `rules/` (the shipped examples) and look-alike folders."""
    ops = base / "ops"
    for name in SHADOWS:
        (ops / name).mkdir(parents=True)
        (ops / name / "notes.yaml").write_text(f"# {name}: not Python, and must never be imported\nkey: value\n")
    shutil.copy(ROOT / "rules" / "examples" / "servicetrade_to_synchroteam.yaml", ops / "rules")
    (ops / "rules" / "notes.yaml").unlink()  # every YAML in the rules directory is a rule file
    return ops


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with fieldrelay installed from its built wheel (its dependencies seen from this one)."""
    base = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes its build/ and egg-info beside the sources it builds.
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("fieldrelay", "fieldrelay_cli", "receiver", "workers", "rules", "sandbox"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    dist = base / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        cwd=base,
        timeout=300,
    )
    [wheel] = dist.glob("fieldrelay-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies come from this test's environment; a path in a .pth file is appended to sys.path
    # without running that directory's own .pth files, so this environment's editable finder stays out.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    return venv / "bin"


@pytest.fixture
def sandboxes() -> Iterator[SandboxRunner]:
    apps = {
        "servicetrade": servicetrade.create_app(username="ops", password=ST_PASSWORD),
        "synchroteam": synchroteam.create_app(domain="acme", api_key=STM_KEY),
        "synergist": synergist.create_app(),
    }
    with SandboxRunner(apps) as runner:
        yield runner


@pytest.mark.parametrize("install", ["editable", "wheel"])
def test_the_processes_run_from_a_directory_full_of_lookalike_folders(
    install: str, request: pytest.FixtureRequest, redis_url: str, sandboxes: SandboxRunner, tmp_path: Path
) -> None:
    bin_dir = Path(sys.executable).parent if install == "editable" else request.getfixturevalue("wheel_venv")
    ops = ops_repository(tmp_path)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("FIELDRELAY_", "PYTHON"))},
        "FIELDRELAY_REDIS_URL": redis_url,
        "FIELDRELAY_DATA_DIR": str(tmp_path / "var"),
        "FIELDRELAY_RULES_DIR": "rules",  # relative: the ops repository's own rules
        "FIELDRELAY_WEBHOOK_TOKENS": TOKEN,
        "FIELDRELAY_SERVICETRADE_BASE_URL": sandboxes.urls["servicetrade"],
        "FIELDRELAY_SERVICETRADE_USERNAME": "ops",
        "FIELDRELAY_SERVICETRADE_PASSWORD": ST_PASSWORD,
        "FIELDRELAY_SYNCHROTEAM_BASE_URL": sandboxes.urls["synchroteam"],
        "FIELDRELAY_SYNCHROTEAM_DOMAIN": "acme",
        "FIELDRELAY_SYNCHROTEAM_API_KEY": STM_KEY,
        "FIELDRELAY_POLL_SOURCES": "none",
        "FIELDRELAY_WORKER_CONCURRENCY": "1",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, *argv: str) -> None:
        with open(logs / f"{name}.log", "wb") as out:
            procs[name] = subprocess.Popen(
                [str(bin_dir / "fieldrelay"), *argv],
                cwd=ops,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_of(name: str) -> str:
        return (logs / f"{name}.log").read_text(errors="replace")

    try:
        start("receiver", "receiver", "--port", str(port))
        start("worker", "worker")
        start("beat", "beat")
        receiver = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(receiver + "/readyz"), 60, lambda: log_of("receiver"))
        wait_for(lambda: redis.Redis.from_url(redis_url).exists("_kombu.binding.events"), 60, lambda: log_of("worker"))

        sample = (ROOT / "examples" / "webhook-sample.json").read_bytes()
        answer = httpx.post(
            f"{receiver}/webhooks/servicetrade/{TOKEN}",
            content=sample,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

        job = f"{sandboxes.urls['synchroteam']}/api/v3/job/details?myId=st-job-35769"
        wait_for(
            lambda: httpx.get(job, auth=("acme", STM_KEY), timeout=5).status_code == 200, 60, lambda: log_of("worker")
        )
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{log_of(name)[-3000:]}"
        for name in procs:
            text = log_of(name)
            assert "ImportError" not in text and "ModuleNotFoundError" not in text, text[-3000:]
            assert "starting it again" not in text, text[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(condition: object, timeout: float, explain: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    pytest.fail(f"not within {timeout} s; log:\n{explain()[-4000:]}")  # type: ignore[operator]
