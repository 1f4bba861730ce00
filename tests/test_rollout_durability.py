"""Automatic rollouts on a real dev server with worker processes: a SIGKILL mid-rollout loses
nothing and doubles nothing, the history says Platform, and `python -m tests.test_rollout_durability`
records the watcher's and a rollout's histories for the replay test (`--only extensions`: the
histories of automatic extension upgrades, on the time-skipping server, since their retry comes
an hour after a failure at the least)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings
from fleet.emulator.admin import EmulatorAdmin
from models.automatic import (
    AUTOMATIC_UPGRADES_WORKFLOW,
    CHECK_NOW_SIGNAL,
    ENROLL_UPDATE,
    AutomaticSettings,
    AutomaticState,
    Enrollment,
    EnrollRequest,
    RolloutState,
    RolloutStatus,
    rollout_workflow_id,
    watcher_workflow_id,
)
from models.fleet import FaultSpec, FleetOperation, OperationKind, OperationStatus, TimingSpec
from starter import processes
from starter.history import upgrade_history
from tests.helpers import WorkerProcesses, eventually
from tests.test_automatic import POLICY, Images, enroll, finished, make_set
from tests.test_automatic_extensions import PUBLISHER, extension, publish, rollout
from tests.test_automatic_extensions import make_set as make_extension_set
from worker.assembly import build_worker
from worker.connection import connect
from worker.search_attribute_setup import ensure_search_attributes

SLOW = TimingSpec(reimage_seconds=[0.5, 0.5], restore_seconds=[0.2, 0.2], boot_seconds=[0.2, 0.2])
AUTOMATIC_HISTORIES = Path(__file__).parent / "histories" / "automatic"


@dataclass
class Rollout:
    status: RolloutStatus
    ops: dict[str, list[FleetOperation]]
    watcher: WorkflowHandle
    handle: WorkflowHandle


async def roll(client: Client, fleet: EmulatorAdmin, workers: WorkerProcesses, *, crash: bool) -> Rollout:
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    north = await make_set(fleet, images.latest, "northeurope", 4, timing=SLOW)
    west = await make_set(fleet, images.latest, "westeurope", 4, timing=SLOW)
    await workers.start()
    try:
        watcher = await client.start_workflow(
            AUTOMATIC_UPGRADES_WORKFLOW,
            AutomaticState(settings=AutomaticSettings()),
            id=watcher_workflow_id(workers.task_queue),
            task_queue=workers.task_queue,
        )
        for name in (north, west):
            await watcher.execute_update(
                ENROLL_UPDATE, EnrollRequest(scale_set=name, policy=POLICY, by="test"), result_type=Enrollment
            )
        await fleet.publish_image(images.at("1.1.0"))
        await watcher.signal(CHECK_NOW_SIGNAL)
        handle = client.get_workflow_handle(
            rollout_workflow_id(images.latest, "1.1.0"), result_type=RolloutStatus
        )

        async def started() -> bool:
            try:
                await handle.describe()
            except RPCError:
                return False
            return True

        await eventually(started, bool, timeout=60)
        if crash:  # while the first phase's set has a reimage in flight
            await eventually(
                lambda: fleet.operations(north),
                lambda ops: any(op.status == OperationStatus.IN_PROGRESS for op in ops),
                timeout=60,
            )
            await workers.crash()
        status = await asyncio.wait_for(handle.result(), 240)
        return Rollout(status, {n: await fleet.operations(n) for n in (north, west)}, watcher, handle)
    finally:
        workers.stop()


async def test_a_worker_killed_mid_rollout_loses_and_doubles_nothing(local_env, fleet, emulator, tmp_path):
    address = local_env.client.service_client.config.target_host
    rollout = await roll(local_env.client, fleet, WorkerProcesses(address, emulator, tmp_path), crash=True)

    assert rollout.status.state == RolloutState.COMPLETED
    assert [s.state.value for s in rollout.status.sets] == ["Completed", "Completed"]
    for ops in rollout.ops.values():
        reimages = collections.Counter(op.instance_id for op in ops if op.kind == OperationKind.REIMAGE)
        assert reimages == dict.fromkeys(reimages, 1) and len(reimages) == 4  # exactly once each
        assert {op.status for op in ops} == {OperationStatus.SUCCEEDED}
    # Azure's history of the set says the platform started it.
    north = rollout.status.sets[0].scale_set
    entries = await eventually(
        lambda: upgrade_history(local_env.client, north), lambda found: len(found) == 1, timeout=30
    )
    assert entries[0].properties.started_by == "Platform"
    assert entries[0].properties.running_status.code == "Completed"


async def record(out: Path) -> None:
    """Run a rollout on a fresh dev server and emulator; write the watcher's and the rollout's
    histories as `<workflow id, '/' as '~'>.json` (what the Web UI or CLI would export)."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        port, ui_port, fleet_port = processes.free_port(), processes.free_port(), processes.free_port()
        server = processes.start_dev_server(port, ui_port, None, work / "server.log")
        emulator = processes.start_emulator(fleet_port, work / "fleet.db", work / "emulator.log")
        try:
            address = f"127.0.0.1:{port}"
            target = processes.EmulatorAddress.of(fleet_port, work / "fleet.db")
            client = await connect(address)
            async with EmulatorAdmin(target.url, target.ca_file) as fleet:
                rollout = await roll(client, fleet, WorkerProcesses(address, target, work), crash=False)
            out.mkdir(parents=True, exist_ok=True)
            for handle in (rollout.watcher, rollout.handle):
                history = await client.get_workflow_handle(handle.id).fetch_history()
                (out / f"{handle.id.replace('/', '~')}.json").write_text(history.to_json())
                print(f"recorded {handle.id}")
        finally:
            processes.stop(emulator)
            processes.stop(server)


