"""The core exact to the seeds (issue 9): deleted and added instances, the unhealthy budget, every
breach restoring, a status that never contradicts the gate, the timeout after any batch, nothing
to do, and an upgrade that survives a bug in workflow code. Time-skipping server, emulator over HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from fleet.emulator.admin import EmulatorAdmin
from models.errors import UpgradeErrorCode
from models.fleet import FaultSpec, GoUnhealthy, HealthState, OperationKind, TimingSpec
from models.policy import ApplicationHealthSettings
from models.status import RollingUpgradeStatusCode
from models.upgrade import (
    PLAN_QUERY,
    ROLLING_UPGRADE_WORKFLOW,
    BatchResult,
    InstanceState,
    UpgradeReport,
    UpgradeRequest,
    upgrade_workflow_id,
)
from rules.failures import SKIP_GONE
from rules.planner import next_batch
from starter.upgrades import get_status
from tests.helpers.upgrades import (
    QUICK_HEALTH,
    V1,
    V2,
    count_ops,
    eventually,
    finish,
    make_scale_set,
    unhealthy_on_target,
    upgrade,
)
from worker.assembly import build_worker
from workflows import rolling_upgrade

COMPLETED = RollingUpgradeStatusCode.COMPLETED
FAULTED = RollingUpgradeStatusCode.FAULTED
SLOW_REIMAGE = TimingSpec(reimage_seconds=[1.5, 1.5], restore_seconds=[0, 0], boot_seconds=[0, 0])


async def ops_seen(fleet: EmulatorAdmin, name: str, count: int) -> None:
    await eventually(lambda: fleet.operations(name), lambda ops: len(ops) >= count)


@pytest.mark.parametrize("when", ["during its reimage", "right after admission"])
async def test_an_instance_deleted_under_us_leaves_the_gates_and_is_reported(ts_env, ts_worker, fleet, when):
    # Default policy: one failed instance of the two in batch 1 would be 50% > 20%.
    name = await make_scale_set(fleet, 10, update_domains=1, timing=SLOW_REIMAGE)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    if when == "during its reimage":
        await ops_seen(fleet, name, 2)
    await fleet.delete_instance(name, "1")
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == COMPLETED
    assert status.error is None
    assert (status.progress.successful_instance_count, status.progress.failed_instance_count) == (9, 0)
    gone = next(i for i in report.instances if i.instance_id == "1")
    assert gone.state == InstanceState.SKIPPED and gone.code == SKIP_GONE
    assert "deleted" in gone.message
    assert report.skipped_instance_count == 1


async def test_instances_added_during_the_upgrade_are_upgraded_or_skipped(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, admission = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={"pauseTimeBetweenBatches": "PT10M"}
    )
    assert admission.instance_count == 6
    await eventually(
        lambda: get_status(ts_env.client, name),
        lambda s: s.properties.progress.successful_instance_count >= 1,
    )
    await fleet.scale_out(name, 2)  # on the model's image (V1): to upgrade
    await fleet.scale_out(name, 1, image=V2)  # already on the target: skipped
    report = await finish(ts_env, handle)

    assert report.status.properties.running_status.code == COMPLETED
    by_id = {i.instance_id: i for i in report.instances}
    assert set(by_id) == {str(i) for i in range(9)}
    assert [by_id[i].state for i in ("6", "7", "8")] == [
        InstanceState.SUCCEEDED,
        InstanceState.SUCCEEDED,
        InstanceState.SKIPPED,
    ]
    assert "added to the scale set during the upgrade" in by_id["6"].message
    assert report.status.properties.progress.successful_instance_count == 8
    after = await fleet.show_scale_set(name)
    assert all(i.image_reference.same_image(V2) for i in after.instances)
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {str(i): 1 for i in range(8)}


async def test_no_batch_starts_beyond_the_unhealthy_budget_until_health_recovers(
    ts_env, ts_worker, fleet, azure
):
    # 10 instances at 20%: 2 may be down at once, and 2 are down already.
    name = await make_scale_set(fleet, 10, update_domains=1)
    await unhealthy_on_target(fleet, azure, name, ["8", "9"])
    health = ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout=timedelta(minutes=30))
    handle, admission = await upgrade(ts_env.client, ts_worker.task_queue, name, health=health)
    assert admission.to_upgrade == 8

    waiting = await eventually(
        lambda: get_status(ts_env.client, name), lambda s: s.properties.wait is not None
    )
    wait = waiting.properties.wait
    assert "2 of 10 instances are unhealthy (8, 9)" in wait.reason
    assert "allows 2 down at once" in wait.reason
    assert wait.until is not None and wait.until > wait.since
    assert waiting.properties.running_status.code == RollingUpgradeStatusCode.ROLLING_FORWARD
    assert not [
        op
        for op in await fleet.operations(name)
        if op.kind == OperationKind.REIMAGE and op.instance_id not in ("8", "9")  # 8, 9: the setup
    ]

    for instance_id in ("8", "9"):
        await fleet.set_health(name, instance_id, None)
    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == COMPLETED
    assert report.status.properties.wait is None
    assert report.status.properties.progress.successful_instance_count == 8


async def test_the_upgrade_faults_with_the_figures_when_health_does_not_recover(
    ts_env, ts_worker, fleet, azure
):
    name = await make_scale_set(fleet, 10, update_domains=1)
    await unhealthy_on_target(fleet, azure, name, ["8", "9"])
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == FAULTED
    assert status.error.code == UpgradeErrorCode.UNHEALTHY_EXCEEDED_IN_UPGRADE
    assert "no batch could start for PT2S" in status.error.message
    assert "2 of 10 instances are unhealthy (8, 9)" in status.error.message
    assert status.progress.pending_instance_count == 8
    assert not [op for op in await fleet.operations(name) if op.instance_id not in ("8", "9")]  # the setup


@pytest.mark.parametrize("breach", ["in-flight gate", "timeout"])
async def test_every_policy_breach_restores_under_rollback_failed_instances_on_policy_breach(
    ts_env, ts_worker, fleet, breach
):
    # Instance 0 fails health on the new image and is left on it (automatic rollback off); the
    # upgraded-instances gate allows it (100%); another breach stops the upgrade.
    faults = FaultSpec(unhealthy_after_upgrade=["0"])
    options: dict[str, Any] = {}
    if breach == "in-flight gate":
        faults.go_unhealthy = [GoUnhealthy(after_reimages=2, instances=["7", "8", "9"])]
        code = UpgradeErrorCode.UNHEALTHY_EXCEEDED_IN_UPGRADE
    else:
        options = {"upgrade_timeout": "PT1M"}
        code = UpgradeErrorCode.TIMEOUT
    name = await make_scale_set(fleet, 10, update_domains=1, faults=faults)
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        disable_automatic_rollback=True,
        policy={
            "rollbackFailedInstancesOnPolicyBreach": True,
            "maxUnhealthyUpgradedInstancePercent": 100,
            "pauseTimeBetweenBatches": "PT10M",
        },
        **options,
    )
    report = await finish(ts_env, handle)

    assert report.status.properties.running_status.code == FAULTED
    assert report.status.properties.error.code == code
    restored = next(i for i in report.instances if i.instance_id == "0")
    assert restored.state == InstanceState.ROLLED_BACK
    assert "on the policy breach: reimaged back to the previous image version" in restored.message
    assert "its contents are lost" in restored.message
    assert count_ops(await fleet.operations(name), OperationKind.RESTORE) == {"0": 1}
    assert report.rollback_info.successfully_rolledback_instance_count == 1


async def test_the_status_never_contradicts_the_gate(ts_env, ts_worker, fleet):
    # Both instances of batch 1 stay unhealthy: the upgraded gate trips, then a slow restore runs.
    timing = TimingSpec(reimage_seconds=[0, 0], restore_seconds=[1.5, 1.5], boot_seconds=[0, 0])
    name = await make_scale_set(
        fleet, 10, update_domains=1, timing=timing, faults=FaultSpec(unhealthy_images=[V2.version])
    )
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        disable_automatic_rollback=True,
        policy={"rollbackFailedInstancesOnPolicyBreach": True},
    )
    seen = []
    result = asyncio.ensure_future(finish(ts_env, handle))
    while not result.done():
        error = (await get_status(ts_env.client, name)).properties.error
        if error is not None:
            seen.append((error.code, error.message))
        await asyncio.sleep(0.02)
    report = await result

    assert report.status.properties.running_status.code == FAULTED
    assert seen, "the status was never read while the breach was being handled"
    assert {code for code, _ in seen} == {UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED}, seen[:3]
    assert not any("goes on" in message for _, message in seen)
    message = report.status.properties.error.message
    assert "Most common error: ApplicationUnhealthy on 2 instance(s), e.g. 0 (" in message
    assert "The upgrade stops" in message


async def past_a_one_minute_timeout(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin, update_domains: int
) -> UpgradeReport:
    """Four instances that stay unhealthy on the new image (left there), 100% batches within
    `update_domains`: the first batch settles two minutes in (its health wait), past a one-minute
    upgrade timeout."""
    name = await make_scale_set(
        fleet, 4, update_domains=update_domains, faults=FaultSpec(unhealthy_images=[V2.version])
    )
    health = ApplicationHealthSettings(interval_in_seconds=5, health_wait_timeout=timedelta(minutes=2))
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        health=health,
        disable_automatic_rollback=True,
        upgrade_timeout="PT1M",
        policy={
            "maxBatchInstancePercent": 100,
            "maxUnhealthyInstancePercent": 100,
            "maxUnhealthyUpgradedInstancePercent": 100,
        },
    )
    return await finish(ts_env, handle)


async def test_the_timeout_fires_after_a_batch_that_runs_past_it_while_instances_remain(
    ts_env, ts_worker, fleet
):
    # One instance per update domain: four batches; the first runs past the timeout.
    report = await past_a_one_minute_timeout(ts_env, ts_worker, fleet, update_domains=4)
    status = report.status.properties
    assert status.running_status.code == FAULTED
    assert status.error.code == UpgradeErrorCode.TIMEOUT
    assert "timeout of PT1M" in status.error.message
    assert report.batches == 1


async def test_a_last_batch_that_settles_after_the_timeout_completes_the_upgrade(ts_env, ts_worker, fleet):
    # One batch of all four (one update domain; 100% honoured on a small set): nothing was left
    # to stop when the timeout passed, so the upgrade completed.
    report = await past_a_one_minute_timeout(ts_env, ts_worker, fleet, update_domains=1)
    status = report.status.properties
    assert report.batches == 1
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED, status.error
    # Azure's word for an upgrade that completed with failed instances (within the policy), not
    # a timeout.
    assert status.error is not None and status.error.code == UpgradeErrorCode.IN_PROGRESS_WITH_FAILED_VMS
    assert status.progress.failed_instance_count == 4  # left unhealthy on the new image, as asked


async def test_a_restored_instance_counts_healthy_at_once_in_the_plan(ts_env, ts_worker, fleet):
    # Instance 0 fails on the new image and is restored healthy; batch 2 may still take 2.
    name = await make_scale_set(fleet, 10, update_domains=1, faults=FaultSpec(unhealthy_after_upgrade=["0"]))
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        policy={"pauseTimeBetweenBatches": "PT1H", "maxUnhealthyUpgradedInstancePercent": 50},
    )
    await eventually(
        lambda: get_status(ts_env.client, name), lambda s: s.properties.progress.failed_instance_count == 1
    )
    plan = await handle.query(PLAN_QUERY, result_type=list[list[str]])
    assert [len(batch) for batch in plan] == [2, 2, 2, 2]
    await handle.cancel()


async def test_nothing_to_do_completes_at_once_whatever_the_health(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10)
    for instance_id in ("0", "1", "2"):
        await fleet.set_health(name, instance_id, HealthState.UNHEALTHY)
    handle, admission = await upgrade(ts_env.client, ts_worker.task_queue, name, image=V1)
    assert (admission.to_upgrade, admission.skipped) == (0, 10)
    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == COMPLETED
    assert report.status.properties.error is None
    assert await fleet.operations(name) == []


async def test_prioritized_unhealthy_instances_are_upgraded_in_the_first_batch(ts_env, ts_worker, fleet):
    # One of ten unhealthy: under prioritizeUnhealthyInstances it goes first, in a batch of its
    # own (without, it would ride along with instance 0), and comes back healthy on the new image.
    name = await make_scale_set(fleet, 10, update_domains=1)
    await fleet.set_health(name, "7", HealthState.UNHEALTHY)
    handle, _ = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={"prioritizeUnhealthyInstances": True}
    )
    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == COMPLETED, report.status.properties.error
    first = sorted(i.instance_id for i in report.instances if i.batch == 1)
    assert first == ["7"]
    reimages = sorted(
        (op for op in await fleet.operations(name) if op.kind == OperationKind.REIMAGE),
        key=lambda op: op.start_time,
    )
    assert reimages[0].instance_id == "7"
    assert report.status.properties.progress.successful_instance_count == 10


async def test_a_bug_in_workflow_code_fails_the_task_and_a_fixed_worker_resumes(
    ts_env, fleet, azure, monkeypatch
):
    name = await make_scale_set(fleet, 4)
    task_queue = f"tq-{uuid.uuid4()}"

    planned: list[object] = []

    def broken(*args, **kwargs):  # plans batch 1, then fails: the upgrade is admitted and under way
        if planned:
            raise RuntimeError("a bug in the planner")
        planned.append(next_batch(*args, **kwargs))
        return planned[-1]

    monkeypatch.setattr(rolling_upgrade, "next_batch", broken)
    async with build_worker(ts_env.client, azure, task_queue, workflow_runner=UnsandboxedWorkflowRunner()):
        handle, _ = await upgrade(ts_env.client, task_queue, name)
        # The bug fails the workflow task again and again; the upgrade neither faults nor moves.
        await eventually(
            lambda: handle.fetch_history(),
            lambda history: any(e.HasField("workflow_task_failed_event_attributes") for e in history.events),
        )
        description = await handle.describe()
        assert description.status is not None and description.status.name == "RUNNING"
    monkeypatch.undo()

    async with build_worker(ts_env.client, azure, task_queue):
        report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == COMPLETED
    assert report.status.properties.progress.successful_instance_count == 4


async def test_payloads_accept_fields_a_newer_release_adds(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 2)
    request = UpgradeRequest(scale_set=name, target_image=V2, health=QUICK_HEALTH).to_json()
    request["fieldOfTheNextRelease"] = {"anything": 1}
    handle = await ts_env.client.start_workflow(
        ROLLING_UPGRADE_WORKFLOW,
        request,
        id=upgrade_workflow_id(name),
        task_queue=ts_worker.task_queue,
        result_type=UpgradeReport,
    )
    report = await asyncio.wait_for(handle.result(), 60)
    assert report.status.properties.running_status.code == COMPLETED

    outcome = {"instanceId": "0", "state": "Succeeded", "fieldOfTheNextRelease": True}
    result = pydantic_data_converter.payload_converter.from_payloads(
        pydantic_data_converter.payload_converter.to_payloads([{"outcomes": [outcome]}]), [BatchResult]
    )[0]
    assert result.outcomes[0].state == InstanceState.SUCCEEDED
