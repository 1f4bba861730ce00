"""The absolute limits end to end: RollingUpgradeWorkflow on the time-skipping server, through the
Azure SDK to the emulator over HTTPS; what the emulator's operations log shows."""

from __future__ import annotations

from models.errors import UpgradeErrorCode
from models.fleet import FaultSpec, FleetOperation, OperationKind, TimingSpec
from models.status import RollingUpgradeStatusCode
from models.upgrade import InstanceState
from tests.helpers.automatic import in_flight
from tests.helpers.upgrades import count_ops, finish, make_scale_set, upgrade

HALF = {"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}


def most_in_flight(ops: list[FleetOperation]) -> int:
    """The most reimages in flight at once (sent, not yet booted), by the emulator's clock."""
    edges = sorted(
        (moment, step)
        for op in ops
        if op.kind == OperationKind.REIMAGE
        for moment, step in zip(in_flight([op]), (1, -1), strict=True)
    )  # (an end sorts before a start at the same instant: -1 < 1)
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


async def test_max_batch_instance_count_caps_batches_below_the_percent(ts_env, ts_worker, fleet):
    # 50% of 12 would be batches of 6; maxBatchInstanceCount 3 keeps 3 in flight at most.
    timing = TimingSpec(reimage_seconds=[0.2, 0.4], restore_seconds=[0, 0], boot_seconds=[0.1, 0.2])
    name = await make_scale_set(fleet, 12, update_domains=1, timing=timing)
    handle, admission = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={**HALF, "maxBatchInstanceCount": 3}
    )
    assert admission.planned_batches == 4
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert status.progress.successful_instance_count == 12
    assert report.batches == 4
    # The status carries the policy it ran with, the count included.
    assert status.policy.to_json()["maxBatchInstanceCount"] == 3
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {str(i): 1 for i in range(12)}
    assert most_in_flight(ops) == 3


async def test_max_unhealthy_upgraded_instance_count_stops_within_the_percent(ts_env, ts_worker, fleet):
    # The percent allows every upgraded instance to fail; the count allows one. Batches of two
    # (20% of 10): batch 1 loses instance 1 (1 of 2, allowed), batch 2 loses 3 (2 of 4): it stops.
    name = await make_scale_set(
        fleet, 10, update_domains=1, faults=FaultSpec(unhealthy_after_upgrade=["1", "3"])
    )
    policy = {"maxUnhealthyUpgradedInstancePercent": 100, "maxUnhealthyUpgradedInstanceCount": 1}
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=policy)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert status.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    assert (
        "2 of 4 upgraded instances (50%) are unhealthy; the policy allows 1 "
        "(maxUnhealthyUpgradedInstanceCount)."
    ) in status.error.message
    ops = await fleet.operations(name)
    # Two batches ran (the failed instances restored); no third started.
    assert count_ops(ops, OperationKind.REIMAGE) == {str(i): 1 for i in range(4)}
    assert count_ops(ops, OperationKind.RESTORE) == {"1": 1, "3": 1}
    states = {i.instance_id: i.state for i in report.instances}
    assert {i for i, s in states.items() if s == InstanceState.NOT_STARTED} == {str(i) for i in range(4, 10)}
