"""MaxSurge under SIGKILL on a real dev server: the worker (`python -m worker`) is killed right
after ARM accepted a surge batch's capacity raise and again right after it accepted the batch's
delete, both answers still on their way (so no attempt kept the operation), and restarted. The
retried activities read the set before sending anything: every new instance is created once,
every old one deleted once, no capacity is left over and the set never serves fewer instances
than its size (from the emulator's operations log and instance records)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

import pytest

from models import steps
from models.fleet import FaultSpec, FleetOperation, OperationKind, OperationStatus, TimingSpec
from models.policy import ApplicationHealthSettings
from models.status import RollingUpgradeStatusCode
from starter.upgrades import UpgradeHandle, final_report
from tests.helpers.arm import fewest_serving
from tests.helpers.upgrades import V2, WorkerProcesses, count_ops, eventually, make_scale_set, upgrade

SURGE = {"maxSurge": True, "maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}
# A create or a delete takes a reimage's time: 2 s, still running when the worker dies.
TIMING = TimingSpec(reimage_seconds=[2, 2], restore_seconds=[0, 0], boot_seconds=[0.3, 0.3])
# Every ARM answer of the set comes this late after its request took effect: the raise or the
# delete is accepted and its answer (the status URL) still on its way when the test, polling the
# emulator's log every 0.1 s, kills the worker.
SLOW_ANSWERS = FaultSpec(timeout_share=1.0, timeout_seconds=0.8)
# Reads answer late too: a health wait long enough for a few of them.
HEALTH = ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout=timedelta(seconds=30))


async def attempts(handle: UpgradeHandle, activity_type: str) -> list[int]:
    """The attempt on which each of the upgrade's activities of this type completed."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and scheduled[e.activity_task_started_event_attributes.scheduled_event_id] == activity_type
    ]


def accepted(kind: OperationKind) -> Callable[[list[FleetOperation]], bool]:
    return lambda ops: any(op.kind == kind and op.status == OperationStatus.IN_PROGRESS for op in ops)


async def test_worker_killed_after_a_surge_batch_create_and_its_delete_were_accepted(
    local_env, fleet, emulator, tmp_path
):
    name = await make_scale_set(
        fleet, 4, zones=["1", "2"], update_domains=1, timing=TIMING, faults=SLOW_ANSWERS
    )
    workers = WorkerProcesses(local_env.client.service_client.config.target_host, emulator, tmp_path)
    await workers.start()
    try:
        handle, _ = await upgrade(local_env.client, workers.task_queue, name, health=HEALTH, policy=SURGE)
        at_create = await eventually(lambda: fleet.operations(name), accepted(OperationKind.CREATE), 60)
        await workers.crash()
        at_delete = await eventually(lambda: fleet.operations(name), accepted(OperationKind.DELETE), 60)
        await workers.crash()
        await fleet.set_faults(name, FaultSpec())  # the rest at full speed
        report = await asyncio.wait_for(final_report(handle), 120)
    finally:
        workers.stop()

    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    old = ["0", "1", "2", "3"]
    replaced = {i.replaces: i.instance_id for i in report.instances}
    assert sorted(replaced, key=int) == old and not set(replaced.values()) & set(old)
    # The first batch's create and delete each ran a second attempt, after the kill.
    assert await attempts(handle, steps.CREATE_INSTANCES) == [2, 1]
    assert await attempts(handle, steps.DELETE_INSTANCES) == [2, 1]
    ops = await fleet.operations(name)
    # The kills landed on the create and the delete of the first batch, which ran once each.
    assert {op.instance_id for op in at_create if op.kind == OperationKind.CREATE} <= set(replaced.values())
    assert {op.instance_id for op in at_delete if op.kind == OperationKind.DELETE} <= set(old)
    assert count_ops(ops, OperationKind.CREATE) == {new: 1 for new in replaced.values()}
    assert count_ops(ops, OperationKind.DELETE) == {i: 1 for i in old}
    assert count_ops(ops, OperationKind.REIMAGE) == {}
    assert {op.status for op in ops} == {OperationStatus.SUCCEEDED}
    # No capacity left over: the set is its new instances, as many as it had, all on the target.
    view = await fleet.show_scale_set(name)
    assert view.capacity == 4
    assert sorted(i.instance_id for i in view.instances) == sorted(replaced.values())
    assert all(i.image_reference.resolved_version == V2.version for i in view.instances)
    records = await fleet.instance_records(name)
    assert len(records) == 8
    assert fewest_serving(records) >= 4 and fewest_serving(records, ready=True) >= 4


pytestmark = pytest.mark.durability
