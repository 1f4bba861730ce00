"""Crashes and restarts on a real dev server: the worker is a separate process killed with
SIGKILL at chosen moments, the dev server and the emulator are stopped and started again.
Every test asserts from the emulator's operations log (exact counts per instance) and from the
final status, which must equal what the same run gives without a crash."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from fleet.emulator.admin import EmulatorAdmin
from models.fleet import FaultSpec, FleetOperation, OperationKind, OperationStatus, TimingSpec
from models.policy import ApplicationHealthSettings
from models.status import RollingUpgradeStatusCode, RollingUpgradeStatusInfo
from models.upgrade import InstanceState, UpgradeReport
from starter import processes
from starter.processes import EmulatorAddress
from starter.upgrades import final_report, get_status
from tests.helpers.upgrades import (
    QUICK_HEALTH,
    V2,
    WorkerProcesses,
    action,
    count_ops,
    eventually,
    make_scale_set,
    upgrade,
)
from worker.connection import connect

Moment = Callable[[list[FleetOperation], RollingUpgradeStatusInfo], bool]
# A Flexible restore: Azure swaps an OS disk only on a deallocated VM.
SWAP_STEPS = [OperationKind.DEALLOCATE, OperationKind.RESTORE, OperationKind.START]


@dataclass
class Scenario:
    capacity: int = 10
    timing: TimingSpec = field(
        default_factory=lambda: TimingSpec(
            reimage_seconds=[0.3, 0.3], restore_seconds=[0.3, 0.3], boot_seconds=[0.3, 0.3]
        )
    )
    faults: FaultSpec = field(default_factory=FaultSpec)
    policy: dict[str, Any] = field(default_factory=dict)
    health: ApplicationHealthSettings = field(default_factory=lambda: QUICK_HEALTH)
    orchestration_mode: str = "Uniform"


def outcome(report: UpgradeReport) -> dict[str, Any]:
    """What must not depend on a crash: codes, counts, and every instance's fate."""
    status = report.status.properties
    # Instances by their place in the set: two Flexible sets' VMs have different names.
    place = {i.instance_id: str(n) for n, i in enumerate(report.instances)}
    details = status.error.details or [] if status.error else []
    return {
        "code": status.running_status.code,
        "progress": status.progress.to_json(),
        "error": status.error.code if status.error else None,
        "failed": sorted(place.get(d.target, d.target) for d in details),
        "instances": {place[i.instance_id]: (i.state, i.cause, i.code, i.batch) for i in report.instances},
    }


@dataclass
class Run:
    report: UpgradeReport
    ops: list[FleetOperation]  # the emulator's log of accepted operations, at the end
    at_crash: list[FleetOperation]  # ... and just before the worker was killed


async def run(
    client: Any, fleet: EmulatorAdmin, workers: WorkerProcesses, scenario: Scenario, crash_at: Moment | None
) -> Run:
    name = await make_scale_set(
        fleet,
        scenario.capacity,
        update_domains=1,
        timing=scenario.timing,
        faults=scenario.faults,
        orchestration_mode=scenario.orchestration_mode,
    )
    await workers.start()
    at_crash: list[FleetOperation] | None = None
    try:
        handle, _ = await upgrade(
            client, workers.task_queue, name, health=scenario.health, policy=scenario.policy
        )
        if crash_at is not None:

            async def moment() -> list[FleetOperation] | None:
                ops = await fleet.operations(name)
                return ops if crash_at(ops, await get_status(client, name)) else None

            at_crash = await eventually(moment, bool, timeout=60)
            await workers.crash()
        report = await asyncio.wait_for(final_report(handle), 240)
        return Run(report, await fleet.operations(name), at_crash or [])
    finally:
        workers.stop()


async def crash_and_compare(
    local_env: WorkflowEnvironment,
    fleet: EmulatorAdmin,
    emulator: EmulatorAddress,
    tmp_path: Path,
    scenario: Scenario,
    crash_at: Moment,
) -> Run:
    address = local_env.client.service_client.config.target_host
    baseline, crashed = await asyncio.gather(
        run(local_env.client, fleet, WorkerProcesses(address, emulator, tmp_path), scenario, None),
        run(local_env.client, fleet, WorkerProcesses(address, emulator, tmp_path), scenario, crash_at),
    )
    assert outcome(crashed.report) == outcome(baseline.report)
    # Exactly once: one reimage per upgraded instance, at most one restore, none left running.
    upgraded = {
        i.instance_id
        for i in crashed.report.instances
        if i.state.value in ("Succeeded", "RolledBack", "Failed")
    }
    assert count_ops(crashed.ops, OperationKind.REIMAGE) == {i: 1 for i in upgraded}
    # A Flexible restore's deallocate and start too (Uniform has neither).
    for kind in (OperationKind.RESTORE, OperationKind.DEALLOCATE, OperationKind.START):
        assert all(n == 1 for n in count_ops(crashed.ops, kind).values()), kind
        assert len(count_ops(crashed.ops, kind)) == len(count_ops(baseline.ops, kind)), kind
    assert {op.status for op in crashed.ops} <= {OperationStatus.SUCCEEDED}
    return crashed