# Fixed names: the recordings' workflow ids (and so their file names) stay the same.
RECORDED_QUEUE = "h-automatic-extensions"
FLAKY, STEADY = "FlakyAgent", "SteadyAgent"


async def record_extensions(out: Path) -> None:
    """Automatic extension upgrades on the time-skipping server and a fresh emulator: two
    extensions due at once on one scale set (one waits for the other's upgrade to end), one
    version failing to install (rolled back, the rollout Faulted), fixed by its publisher and
    retried an hour later. Writes the watcher's and the three rollouts' histories."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        fleet_port = processes.free_port()
        emulator = processes.start_emulator(fleet_port, work / "fleet.db", work / "emulator.log")
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=processes.venv_binary("temporal-test-server"),
            data_converter=pydantic_data_converter,
        )
        try:
            await ensure_search_attributes(env.client)
            target = processes.EmulatorAddress.of(fleet_port, work / "fleet.db")
            async with (
                EmulatorAdmin(target.url, target.ca_file) as fleet,
                AzureFleet(AzureSettings.from_env(target.env())) as azure,
                build_worker(env.client, azure, RECORDED_QUEUE),
            ):
                handles = await roll_extensions(env, fleet)
            out.mkdir(parents=True, exist_ok=True)
            for handle in handles:
                history = await env.client.get_workflow_handle(handle.id).fetch_history()
                (out / f"{handle.id.replace('/', '~')}.json").write_text(history.to_json())
                print(f"recorded {handle.id}")
        finally:
            await env.shutdown()
            processes.stop(emulator)


async def roll_extensions(env: WorkflowEnvironment, fleet: EmulatorAdmin) -> list[WorkflowHandle]:
    for type_ in (FLAKY, STEADY):
        await publish(fleet, type_, "1.2.0")
    name = await make_extension_set(
        fleet,
        "westeurope",
        [extension("flaky", FLAKY), extension("steady", STEADY)],
        2,
        faults=FaultSpec(failing_extension_versions=[f"{FLAKY}:1.3.0"]),
    )
    watcher = await env.client.start_workflow(
        AUTOMATIC_UPGRADES_WORKFLOW,
        AutomaticState(settings=AutomaticSettings(extension_retry_interval=timedelta(hours=1))),
        id=watcher_workflow_id(RECORDED_QUEUE),
        task_queue=RECORDED_QUEUE,
    )
    await enroll(watcher, name)
    for type_ in (FLAKY, STEADY):
        await publish(fleet, type_, "1.3.0")
    await watcher.signal(CHECK_NOW_SIGNAL)
    flaky, steady = await rollout(env.client, FLAKY, "1.3.0"), await rollout(env.client, STEADY, "1.3.0")
    assert (await finished(env, flaky)).state == RolloutState.FAULTED
    assert (await finished(env, steady)).state == RolloutState.COMPLETED
    await fleet.fix_extension_version(PUBLISHER, FLAKY, "1.3.0")
    await env.sleep(timedelta(hours=1))
    retried = await rollout(env.client, FLAKY, "1.3.0", retry=1)
    assert (await finished(env, retried)).state == RolloutState.COMPLETED
    await env.sleep(timedelta(minutes=30))  # two more looks: nothing more to do
    return [watcher, flaky, steady, retried]


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=record.__doc__)
    parser.add_argument("--out", type=Path, default=AUTOMATIC_HISTORIES)
    parser.add_argument(
        "--only", choices=["images", "extensions"], help="record one of the scenarios (default: both)"
    )
    args = parser.parse_args(argv)
    if args.only in (None, "images"):
        asyncio.run(record(args.out))
    if args.only in (None, "extensions"):
        asyncio.run(record_extensions(args.out))


if __name__ == "__main__":
    main()
