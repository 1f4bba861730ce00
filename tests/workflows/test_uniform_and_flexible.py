"""Uniform and Flexible scale sets, each upgraded through the Azure back end against the emulator:
the happy path, a bad image restored (Flexible: an OS disk swap back to the instance's earlier
disk; Uniform, which has no such call: a reimage back to the previous version),
disableAutomaticRollback, and the refusals of a scale set Azure rolls by itself. Flexible
instances go by their VM names (`{vmss}_{8 hex}`), never "0", "1"."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fleet.emulator.admin import EmulatorAdmin
from models.errors import FailureCause, RefusalCode, UpgradeErrorCode
from models.fleet import FaultSpec, OperationKind, OperationStatus, ScaleSetView
from models.status import ROLLBACK_DESCRIPTIONS, ROLLED_BACK_BY, RollbackMethod, RollingUpgradeStatusCode
from models.upgrade import InstanceState
from starter.upgrades import UpgradeRefused
from tests.helpers.upgrades import V1, V2, count_ops, finish, make_scale_set, upgrade

MODES = pytest.mark.parametrize("mode", ["Uniform", "Flexible"])


async def scale_set(fleet: EmulatorAdmin, capacity: int, mode: str, **spec: Any) -> tuple[str, ScaleSetView]:
    name = await make_scale_set(fleet, capacity, update_domains=1, orchestration_mode=mode, **spec)
    view = await fleet.show_scale_set(name)
    assert view.orchestration_mode == mode
    return name, view


def ids_of(view: ScaleSetView) -> list[str]:
    return [i.instance_id for i in view.instances]


def check_ids(mode: str, name: str, ids: list[str]) -> None:
    if mode == "Flexible":
        assert all(re.fullmatch(rf"{re.escape(name)}_[0-9a-f]{{8}}", i) for i in ids), ids
    else:
        assert ids == [str(n) for n in range(len(ids))]


@MODES
async def test_the_happy_path_upgrades_every_instance_once(ts_env, ts_worker, fleet, mode):
    name, before = await scale_set(fleet, 4, mode)
    ids = ids_of(before)
    check_ids(mode, name, ids)
    handle, admission = await upgrade(ts_env.client, ts_worker.task_queue, name)
    assert admission.instance_count == 4
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert status.error is None
    assert (status.progress.successful_instance_count, status.progress.failed_instance_count) == (4, 0)
    assert sorted(i.instance_id for i in report.instances) == sorted(ids)
    assert all(i.state == InstanceState.SUCCEEDED for i in report.instances)
    after = await fleet.show_scale_set(name)
    assert all(i.image_reference.same_image(V2) for i in after.instances)
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {i: 1 for i in ids}
    assert count_ops(ops, OperationKind.RESTORE) == {}
    assert {op.status for op in ops} == {OperationStatus.SUCCEEDED}


@MODES
async def test_a_bad_image_is_restored_the_way_the_mode_allows(ts_env, ts_worker, fleet, mode):
    name, before = await scale_set(fleet, 4, mode, faults=FaultSpec(unhealthy_images=[V2.version]))
    disks = {i.instance_id: i.os_disk.name for i in before.instances}
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert status.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    rolled_back = [i.instance_id for i in report.instances if i.state == InstanceState.ROLLED_BACK]
    assert rolled_back  # the first batch, and nothing after it
    assert all(
        i.state == InstanceState.NOT_STARTED for i in report.instances if i.instance_id not in rolled_back
    )
    assert report.rollback_info.successfully_rolledback_instance_count == len(rolled_back)
    # What the rollback did, said exactly: in the status, the history's rollbackInfo, each instance.
    method = {
        "Uniform": RollbackMethod.REIMAGE_TO_PREVIOUS_VERSION,
        "Flexible": RollbackMethod.OS_DISK_SWAP,
    }[mode]
    entry = report.history_entry(None).properties.rollback_info
    for info in (report.rollback_info, status.rollback_info, entry):
        assert (info.rollback_method, info.rollback_description) == (method, ROLLBACK_DESCRIPTIONS[method])
        assert info.successfully_rolledback_instance_count == len(rolled_back)
    said = {
        "Uniform": ("reimaged back to the image version it had", "contents are lost"),
        "Flexible": ("deallocated, its previous OS disk swapped back in", "contents are kept"),
    }[mode]
    assert all(words in ROLLBACK_DESCRIPTIONS[method] for words in said)
    messages = [i.message or "" for i in report.instances if i.instance_id in rolled_back]
    assert all(ROLLED_BACK_BY[method] in message for message in messages), messages

    after = {i.instance_id: i for i in (await fleet.show_scale_set(name)).instances}
    assert all(i.image_reference.same_image(V1) for i in after.values())
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {i: 1 for i in rolled_back}
    assert count_ops(ops, OperationKind.RESTORE) == {i: 1 for i in rolled_back}
    restores = [op for op in ops if op.instance_id in rolled_back and op.kind != OperationKind.REIMAGE]
    if mode == "Flexible":
        # An OS disk swap, which Azure does only on a deallocated VM: deallocate, swap, start,
        # each once; the instance boots again from the very disk it had before.
        for instance_id in rolled_back:
            steps = sorted(
                (op for op in restores if op.instance_id == instance_id), key=lambda op: op.start_time
            )
            assert [op.kind for op in steps] == [
                OperationKind.DEALLOCATE,
                OperationKind.RESTORE,
                OperationKind.START,
            ]
        assert all(
            after[i].os_disk.name == disks[i] and after[i].power_state == "running" for i in rolled_back
        )
    else:
        # No restore call on Uniform: a second reimage, to the previous version, on a new disk.
        assert restores == []
        back = [op for op in ops if op.image_reference and op.image_reference.same_image(V1)]
        assert sorted(op.instance_id for op in back) == sorted(rolled_back)
        assert all(after[i].os_disk.name != disks[i] for i in rolled_back)


@MODES
async def test_disable_automatic_rollback_leaves_failed_instances_on_the_new_image(
    ts_env, ts_worker, fleet, mode
):
    name, before = await scale_set(fleet, 4, mode)
    failing = ids_of(before)[1]
    await fleet.set_faults(name, FaultSpec(unhealthy_after_upgrade=[failing]))
    # Any unhealthy upgraded instance breaches the policy, whichever batch it is in.
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        disable_automatic_rollback=True,
        policy={"maxUnhealthyUpgradedInstancePercent": 0},
    )
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert status.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    assert status.progress.failed_instance_count == 1
    failed = next(i for i in report.instances if i.instance_id == failing)
    assert (failed.state, failed.cause) == (InstanceState.FAILED, FailureCause.HEALTH)
    assert report.rollback_info.successfully_rolledback_instance_count == 0
    instance = next(i for i in (await fleet.show_scale_set(name)).instances if i.instance_id == failing)
    assert instance.image_reference.same_image(V2)
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.RESTORE) == {}
    assert count_ops(ops, OperationKind.REIMAGE)[failing] == 1


@MODES
@pytest.mark.parametrize(
    ("spec", "code", "field", "change"),
    [
        (
            {"upgrade_mode": "Automatic"},
            RefusalCode.UPGRADE_MODE_NOT_MANUAL,
            "upgradePolicy.mode Automatic",
            "--set upgradePolicy.mode=Manual",
        ),
        (
            {"upgrade_mode": "Rolling"},
            RefusalCode.UPGRADE_MODE_NOT_MANUAL,
            "upgradePolicy.mode Rolling",
            "--set upgradePolicy.mode=Manual",
        ),
        (
            {"automatic_os_upgrade": True},
            RefusalCode.AUTOMATIC_OS_UPGRADE_ENABLED,
            "upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade on",
            "--set upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade=false",
        ),
    ],
)
async def test_a_scale_set_azure_rolls_itself_is_refused_before_anything_starts(
    ts_env, ts_worker, fleet, mode, spec, code, field, change
):
    name, _ = await scale_set(fleet, 3, mode, **spec)
    with pytest.raises(UpgradeRefused) as refused:
        await upgrade(ts_env.client, ts_worker.task_queue, name)

    assert refused.value.code == code
    assert f"scale set {name!r} has {field}" in refused.value.message
    assert f"az vmss update --resource-group <group> --name {name} {change}" in refused.value.message
    assert await fleet.operations(name) == []
    after = await fleet.show_scale_set(name)
    assert all(i.image_reference.same_image(V1) for i in after.instances)