def in_flight(kind: OperationKind) -> Moment:
    """An operation for `kind` is running (on Uniform a restore is a reimage to the old image)."""
    return lambda ops, _: any(action(op) == kind and op.status == OperationStatus.IN_PROGRESS for op in ops)


def caught_in_flight(run: Run, kind: OperationKind) -> list[FleetOperation]:
    """The operations of `kind` the worker had sent and that were still running when it died."""
    return [op for op in run.at_crash if action(op) == kind and op.status == OperationStatus.IN_PROGRESS]


def waiting_for_health(ops: list[FleetOperation], status: RollingUpgradeStatusInfo) -> bool:
    reimaged = [op for op in ops if op.kind == OperationKind.REIMAGE]
    return (
        len(reimaged) == 2
        and all(op.status == OperationStatus.SUCCEEDED for op in reimaged)
        and status.properties.progress.in_progress_instance_count == 2
    )


def pausing(ops: list[FleetOperation], status: RollingUpgradeStatusInfo) -> bool:
    progress = status.properties.progress
    return progress.successful_instance_count == 2 and progress.in_progress_instance_count == 0


async def test_worker_killed_during_reimages(local_env, fleet, emulator, tmp_path):
    scenario = Scenario(
        timing=TimingSpec(reimage_seconds=[3, 3], restore_seconds=[0, 0], boot_seconds=[0, 0])
    )
    crashed = await crash_and_compare(
        local_env, fleet, emulator, tmp_path, scenario, in_flight(OperationKind.REIMAGE)
    )
    assert crashed.report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    # The new worker found the reimages in flight and waited for them: each is its instance's
    # only reimage, and it succeeded.
    caught = caught_in_flight(crashed, OperationKind.REIMAGE)
    assert caught
    final = {op.operation_id: op for op in crashed.ops}
    for op in caught:
        assert final[op.operation_id].status == OperationStatus.SUCCEEDED
        assert count_ops(crashed.ops, OperationKind.REIMAGE)[op.instance_id] == 1


async def test_worker_killed_during_the_health_wait(local_env, fleet, emulator, tmp_path):
    scenario = Scenario(
        timing=TimingSpec(reimage_seconds=[0.2, 0.2], restore_seconds=[0, 0], boot_seconds=[4, 4])
    )
    scenario.health = ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout="PT60S")
    crashed = await crash_and_compare(local_env, fleet, emulator, tmp_path, scenario, waiting_for_health)
    assert crashed.report.status.properties.progress.successful_instance_count == 10


async def test_worker_killed_during_the_pause_between_batches(local_env, fleet, emulator, tmp_path):
    scenario = Scenario(capacity=6, policy={"pauseTimeBetweenBatches": "PT4S"})
    crashed = await crash_and_compare(local_env, fleet, emulator, tmp_path, scenario, pausing)
    # The pause still separated every batch, crash or not.
    by_batch = sorted(crashed.report.instances, key=lambda i: i.batch)
    gaps = [b.start_time - a.end_time for a, b in itertools.pairwise(by_batch) if a.batch != b.batch]
    assert gaps and all(gap.total_seconds() >= 4 for gap in gaps)


async def test_worker_killed_during_a_rollback(local_env, fleet, emulator, tmp_path):
    scenario = Scenario(
        timing=TimingSpec(reimage_seconds=[0.2, 0.2], restore_seconds=[3, 3], boot_seconds=[0, 0]),
        faults=FaultSpec(unhealthy_after_upgrade=["1"]),
        policy={"maxUnhealthyUpgradedInstancePercent": 50},
    )
    crashed = await crash_and_compare(
        local_env, fleet, emulator, tmp_path, scenario, in_flight(OperationKind.RESTORE)
    )
    # The restore the dead worker had sent (a reimage back to the previous version) is the only one.
    assert [op.instance_id for op in caught_in_flight(crashed, OperationKind.RESTORE)] == ["1"]
    assert count_ops(crashed.ops, OperationKind.RESTORE) == {"1": 1}
    assert crashed.report.status.properties.progress.failed_instance_count == 1


