"""Test servers: one fleet emulator process and (for the tests that need a real server) one local
dev server per session, a time-skipping server per test; a fresh worker and task queue per test,
so tests never see each other's workflows. And the fast tier (`make test-fast`, `-m fast`): every
test of tests/rules/ and tests/models/, and the modules marked `fast`, none of which may ask for
a server."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings
from fleet.emulator.admin import EmulatorAdmin
from models import search_attributes
from starter import processes
from starter.processes import EmulatorAddress
from tests.helpers.commands import Result
from tests.helpers.upgrades import product_worker
from worker.search_attribute_setup import ensure_search_attributes

# Wholly pure directories: every test in them is in the fast tier, marked or not.
FAST_DIRECTORIES = frozenset({"rules", "models"})
# The fixtures that start a server; every other that needs one asks for one of these, and a fast
# test asks for none, however indirectly (a test's fixture names include its fixtures' own).
SERVER_FIXTURES = frozenset({"emulator", "ts_env", "local_env"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in FAST_DIRECTORIES and item.path.parent.parent.name == "tests":
            item.add_marker(pytest.mark.fast)
        servers = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if servers and item.get_closest_marker("fast"):
            raise pytest.UsageError(f"{item.nodeid} is marked fast but asks for {', '.join(sorted(servers))}")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorAddress]:
    """One fleet emulator for the session: Azure Resource Manager over HTTPS, and its admin API."""
    workdir = tmp_path_factory.mktemp("fleet")
    port = processes.free_port()
    process = processes.start_emulator(port, workdir / "fleet.db", workdir / "emulator.log")
    yield EmulatorAddress.of(port, workdir / "fleet.db")
    processes.stop(process)


@pytest.fixture
async def fleet(emulator: EmulatorAddress) -> AsyncIterator[EmulatorAdmin]:
    """The emulator's admin API: scenarios, faults, the log of accepted operations."""
    async with EmulatorAdmin(emulator.url, emulator.ca_file, timeout=5) as client:
        yield client


@pytest.fixture
async def azure(emulator: EmulatorAddress) -> AsyncIterator[AzureFleet]:
    """The product's fleet back end, the Azure SDK's, pointed at the emulator."""
    async with AzureFleet(AzureSettings.from_env(emulator.env())) as backend:
        yield backend


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of the test's own (it starts in about 0.1 s). Its clock is global
    and the Java test server leaks a time-skipping lock for every workflow closed with an activity
    or workflow task pending (terminate, or a run that ends leaving activities behind): shared,
    one such workflow would make every later two-hour pause take two real hours."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=processes.venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def local_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=processes.venv_binary("temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_extra_args=[
            "--dynamic-config-value",
            "history.transferProcessorMaxPollRPS=1000",
            *processes.EAGER_ACTIVITIES,
            *processes.WORKER_VERSIONING,
            # Every test's worker is a Worker Deployment of its own (tests/helpers/upgrades.py,
            # product_worker); a namespace holds 100 by default.
            "--dynamic-config-value",
            "matching.maxDeployments=10000",
            # A version no pinned workflow needs any more shows Drained within seconds, not the
            # three minutes plus three minutes of the defaults (tests/worker/test_worker_versioning.py).
            "--dynamic-config-value",
            'matching.wv.VersionDrainageStatusVisibilityGracePeriod="1s"',
            "--dynamic-config-value",
            'matching.wv.VersionDrainageStatusRefreshInterval="1s"',
        ],
        search_attributes=search_attributes.ALL,
        ui=True,
        ui_port=UI_PORT,
    )
    yield env
    await env.shutdown()


UI_PORT = processes.free_port()


@pytest.fixture(scope="session")
def web_ui_url(local_env: WorkflowEnvironment) -> str:
    """The local dev server's Temporal Web UI."""
    return f"http://127.0.0.1:{UI_PORT}"


@pytest.fixture
async def ts_worker(ts_env: WorkflowEnvironment, azure: AzureFleet) -> AsyncIterator[Worker]:
    async with product_worker(ts_env, azure) as worker:  # unversioned
        yield worker


@pytest.fixture
async def local_worker(local_env: WorkflowEnvironment, azure: AzureFleet) -> AsyncIterator[Worker]:
    async with product_worker(local_env, azure) as worker:  # versioned, a deployment of its own
        yield worker


@pytest.fixture
def upgradectl(local_env, local_worker, emulator):
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
        **emulator.env(),
        "UPGRADE_TASK_QUEUE": local_worker.task_queue,
        "COLUMNS": "200",
    }

    async def call(*args: str) -> Result:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "starter.cli",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        return Result(process.returncode, out.decode(), err.decode())

    return call
