"""RollingUpgradeWorkflow end to end on the time-skipping server, against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import pytest

from models.errors import FailureCause, RefusalCode, UpgradeErrorCode
from models.fleet import FaultSpec, GoUnhealthy, HealthState, OperationKind, TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings
from models.status import RollingUpgradeActionType, RollingUpgradeStatusCode
from models.upgrade import InstanceState
from starter.upgrades import UpgradeRefused, cancel_upgrade, get_status
from tests.helpers.upgrades import V1, V2, action, count_ops, eventually, finish, make_scale_set, upgrade

COMPLETED = RollingUpgradeStatusCode.COMPLETED
FAULTED = RollingUpgradeStatusCode.FAULTED


async def test_happy_path_upgrades_every_instance_and_counts_add_up(ts_env, ts_worker, fleet):
    timing = TimingSpec(reimage_seconds=[0.1, 0.3], restore_seconds=[0, 0], boot_seconds=[0.1, 0.3])
    name = await make_scale_set(fleet, 20, zones=["1", "2", "3"], update_domains=2, timing=timing)
    before = {i.instance_id: i for i in (await fleet.show_scale_set(name)).instances}

    handle, admission = await upgrade(ts_env.client, ts_worker.task_queue, name)
    assert (admission.instance_count, admission.to_upgrade, admission.skipped) == (20, 20, 0)
    assert admission.target_image.exact_version == "2024.12.01"

    snapshots = []
    result = asyncio.ensure_future(finish(ts_env, handle))
    while not result.done():
        snapshots.append(await get_status(ts_env.client, name))
        await asyncio.sleep(0.05)
    report = await result

    assert report.status.properties.running_status.code == COMPLETED
    assert report.status.properties.error is None
    progress = report.status.properties.progress
    assert (progress.successful_instance_count, progress.failed_instance_count) == (20, 0)
    # Every status taken while it ran accounts for all 20 instances, and it was seen moving.
    assert len(snapshots) > 5
    assert all(s.properties.progress.total == 20 for s in snapshots)
    assert any(s.properties.progress.in_progress_instance_count for s in snapshots)

    after = await fleet.show_scale_set(name)
    for instance in after.instances:
        assert instance.image_reference.same_image(V2)
        assert instance.health == HealthState.HEALTHY
        assert instance.data_disks == before[instance.instance_id].data_disks
        assert instance.os_disk.name != before[instance.instance_id].os_disk.name
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {str(i): 1 for i in range(20)}
    assert count_ops(ops, OperationKind.RESTORE) == {}

    # Batches never mixed zones or update domains, and never exceeded 20% (4 instances).
    batches: dict[int, set[tuple[str | None, int]]] = {}
    sizes: dict[int, int] = {}
    for instance in report.instances:
        batches.setdefault(instance.batch, set()).add((instance.zone, instance.update_domain))
        sizes[instance.batch] = sizes.get(instance.batch, 0) + 1
    assert all(len(domains) == 1 for domains in batches.values())
    assert max(sizes.values()) <= 4


async def test_bad_image_rolls_back_and_faults_after_the_breaching_batch(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10, update_domains=1, faults=FaultSpec(unhealthy_images=[V2.version]))
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == FAULTED
    assert status.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    # The message names the figures and the first failed instance.
    assert "2 of 2 upgraded instances (100%) are unhealthy" in status.error.message
    assert "policy allows 20%" in status.error.message
    assert (
        "Most common error: ApplicationUnhealthy on 2 instance(s), "
        "e.g. 0 (Unhealthy after the PT2S health wait" in status.error.message
    )
    assert {d.target for d in status.error.details} == {"0", "1"}
    assert status.progress.failed_instance_count == 2
    assert status.progress.pending_instance_count == 8

    states = {i.instance_id: i for i in report.instances}
    assert {i for i, s in states.items() if s.state == InstanceState.ROLLED_BACK} == {"0", "1"}
    assert all(states[str(i)].state == InstanceState.NOT_STARTED for i in range(2, 10))
    assert states["0"].cause == FailureCause.HEALTH
    assert states["0"].code == "ApplicationUnhealthy"
    assert report.rollback_info.successfully_rolledback_instance_count == 2

    # The emulator shows the previous image back on the restored instances; nothing else ran.
    after = {i.instance_id: i for i in (await fleet.show_scale_set(name)).instances}
    assert all(after[i].image_reference.same_image(V1) for i in after)
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {"0": 1, "1": 1}
    assert count_ops(ops, OperationKind.RESTORE) == {"0": 1, "1": 1}


async def test_failures_below_threshold_continue_and_complete_with_the_failed_count(ts_env, ts_worker, fleet):
    timing = TimingSpec(reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0.3, 0.3])
    name = await make_scale_set(
        fleet, 10, update_domains=1, timing=timing, faults=FaultSpec(unhealthy_after_upgrade=["5"])
    )
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    seen_while_rolling = set()
    result = asyncio.ensure_future(finish(ts_env, handle))
    while not result.done():
        status = (await get_status(ts_env.client, name)).properties
        if status.running_status.code == RollingUpgradeStatusCode.ROLLING_FORWARD and status.error:
            seen_while_rolling.add(status.error.code)
        await asyncio.sleep(0.05)
    report = await result

    assert seen_while_rolling == {UpgradeErrorCode.IN_PROGRESS_WITH_FAILED_VMS}
    status = report.status.properties
    assert status.running_status.code == COMPLETED
    assert (status.progress.successful_instance_count, status.progress.failed_instance_count) == (9, 1)
    assert status.error.code == UpgradeErrorCode.IN_PROGRESS_WITH_FAILED_VMS
    assert [d.target for d in status.error.details] == ["5"]
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {str(i): 1 for i in range(10)}
    assert count_ops(ops, OperationKind.RESTORE) == {"5": 1}


async def test_pre_upgrade_gate_faults_without_touching_any_instance(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10)
    for instance_id in ("2", "5", "7"):
        await fleet.set_health(name, instance_id, HealthState.UNHEALTHY)

    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)

    error = report.status.properties.error
    assert report.status.properties.running_status.code == FAULTED
    assert error.code == UpgradeErrorCode.UNHEALTHY_EXCEEDED_BEFORE_UPGRADE
    assert "3 of 10 instances (30%) were unhealthy before the upgrade" in error.message
    assert "The policy allows 20%" in error.message
    assert await fleet.operations(name) == []
    assert all(i.state == InstanceState.NOT_STARTED for i in report.instances)


async def test_in_flight_gate_stops_at_the_end_of_the_current_batch(ts_env, ts_worker, fleet):
    faults = FaultSpec(go_unhealthy=[GoUnhealthy(after_reimages=2, instances=["6", "7", "8"])])
    name = await make_scale_set(fleet, 10, update_domains=1, faults=faults)

    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)

    error = report.status.properties.error
    assert error.code == UpgradeErrorCode.UNHEALTHY_EXCEEDED_IN_UPGRADE
    assert "3 of 10 instances (30%) were unhealthy during the upgrade" in error.message
    assert "Unhealthy instances: 6, 7, 8" in error.message
    # The first batch (0, 1) finished; no later batch started.
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {"0": 1, "1": 1}
    states = {i.instance_id: i.state for i in report.instances}
    assert states["0"] == states["1"] == InstanceState.SUCCEEDED
    assert {s for i, s in states.items() if i not in ("0", "1")} == {InstanceState.NOT_STARTED}


async def test_disable_automatic_rollback_leaves_failed_instances_on_the_new_image(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10, update_domains=1, faults=FaultSpec(unhealthy_after_upgrade=["1"]))
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, disable_automatic_rollback=True)
    report = await finish(ts_env, handle)

    assert report.status.properties.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    failed = next(i for i in report.instances if i.instance_id == "1")
    assert failed.state == InstanceState.FAILED
    assert failed.cause == FailureCause.HEALTH
    assert report.status.properties.progress.failed_instance_count == 1
    instance = next(i for i in (await fleet.show_scale_set(name)).instances if i.instance_id == "1")
    assert instance.image_reference.same_image(V2)
    assert count_ops(await fleet.operations(name), OperationKind.RESTORE) == {}


async def test_rollback_on_policy_breach_restores_failed_instances(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10, update_domains=1, faults=FaultSpec(unhealthy_after_upgrade=["1"]))
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        disable_automatic_rollback=True,
        policy={"rollbackFailedInstancesOnPolicyBreach": True},
    )
    report = await finish(ts_env, handle)

    assert report.status.properties.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    restored = next(i for i in report.instances if i.instance_id == "1")
    assert restored.state == InstanceState.ROLLED_BACK
    assert "on the policy breach: reimaged back to the previous image version" in restored.message
    assert "its contents are lost" in restored.message
    instance = next(i for i in (await fleet.show_scale_set(name)).instances if i.instance_id == "1")
    assert instance.image_reference.same_image(V1)
    assert count_ops(await fleet.operations(name), OperationKind.RESTORE) == {"1": 1}


async def test_pause_between_batches_is_a_durable_timer(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)  # batches of 1
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        policy={"maxBatchInstancePercent": 20, "pauseTimeBetweenBatches": "PT2H"},
    )
    report = await finish(ts_env, handle)

    assert report.status.properties.running_status.code == COMPLETED
    # Six batches, five pauses of two hours between them (none after the last), skipped in
    # seconds of real time.
    by_batch = sorted(report.instances, key=lambda i: i.batch)
    gaps = [later.start_time - earlier.end_time for earlier, later in itertools.pairwise(by_batch)]
    assert len(gaps) == 5
    assert all(timedelta(hours=2) <= gap < timedelta(hours=2, minutes=1) for gap in gaps)
    # (The server's clock after the end says nothing: an idle time-skipping server jumps ahead.)


async def test_default_health_wait_gives_an_instance_five_minutes(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 1, faults=FaultSpec(unhealthy_images=[V2.version]))
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, health=ApplicationHealthSettings())
    report = await finish(ts_env, handle)

    instance = report.instances[0]
    assert instance.state == InstanceState.ROLLED_BACK
    assert "Unhealthy after the PT5M health wait" in instance.message
    # Given up at the 5-minute deadline (workflow time), not before; the restored instance
    # was healthy at once.
    assert timedelta(minutes=5) <= instance.end_time - instance.start_time < timedelta(minutes=5, seconds=30)
    ops = await fleet.operations(name)
    assert [action(op) for op in ops] == [OperationKind.REIMAGE, OperationKind.RESTORE]


async def test_cancel_mid_batch_lets_the_batch_finish_and_starts_no_other(ts_env, ts_worker, fleet):
    timing = TimingSpec(reimage_seconds=[1.5, 1.5], restore_seconds=[0, 0], boot_seconds=[0, 0])
    name = await make_scale_set(fleet, 10, update_domains=1, timing=timing)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    await eventually(lambda: fleet.operations(name), lambda ops: len(ops) == 2)

    await cancel_upgrade(ts_env.client, name)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.CANCELLED
    assert status.running_status.last_action == RollingUpgradeActionType.CANCEL
    assert status.running_status.last_action_time > status.running_status.start_time
    states = {i.instance_id: i.state for i in report.instances}
    assert states["0"] == states["1"] == InstanceState.SUCCEEDED
    assert {s for i, s in states.items() if i not in ("0", "1")} == {InstanceState.NOT_STARTED}
    assert status.progress.successful_instance_count == 2
    assert status.progress.pending_instance_count == 8
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {"0": 1, "1": 1}
    # No instance is left mid-operation.
    assert {i.provisioning_state for i in (await fleet.show_scale_set(name)).instances} == {"Succeeded"}


async def test_cancel_interrupts_the_pause(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, _ = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={"pauseTimeBetweenBatches": "PT48H"}
    )
    await eventually(
        lambda: get_status(ts_env.client, name),
        lambda s: s.properties.progress.successful_instance_count == 1,
    )
    await cancel_upgrade(ts_env.client, name)
    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.CANCELLED
    assert report.status.properties.progress.pending_instance_count == 5


async def test_instances_already_on_the_target_image_are_skipped(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 6)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    await finish(ts_env, handle)

    handle, admission = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)
    assert (admission.to_upgrade, admission.skipped) == (0, 6)
    assert report.status.properties.running_status.code == COMPLETED
    assert report.status.properties.progress.total == 0
    assert {i.code for i in report.instances} == {"AlreadyOnTargetImage"}
    assert len(await fleet.operations(name)) == 6


async def test_a_second_upgrade_of_the_same_scale_set_is_refused(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, _ = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={"pauseTimeBetweenBatches": "PT48H"}
    )
    with pytest.raises(UpgradeRefused) as refused:
        await upgrade(ts_env.client, ts_worker.task_queue, name)
    assert refused.value.code == RefusalCode.UPGRADE_IN_PROGRESS
    assert f"scale set {name!r} is already being upgraded" in refused.value.message
    await cancel_upgrade(ts_env.client, name)
    await finish(ts_env, handle)


@pytest.mark.parametrize(
    ("image", "code", "text"),
    [
        (V2, RefusalCode.SCALE_SET_NOT_FOUND, "scale set 'no-such-set' was not found"),
        (
            ImageReference.parse("Contoso:web-os:2024:2030.01.01"),
            RefusalCode.IMAGE_NOT_FOUND,
            "is not offered in westeurope (latest versions: 2024.11.01, 2024.12.01",
        ),
        (
            ImageReference.parse("Fabrikam:other-os:1:1.0"),
            RefusalCode.IMAGE_DEFINITION_CHANGED,
            "cannot change to Fabrikam:other-os:1:",
        ),
        # Another SKU of the same offer: a reimage (exactVersion) cannot move an instance there.
        (
            ImageReference.parse("Contoso:web-os:2025:2024.12.01"),
            RefusalCode.IMAGE_DEFINITION_CHANGED,
            "(Contoso:web-os:2024) cannot change to Contoso:web-os:2025: an upgrade moves",
        ),
    ],
)
async def test_unknown_scale_set_or_image_is_refused_before_anything_starts(
    ts_env, ts_worker, fleet, image, code, text
):
    name = await make_scale_set(fleet, 3)
    target = "no-such-set" if code == RefusalCode.SCALE_SET_NOT_FOUND else name
    with pytest.raises(UpgradeRefused) as refused:
        await upgrade(ts_env.client, ts_worker.task_queue, target, image=image)
    assert refused.value.code == code
    assert text in refused.value.message
    assert await fleet.operations(name) == []


async def test_infrastructure_errors_are_reported_as_such_not_as_unhealthy(ts_env, ts_worker, fleet):
    name = await make_scale_set(
        fleet, 10, update_domains=1, faults=FaultSpec(operation_errors={"3": "AllocationFailed"})
    )
    handle, _ = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={"maxUnhealthyUpgradedInstancePercent": 50}
    )
    report = await finish(ts_env, handle)

    failed = next(i for i in report.instances if i.instance_id == "3")
    assert failed.state == InstanceState.FAILED
    assert failed.cause == FailureCause.INFRASTRUCTURE
    assert failed.code == "AllocationFailed"
    assert "reimage failed" in failed.message
    assert "nhealthy" not in failed.message
    detail = next(d for d in report.status.properties.error.details if d.target == "3")
    assert detail.code == "AllocationFailed"
    assert detail.message.startswith("Infrastructure failure")
    # The instance kept its image: nothing to roll back.
    instance = next(i for i in (await fleet.show_scale_set(name)).instances if i.instance_id == "3")
    assert instance.image_reference.same_image(V1)
    assert count_ops(await fleet.operations(name), OperationKind.RESTORE) == {}


async def test_upgraded_instances_that_turn_unhealthy_later_count_against_the_policy(
    ts_env, ts_worker, fleet
):
    # Batches of two; once batch 2 is done, instances 0 and 1 (batch 1) go down on their own.
    # 2 of 10 unhealthy passes the in-flight gate (20%), but 2 of 4 upgraded (50%) does not.
    faults = FaultSpec(go_unhealthy=[GoUnhealthy(after_reimages=4, instances=["0", "1"])])
    name = await make_scale_set(fleet, 10, update_domains=1, faults=faults)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)

    error = report.status.properties.error
    assert error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    assert "2 of 4 upgraded instances (50%) are unhealthy" in error.message
    assert (
        "Most common error: UnhealthySinceUpgrade on 2 instance(s), "
        "e.g. 0 (upgraded in batch 1, Unhealthy since)" in error.message
    )
    assert {(d.code, d.target) for d in error.details} == {
        ("UnhealthySinceUpgrade", "0"),
        ("UnhealthySinceUpgrade", "1"),
    }
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {str(i): 1 for i in range(4)}


async def test_a_last_health_reading_after_the_final_batch_catches_late_failures(ts_env, ts_worker, fleet):
    faults = FaultSpec(go_unhealthy=[GoUnhealthy(after_reimages=10, instances=["0", "2", "4"])])
    name = await make_scale_set(fleet, 10, update_domains=1, faults=faults)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == FAULTED
    assert "3 of 10 upgraded instances (30%) are unhealthy" in status.error.message
    assert status.progress.successful_instance_count == 10  # all upgraded; three went down since
    unhealthy = {i.instance_id for i in report.instances if i.health != HealthState.HEALTHY}
    assert unhealthy == {"0", "2", "4"}