@pytest.mark.parametrize(
    "step", [OperationKind.DEALLOCATE, OperationKind.RESTORE, OperationKind.START], ids=lambda k: k.value
)
async def test_worker_killed_during_each_step_of_a_flexible_os_disk_swap(
    local_env, fleet, emulator, tmp_path, step
):
    # Azure swaps an OS disk only on a deallocated VM: deallocate, swap, start, each long enough
    # for the kill to land while it runs. The new worker reads the VM (power state, OS disk),
    # waits for the step in flight and resumes at the next: no step twice, none skipped.
    scenario = Scenario(
        capacity=4,
        timing=TimingSpec(
            reimage_seconds=[0.2, 0.2], restore_seconds=[3, 3], boot_seconds=[0, 0], power_seconds=[3, 3]
        ),
        faults=FaultSpec(unhealthy_images=[V2.version]),
        orchestration_mode="Flexible",
    )
    crashed = await crash_and_compare(local_env, fleet, emulator, tmp_path, scenario, in_flight(step))
    caught = caught_in_flight(crashed, step)
    assert len(caught) == 1
    instance_id = caught[0].instance_id
    ops = sorted((op for op in crashed.ops if op.instance_id == instance_id), key=lambda op: op.start_time)
    assert [op.kind for op in ops] == [OperationKind.REIMAGE, *SWAP_STEPS]
    # The step the dead worker had sent is the one the VM got; the steps after it came once.
    assert next(op for op in ops if op.kind == step).operation_id == caught[0].operation_id
    rolled_back = next(i for i in crashed.report.instances if i.instance_id == instance_id)
    assert (rolled_back.state, rolled_back.restored) == (InstanceState.ROLLED_BACK, True)


async def test_the_upgrade_completes_across_a_dev_server_restart(fleet, emulator, tmp_path):
    port, ui_port = processes.free_port(), processes.free_port()
    database = tmp_path / "temporal.db"
    server = processes.start_dev_server(port, ui_port, database, tmp_path / "server-1.log")
    workers = WorkerProcesses(f"127.0.0.1:{port}", emulator, tmp_path)
    try:
        client = await connect(f"127.0.0.1:{port}")
        name = await make_scale_set(
            fleet,
            10,
            update_domains=1,
            timing=TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[0, 0]),
        )
        await workers.start()
        handle, _ = await upgrade(client, workers.task_queue, name)
        await eventually(lambda: fleet.operations(name), lambda ops: len(ops) >= 4, timeout=60)

        processes.stop(server)  # the whole Temporal service goes away mid-upgrade ...
        await asyncio.sleep(2)
        server = processes.start_dev_server(
            port, ui_port, database, tmp_path / "server-2.log"
        )  # ... and comes back

        report = await asyncio.wait_for(final_report(handle), 180)
        assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
        assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {
            str(i): 1 for i in range(10)
        }
    finally:
        workers.stop()
        processes.stop(server)


async def test_the_upgrade_completes_across_an_emulator_restart(local_env, tmp_path):
    port = processes.free_port()
    database = tmp_path / "fleet.db"
    emulator = processes.start_emulator(port, database, tmp_path / "fleet-1.log")
    address = processes.EmulatorAddress.of(port, database)
    workers = WorkerProcesses(local_env.client.service_client.config.target_host, address, tmp_path)
    try:
        async with EmulatorAdmin(address.url, address.ca_file, timeout=5) as fleet:
            name = await make_scale_set(
                fleet,
                10,
                update_domains=1,
                timing=TimingSpec(reimage_seconds=[2, 2], restore_seconds=[0, 0], boot_seconds=[0, 0]),
            )
            await workers.start()
            handle, _ = await upgrade(local_env.client, workers.task_queue, name)
            at_kill = await eventually(lambda: fleet.operations(name), in_flight_reimage, timeout=60)

            emulator.send_signal(signal.SIGKILL)  # the cloud API dies with operations in flight
            emulator.wait()
            await asyncio.sleep(3)  # long enough for those operations' time to pass
            emulator = processes.start_emulator(port, database, tmp_path / "fleet-2.log")

            report = await asyncio.wait_for(final_report(handle), 180)
            ops = await fleet.operations(name)
        assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
        assert count_ops(ops, OperationKind.REIMAGE) == {str(i): 1 for i in range(10)}
        # The operations caught by the restart completed in the emulator's saved state; the
        # retried activities found them done (or running) and sent nothing again.
        caught = [op for op in at_kill if op.status == OperationStatus.IN_PROGRESS]
        final = {op.operation_id: op for op in ops}
        assert caught and all(final[op.operation_id].status == OperationStatus.SUCCEEDED for op in caught)
    finally:
        workers.stop()
        processes.stop(emulator)


def in_flight_reimage(ops: list[FleetOperation]) -> bool:
    return any(op.status == OperationStatus.IN_PROGRESS for op in ops)


pytestmark = pytest.mark.durability
