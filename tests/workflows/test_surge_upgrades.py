"""MaxSurge upgrades (rollingUpgradePolicy.maxSurge) end to end: on the time-skipping server,
through the Azure SDK to the emulator, asserted from the emulator's instance records and
operations log: capacity never below the set's size, each new instance created once and each old
one deleted once, a short core quota falling back in place, failed new instances deleted and the
old ones kept."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from fleet.emulator.admin import EmulatorAdmin
from models.errors import RefusalCode, UpgradeErrorCode
from models.fleet import FaultSpec, InstanceRecord, OperationKind, TimingSpec
from models.policy import UpgradePolicy
from models.status import RollingUpgradeStatusCode
from models.upgrade import InstanceState
from starter.history import history_target
from tests.helpers.arm import fewest_serving
from tests.helpers.automatic import enroll, watcher
from tests.helpers.upgrades import QUICK_HEALTH, V1, V2, count_ops, finish, make_scale_set, upgrade

SURGE = {"maxSurge": True, "maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}
TIMING = TimingSpec(reimage_seconds=[0.2, 0.4], restore_seconds=[0, 0], boot_seconds=[0.2, 0.4])
SIZE = "Standard_D2s_v3"  # 2 vCPUs, standardDSv3Family


def records_zone(records: list[InstanceRecord], instance_id: str) -> str | None:
    return next(r.zone for r in records if r.instance_id == instance_id)


async def surge_set(
    fleet: EmulatorAdmin, capacity: int, zones: tuple[str, ...] = ("1", "2"), **spec: Any
) -> tuple[str, str]:
    """A set in a region of its own (the quota counts every set of a region)."""
    region = f"r{uuid.uuid4().hex[:8]}"
    name = await make_scale_set(
        fleet,
        capacity,
        zones=list(zones),
        update_domains=1,
        timing=TIMING,
        location=region,
        vm_size=SIZE,
        **spec,
    )
    return name, region


async def test_a_surge_upgrade_creates_before_it_deletes_each_exactly_once(ts_env, ts_worker, fleet):
    name, _ = await surge_set(fleet, 6, zones=("1", "2", "3"))
    before = Counter(i.zone for i in (await fleet.show_scale_set(name)).instances)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=SURGE)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert status.progress.successful_instance_count == 6 and status.progress.failed_instance_count == 0
    records = await fleet.instance_records(name)
    assert fewest_serving(records) >= 6 and fewest_serving(records, ready=True) >= 6
    old = ["0", "1", "2", "3", "4", "5"]
    replaced = {i.replaces: i.instance_id for i in report.instances}
    assert sorted(replaced, key=int) == old and not set(replaced.values()) & set(old)
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.CREATE) == {new: 1 for new in replaced.values()}
    assert count_ops(ops, OperationKind.DELETE) == {i: 1 for i in old}
    assert count_ops(ops, OperationKind.REIMAGE) == {}  # nothing upgraded in place
    # `upgradectl history` lists what was created and deleted.
    entry = report.history_entry(None)
    assert entry.properties.replaced_instances == replaced
    assert f"deleted {', '.join(replaced)}" in history_target(entry)
    view = await fleet.show_scale_set(name)
    assert sorted(i.instance_id for i in view.instances) == sorted(replaced.values())
    assert all(i.image_reference.resolved_version == V2.version for i in view.instances)
    # Azure places new instances where zones are emptiest (among equals, where it likes); each
    # replaces an old one of its own zone while that zone has one left: no zone is drained.
    after = Counter(i.zone for i in view.instances)
    assert before == {"1": 2, "2": 2, "3": 2} and all(abs(after[z] - 2) <= 1 for z in before), after
    for instance in report.instances:
        assert instance.zone == records_zone(records, instance.instance_id)
        moved = instance.zone != records_zone(records, str(instance.replaces))
        assert moved == ("Azure placed it there" in (instance.message or "")), instance


async def test_a_batch_without_core_quota_for_its_new_instances_is_upgraded_in_place(
    ts_env, ts_worker, fleet
):
    name, region = await surge_set(fleet, 4)
    await fleet.set_core_quota(region, "standardDSv3Family", 4 * 2 + 1)  # room for no new VM of 2 vCPUs
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=SURGE)
    report = await finish(ts_env, handle)

    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.CREATE) == {} and count_ops(ops, OperationKind.DELETE) == {}
    assert count_ops(ops, OperationKind.REIMAGE) == {i: 1 for i in ["0", "1", "2", "3"]}
    for instance in report.instances:
        assert instance.replaces is None
        assert (
            instance.message
            and "upgraded in place" in instance.message
            and "standardDSv3Family" in instance.message
        )


async def test_new_instances_that_fail_health_are_deleted_and_the_old_ones_kept(ts_env, ts_worker, fleet):
    name, _ = await surge_set(fleet, 4, faults=FaultSpec(unhealthy_images=[V2.version]))
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=SURGE)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert status.error is not None and status.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    failed = [i for i in report.instances if i.state == InstanceState.ROLLED_BACK]
    assert len(failed) == 2 and all(i.replaces is None and "deleted" in (i.message or "") for i in failed)
    ops = await fleet.operations(name)
    created = count_ops(ops, OperationKind.CREATE)
    assert len(created) == 2 and count_ops(ops, OperationKind.DELETE) == {new: 1 for new in created}
    view = await fleet.show_scale_set(name)
    # The set is as it was: its four instances, on the old image, never fewer than four serving.
    assert sorted(i.instance_id for i in view.instances) == ["0", "1", "2", "3"]
    assert all(i.image_reference.resolved_version == V1.version for i in view.instances)
    assert fewest_serving(await fleet.instance_records(name)) >= 4


async def test_enrolling_a_flexible_set_for_automatic_upgrades_with_max_surge_is_refused_naming_it(
    ts_env, ts_worker, fleet
):
    name = await make_scale_set(fleet, 2, orchestration_mode="Flexible")
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    surge = UpgradePolicy.model_validate(
        {
            "automaticOSUpgradePolicy": {"useRollingUpgradePolicy": True},
            "rollingUpgradePolicy": {"maxSurge": True},
            "applicationHealth": QUICK_HEALTH.to_json(),
        }
    )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await enroll(handle, name, surge, policy_given=["maxSurge"])
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == RefusalCode.MAX_SURGE_NOT_SUPPORTED
    assert cause.message.startswith("rollingUpgradePolicy.maxSurge: scale set")
    assert (await enroll(handle, name)).scale_set == name  # without maxSurge it enrolls
