"""Faults the upgrade must survive or report: transient API errors, a deleted instance, an
unexpected answer, a bug in activity code fixed by a new worker, its own timeout, and a cancel
request from outside (the Web UI's Cancel)."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any, cast

from temporalio.client import WorkflowExecutionStatus

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings
from fleet.protocol import FleetBackend
from models.errors import FailureCause, UpgradeErrorCode
from models.fleet import FaultSpec, OperationKind, OperationStatus, TimingSpec
from models.status import RollingUpgradeActionType, RollingUpgradeStatusCode
from models.upgrade import InstanceState, upgrade_workflow_id
from rules.failures import SKIP_GONE
from starter.retries import retrying
from starter.upgrades import get_status
from tests.helpers.upgrades import count_ops, eventually, finish, make_scale_set, product_worker, upgrade
from worker.assembly import build_worker
from workflows.activity_calls import OPERATION_DEADLINE

SLOW_REIMAGE = TimingSpec(reimage_seconds=[1.5, 1.5], restore_seconds=[0, 0], boot_seconds=[0, 0])


async def test_a_cancel_request_from_outside_drains_like_the_cancel_signal(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10, update_domains=1, timing=SLOW_REIMAGE)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    await eventually(lambda: fleet.operations(name), lambda ops: len(ops) == 2)

    # What the Web UI's Cancel button does.
    await ts_env.client.get_workflow_handle(upgrade_workflow_id(name)).cancel()
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.CANCELLED
    assert status.running_status.last_action == RollingUpgradeActionType.CANCEL
    states = {i.instance_id: i.state for i in report.instances}
    assert states["0"] == states["1"] == InstanceState.SUCCEEDED  # finished, not abandoned
    assert {s for i, s in states.items() if i not in ("0", "1")} == {InstanceState.NOT_STARTED}
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {"0": 1, "1": 1}
    assert {op.status for op in ops} == {OperationStatus.SUCCEEDED}
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED


async def test_the_upgrade_timeout_faults_once_the_batch_in_flight_settles(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        upgrade_timeout="PT30M",
        policy={"pauseTimeBetweenBatches": "PT20M"},
    )
    report = await finish(ts_env, handle)

    error = report.status.properties.error
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert error.code == UpgradeErrorCode.TIMEOUT
    assert "did not finish within its timeout of PT30M" in error.message
    assert "with 2 of 6 instances upgraded" in error.message
    states = [i.state for i in sorted(report.instances, key=lambda i: int(i.instance_id))]
    assert states == [InstanceState.SUCCEEDED] * 2 + [InstanceState.NOT_STARTED] * 4


async def test_transient_api_errors_and_timeouts_are_retried_without_duplicate_operations(
    ts_env, emulator, fleet
):
    # 5xx before and after the action was accepted, throttling, answers too slow to wait for.
    faults = FaultSpec(transient_error_share=0.2, timeout_share=0.05, timeout_seconds=2)
    name = await make_scale_set(fleet, 10, update_domains=1, timing=SLOW_REIMAGE, faults=faults)
    settings = AzureSettings.from_env(emulator.env())
    async with (
        AzureFleet(settings, read_timeout=1, connection_timeout=1) as impatient,
        build_worker(ts_env.client, impatient, f"tq-{uuid.uuid4()}") as worker,
    ):
        handle, _ = await upgrade(ts_env.client, worker.task_queue, name)
        report = await finish(ts_env, handle)

    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert report.status.properties.progress.successful_instance_count == 10
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {str(i): 1 for i in range(10)}
    assert await fleet.injected_faults(name) > 0


async def test_an_instance_deleted_under_us_is_reported_once_and_not_retried(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10, update_domains=1, timing=SLOW_REIMAGE)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    await eventually(lambda: fleet.operations(name), lambda ops: len(ops) == 2)
    await fleet.delete_instance(name, "1")
    report = await finish(ts_env, handle)

    gone = next(i for i in report.instances if i.instance_id == "1")
    assert gone.state == InstanceState.SKIPPED
    assert gone.cause == FailureCause.INFRASTRUCTURE
    assert gone.code == SKIP_GONE
    assert "the instance was deleted during its batch" in gone.message
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert report.status.properties.progress.successful_instance_count == 9
    ops = [op for op in await fleet.operations(name) if op.instance_id == "1"]
    assert [(op.status, op.request_count) for op in ops] == [(OperationStatus.FAILED, 1)]


async def test_an_unexpected_error_faults_with_internal_execution_error_and_its_cause(
    ts_env, ts_worker, fleet
):
    name = await make_scale_set(fleet, 6, update_domains=1)
    handle, _ = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={"pauseTimeBetweenBatches": "PT10M"}
    )
    await eventually(
        lambda: get_status(ts_env.client, name),
        lambda s: s.properties.progress.successful_instance_count == 1,
    )
    # From now on the cloud API answers nonsense.
    await fleet.set_faults(name, FaultSpec(malformed_share=1.0))
    report = await finish(ts_env, handle)

    error = report.status.properties.error
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert error.code == UpgradeErrorCode.INTERNAL_EXECUTION_ERROR
    # The answer that broke: a body cut short, which cannot be decoded. Like a dropped
    # connection it is retried, until the read's deadline; then the upgrade stops, naming it.
    assert error.message.startswith("the upgrade stopped on an unexpected error: JSONDecodeError:")
    # The whole chain: the activity, the transient fleet error, and what really broke.
    codes = [d.code for d in error.details]
    assert codes[:2] == ["ActivityError", "FleetTransientError"]
    assert codes[-1] == "JSONDecodeError"
    assert error.innererror.exceptiontype == "ActivityError"
    # Stopped before the next batch; the workflow failed instead of retrying a task.
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {"0": 1}
    assert (await handle.describe()).status == WorkflowExecutionStatus.FAILED


class BrokenReimage:
    """A build with a bug in the reimage activity: it raises before anything is sent."""

    def __init__(self, fleet: FleetBackend) -> None:
        self.fleet = fleet

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fleet, name)

    async def begin_reimage(self, *args: Any) -> Any:
        raise RuntimeError("bug")


async def test_a_bug_in_an_activity_is_retried_until_a_fixed_worker_resumes_the_upgrade(
    local_env, azure, fleet, upgradectl
):
    name = await make_scale_set(fleet, 4, update_domains=1)
    task_queue = f"tq-{uuid.uuid4()}"
    broken = cast(FleetBackend, BrokenReimage(azure))
    async with product_worker(local_env, broken, task_queue):
        handle, _ = await upgrade(local_env.client, task_queue, name)
        # The first batch's reimage fails and waits for its next attempt; nothing failed.
        retries = await eventually(lambda: retrying(local_env.client, name), lambda r: len(r) == 1)
        shown = re.compile(rf"reimage {name}/\d → 2024\.12\.01 \(attempt \d+, next at [\d:]+Z\): ")
        assert all(shown.match(r.text()) for r in retries), retries
        assert {r.error for r in retries} == {"UnexpectedError: RuntimeError: bug"}
        status = (await get_status(local_env.client, name)).properties
        assert status.running_status.code == RollingUpgradeStatusCode.ROLLING_FORWARD
        assert status.progress.failed_instance_count == 0
        out = (await upgradectl("status", name)).out
        assert [line for line in out.splitlines() if "retrying" in line and "RuntimeError: bug" in line]
        assert await fleet.operations(name) == []

    # The fix is deployed: a new worker on the same task queue takes the next attempts. The
    # upgrade is pinned to its build, so the fix (activity code only) ships as that build again
    # (docs/operating.md, "Releases": a fix for upgrades already running).
    async with product_worker(local_env, azure, task_queue):
        report = await finish(local_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert (status.progress.successful_instance_count, status.progress.failed_instance_count) == (4, 0)
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {str(i): 1 for i in range(4)}


async def test_a_bug_never_fixed_faults_the_upgrade_once_the_activity_runs_out_of_time(ts_env, azure, fleet):
    name = await make_scale_set(fleet, 4, update_domains=1)
    broken = cast(FleetBackend, BrokenReimage(azure))
    async with build_worker(ts_env.client, broken, f"tq-{uuid.uuid4()}") as worker:
        handle, _ = await upgrade(ts_env.client, worker.task_queue, name)
        report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert status.error.code == UpgradeErrorCode.INTERNAL_EXECUTION_ERROR
    assert "0 (reimage failed: RuntimeError: bug)" in status.error.message
    # Retried with backoff for as long as the reimage's schedule-to-close allows, then faulted.
    first = next(i for i in report.instances if i.instance_id == "0")
    assert first.end_time - first.start_time >= OPERATION_DEADLINE - timedelta(minutes=1)
    assert await fleet.operations(name) == []


async def test_an_instance_busy_with_another_operation_is_waited_for_not_failed(
    local_env, local_worker, fleet
):
    # Real time (the local server), as an operation from outside would run.
    name = await make_scale_set(fleet, 10, update_domains=1)
    outside = await fleet.start_operation(name, "0", seconds=2.5, operation_id=f"maintenance-{name}")
    handle, _ = await upgrade(local_env.client, local_worker.task_queue, name)
    report = await finish(local_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert status.progress.successful_instance_count == 10
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {str(i): 1 for i in range(10)}
    ours = next(op for op in ops if op.kind == OperationKind.REIMAGE and op.instance_id == "0")
    theirs = next(op for op in ops if op.operation_id == outside.operation_id)
    assert (ours.status, ours.request_count) == (OperationStatus.SUCCEEDED, 1)
    assert ours.start_time >= theirs.end_time  # it waited for the other operation
    # The reimage activity read the instance, saw it busy (provisioning state Updating) and
    # waited inside its one attempt: nothing was sent while the instance was busy, nothing failed.
    started = [
        event.activity_task_started_event_attributes
        async for event in local_env.client.get_workflow_handle(
            f"{upgrade_workflow_id(name)}/batch-1"
        ).fetch_history_events()
        if event.HasField("activity_task_started_event_attributes")
    ]
    assert started and all(s.attempt == 1 for s in started)
