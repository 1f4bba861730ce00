"""Exactly once on a cloud that deduplicates nothing: a worker killed between a reimage POST and its
answer, a 500 or a dropped connection after the action was accepted, 429 storms, 409 busy. Every
test reads the emulator's log of accepted operations: exactly one reimage per upgraded instance,
no restore, and the upgrade's final status.

The worker is a real process (SIGKILL) on the dev server for the crash; elsewhere an in-process
worker on the time-skipping server, whose Azure back end arms the fault in the emulator just
before the action's POST (and disarms it after), so the fault hits the action itself, not some
read the SDK retries anyway."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker

from activities.fleet_activities import FleetActivities
from fleet.azure.backend import AzureFleet
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetError
from models import steps
from models.fleet import FaultSpec, FleetOperation, OperationKind, OperationStatus, TimingSpec
from models.image import ImageReference
from models.status import RollingUpgradeStatusCode
from models.upgrade import InstanceState, UpgradeReport
from starter.upgrades import final_report
from tests.helpers.upgrades import (
    INSTANT,
    V2,
    WorkerProcesses,
    count_ops,
    eventually,
    finish,
    make_scale_set,
    upgrade,
)
from worker.assembly import build_worker

COMPLETED = RollingUpgradeStatusCode.COMPLETED
# Long enough that a re-read after a lost answer finds the reimage still in flight.
SLOW_REIMAGE = TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[0, 0])
# The re-read finds the instance busy with the reimage, or already on the target (a resend then
# would be accepted: a second reimage).
READ_AFTER_DOUBT = pytest.mark.parametrize(
    "timing", [SLOW_REIMAGE, INSTANT], ids=["reimage-in-flight", "reimage-done"]
)
ACCEPTED = "accepted"

Arm = Callable[[str, str], Awaitable[Any]]


class ArmedActions:
    """The product's AzureFleet, unchanged but for this: before the first action of each kind
    (a reimage, a restore, a deallocate, a start) on each instance `arm(scale_set, instance_id)`
    sets a fault in the emulator, after it `disarm` clears it. Each action sent is recorded:
    `answers[instance]` is what each request got (ACCEPTED or the fleet error's code),
    `sent_at[instance]` when it was sent."""

    def __init__(self, azure: AzureFleet, arm: Arm, disarm: Arm) -> None:
        self.azure, self.arm, self.disarm = azure, arm, disarm
        self.answers: dict[str, list[str]] = {}
        self.sent_at: dict[str, list[float]] = {}
        self._armed: set[tuple[str, str]] = set()
        self._one_at_a_time = asyncio.Lock()  # one armed window at a time

    def __getattr__(self, name: str) -> Any:
        return getattr(self.azure, name)

    async def begin_reimage(self, scale_set: str, instance_id: str, image: ImageReference) -> FleetOperation:
        return await self._action(
            scale_set, instance_id, "reimage", lambda: self.azure.begin_reimage(scale_set, instance_id, image)
        )

    async def begin_restore(self, scale_set: str, instance_id: str, restore_point: str) -> FleetOperation:
        return await self._action(
            scale_set,
            instance_id,
            "restore",
            lambda: self.azure.begin_restore(scale_set, instance_id, restore_point),
        )

    async def begin_power(self, scale_set: str, instance_id: str, kind: OperationKind) -> FleetOperation:
        return await self._action(
            scale_set, instance_id, kind.value, lambda: self.azure.begin_power(scale_set, instance_id, kind)
        )

    async def _action(
        self, scale_set: str, instance_id: str, kind: str, send: Callable[[], Awaitable[FleetOperation]]
    ) -> FleetOperation:
        first = (instance_id, kind) not in self._armed
        self._armed.add((instance_id, kind))
        answers = self.answers.setdefault(instance_id, [])
        async with self._one_at_a_time:
            if first:
                await self.arm(scale_set, instance_id)
            try:
                self.sent_at.setdefault(instance_id, []).append(time.monotonic())
                operation = await send()
                answers.append(ACCEPTED)
                return operation
            except FleetError as err:
                answers.append(err.code)
                raise
            finally:
                if first:
                    await self.disarm(scale_set, instance_id)


@asynccontextmanager
async def armed_worker(
    env: WorkflowEnvironment, azure: AzureFleet, arm: Arm, disarm: Arm
) -> AsyncIterator[tuple[Worker, ArmedActions]]:
    actions = ArmedActions(azure, arm, disarm)
    async with build_worker(env.client, actions, f"tq-{uuid.uuid4()}") as worker:
        yield worker, actions


def faults_on(fleet: EmulatorAdmin, faults: FaultSpec) -> tuple[Arm, Arm]:
    async def arm(scale_set: str, _: str) -> None:
        await fleet.set_faults(scale_set, faults)

    async def disarm(scale_set: str, _: str) -> None:
        await fleet.set_faults(scale_set, FaultSpec())

    return arm, disarm


def completed_exactly_once(report: UpgradeReport, ops: list[FleetOperation], ids: list[str]) -> None:
    """Every instance upgraded, one accepted reimage each, nothing restored, nothing failed."""
    status = report.status.properties
    assert status.running_status.code == COMPLETED
    assert status.error is None
    assert (status.progress.successful_instance_count, status.progress.failed_instance_count) == (len(ids), 0)
    assert count_ops(ops, OperationKind.REIMAGE) == {i: 1 for i in ids}
    assert count_ops(ops, OperationKind.RESTORE) == {}
    assert all(op.status == OperationStatus.SUCCEEDED for op in ops)


IDS = [str(n) for n in range(6)]
# One batch (more than five instances, else one at a time): the actions run side by side, their
# armed windows one after another.
ONE_BATCH = {"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100}


@READ_AFTER_DOUBT
async def test_a_500_after_the_reimage_was_accepted_is_settled_by_reading_not_by_resending(
    ts_env, azure, fleet, timing
):
    name = await make_scale_set(fleet, len(IDS), update_domains=1, timing=timing)
    after_accept = FaultSpec(transient_error_share=1.0, transient_status_codes=[500], after_accept_share=1.0)
    async with armed_worker(ts_env, azure, *faults_on(fleet, after_accept)) as (worker, actions):
        handle, _ = await upgrade(ts_env.client, worker.task_queue, name, policy=ONE_BATCH)
        report = await finish(ts_env, handle)

    # Every reimage POST was accepted and answered 500; none was sent a second time.
    assert actions.answers == {i: ["InternalServerError"] for i in IDS}
    completed_exactly_once(report, await fleet.operations(name), IDS)


# A Flexible rollback is three actions, as Azure swaps an OS disk only on a deallocated VM.
SWAP_STEPS = (OperationKind.DEALLOCATE, OperationKind.RESTORE, OperationKind.START)
SLOW_STEPS = TimingSpec(
    reimage_seconds=[1, 1], restore_seconds=[1, 1], boot_seconds=[0, 0], power_seconds=[1, 1]
)


@pytest.mark.parametrize("timing", [SLOW_STEPS, INSTANT], ids=["step-in-flight", "step-done"])
async def test_a_500_after_each_step_of_a_flexible_rollback_was_accepted_sends_no_step_twice(
    ts_env, azure, fleet, timing
):
    bad_image = FaultSpec(unhealthy_images=[V2.version])
    name = await make_scale_set(
        fleet, 2, update_domains=1, timing=timing, orchestration_mode="Flexible", faults=bad_image
    )
    disks = {i.instance_id: i.os_disk.name for i in (await fleet.show_scale_set(name)).instances}
    after_accept = bad_image.model_copy(
        update={"transient_error_share": 1.0, "transient_status_codes": [500], "after_accept_share": 1.0}
    )

    async def arm(scale_set: str, _: str) -> None:
        await fleet.set_faults(scale_set, after_accept)

    async def disarm(scale_set: str, _: str) -> None:
        await fleet.set_faults(scale_set, bad_image)

    async with armed_worker(ts_env, azure, arm, disarm) as (worker, actions):
        handle, _ = await upgrade(ts_env.client, worker.task_queue, name, policy=ONE_BATCH)
        report = await finish(ts_env, handle)

    # The reimage, then deallocate, swap and start: each accepted and answered 500, none resent.
    assert actions.answers == {i: ["InternalServerError"] * 4 for i in disks}
    assert all(i.state == InstanceState.ROLLED_BACK and i.restored for i in report.instances)
    ops = await fleet.operations(name)
    for kind in (OperationKind.REIMAGE, *SWAP_STEPS):
        assert count_ops(ops, kind) == {i: 1 for i in disks}, kind
    assert all(op.status == OperationStatus.SUCCEEDED for op in ops)
    requests = (await fleet.calls(name)).requests
    for shape in (
        "POST virtualMachines/*/deallocate",
        "PATCH virtualMachines/*",
        "POST virtualMachines/*/start",
    ):
        assert requests.get(shape) == len(disks), (shape, requests)
    after = {i.instance_id: i for i in (await fleet.show_scale_set(name)).instances}
    assert {i: (v.os_disk.name, v.power_state) for i, v in after.items()} == {
        i: (disk, "running") for i, disk in disks.items()
    }


@READ_AFTER_DOUBT
async def test_a_connection_dropped_after_the_reimage_was_accepted_is_not_a_reason_to_resend(
    ts_env, azure, fleet, timing
):
    name = await make_scale_set(fleet, len(IDS), update_domains=1, timing=timing)
    dropped = FaultSpec(dropped_connection_share=1.0)
    async with armed_worker(ts_env, azure, *faults_on(fleet, dropped)) as (worker, actions):
        handle, _ = await upgrade(ts_env.client, worker.task_queue, name, policy=ONE_BATCH)
        report = await finish(ts_env, handle)

    # The answer of every POST was cut short: no status URL; the product read the instance.
    assert actions.answers == {i: ["ConnectionDropped"] for i in IDS}
    completed_exactly_once(report, await fleet.operations(name), IDS)


async def test_a_429_storm_is_waited_out_with_retry_after_and_each_reimage_accepted_once(
    ts_env, azure, fleet
):
    name = await make_scale_set(fleet, len(IDS), update_domains=1, timing=SLOW_REIMAGE)
    # A storm starts at each reimage's POST: every call of the scale set answers 429 for 1.5 s.
    storm = FaultSpec(throttle_seconds=1.5, retry_after_seconds=1)
    arm, _ = faults_on(fleet, storm)

    async def blows_over(*_: str) -> None:
        pass  # clearing the faults would end the storm: it ends by itself

    async with armed_worker(ts_env, azure, arm, blows_over) as (worker, actions):
        handle, _ = await upgrade(ts_env.client, worker.task_queue, name, policy=ONE_BATCH)
        report = await finish(ts_env, handle)

    # A 429 is never accepted, so the reimage is sent again, each time after Retry-After, until
    # the storm has passed: the log still holds one reimage each.
    assert set(actions.answers) == set(IDS)
    for instance_id, answers in actions.answers.items():
        assert len(answers) >= 2
        assert answers == ["TooManyRequests"] * (len(answers) - 1) + [ACCEPTED]
        sent = actions.sent_at[instance_id]
        assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(sent))
    completed_exactly_once(report, await fleet.operations(name), IDS)


async def test_a_429_storm_at_the_start_is_waited_out_without_failing_or_duplicating(
    ts_env, ts_worker, fleet
):
    # The upgrade's first 5 ARM calls (admission's reads, then whatever comes) answer 429.
    name = await make_scale_set(fleet, len(IDS), update_domains=1, timing=SLOW_REIMAGE)
    await fleet.set_faults(name, FaultSpec(throttle_calls=5, retry_after_seconds=1))
    handle, admission = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=ONE_BATCH)
    assert admission.instance_count == len(IDS)
    report = await finish(ts_env, handle)

    completed_exactly_once(report, await fleet.operations(name), IDS)
    assert await fleet.injected_faults(name) == 5


async def test_a_409_busy_answer_is_waited_out_and_the_reimage_sent_once_the_instance_is_free(
    ts_env, azure, fleet
):
    name = await make_scale_set(fleet, len(IDS), update_domains=1, timing=SLOW_REIMAGE)
    outside: dict[str, FleetOperation] = {}

    async def busy(scale_set: str, instance_id: str) -> None:
        # Someone else starts an operation on the instance between our read and our POST.
        outside[instance_id] = await fleet.start_operation(scale_set, instance_id, seconds=1.5)

    async def nothing(*_: str) -> None:
        pass

    async with armed_worker(ts_env, azure, busy, nothing) as (worker, actions):
        handle, _ = await upgrade(ts_env.client, worker.task_queue, name, policy=ONE_BATCH)
        report = await finish(ts_env, handle)

    assert actions.answers == {i: ["AnotherOperationInProgress", ACCEPTED] for i in IDS}
    ops = await fleet.operations(name)
    completed_exactly_once(report, ops, IDS)
    by_id = {op.operation_id: op for op in ops}
    for instance_id, theirs in outside.items():
        ours = next(op for op in ops if op.kind == OperationKind.REIMAGE and op.instance_id == instance_id)
        # The outside operation ran to its end, and ours started only after it.
        assert by_id[theirs.operation_id].status == OperationStatus.SUCCEEDED
        assert ours.start_time >= by_id[theirs.operation_id].end_time


async def test_a_batch_is_watched_through_its_sets_instance_list_not_a_read_per_instance(
    ts_env, ts_worker, fleet
):
    # Twelve reimages of a second each: every instance is read before its reimage and until it
    # shows it done, and waited for until healthy. Those looks share the set's instance lists:
    # no GET of an instance, no poll of an operation while the instances show theirs under way.
    ids = [str(n) for n in range(12)]
    name = await make_scale_set(fleet, len(ids), update_domains=1, timing=SLOW_REIMAGE)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=ONE_BATCH)
    report = await finish(ts_env, handle)

    completed_exactly_once(report, await fleet.operations(name), ids)
    calls = await fleet.calls(name)
    assert calls.requests.get("GET virtualMachineScaleSets/*/virtualMachines/*", 0) == 0
    assert calls.requests.get("GET locations/*/operations/*", 0) == 0
    # Admission, gates and the batch's looks: far fewer reads than the 12 x 4 of a GET before
    # and after each reimage and a poll a second while it runs.
    assert calls.reads < len(ids) * 2, calls.requests


async def test_a_worker_killed_between_the_reimage_post_and_its_answer_never_reimages_twice(
    local_env, fleet, emulator, tmp_path
):
    # Every ARM answer of the scale set comes 1.5 s late, after the request took effect: the
    # reimage is accepted at once, its answer (the status URL) is still on its way when the
    # worker dies. Nothing in the worker's heartbeats names the operation.
    slow_answers = FaultSpec(timeout_share=1.0, timeout_seconds=1.5)
    name = await make_scale_set(fleet, 2, update_domains=1, timing=SLOW_REIMAGE, faults=slow_answers)
    workers = WorkerProcesses(local_env.client.service_client.config.target_host, emulator, tmp_path)
    await workers.start()
    try:
        handle, _ = await upgrade(local_env.client, workers.task_queue, name)
        accepted = await eventually(lambda: fleet.operations(name), bool, timeout=60)
        await workers.crash()  # SIGKILL, and a new worker process takes over
        await fleet.set_faults(name, FaultSpec())  # answers on time from now on
        report = await asyncio.wait_for(final_report(handle), 120)
        ops = await fleet.operations(name)
    finally:
        workers.stop()

    # The kill came before the answer: one reimage accepted and still running, none of instance 1.
    assert [(op.kind, op.instance_id, op.status) for op in accepted] == [
        (OperationKind.REIMAGE, "0", OperationStatus.IN_PROGRESS)
    ]
    completed_exactly_once(report, ops, ["0", "1"])
    # The reimage the dead worker sent is the one instance 0 got: the new worker found it in
    # flight (or done) by reading the instance, and sent nothing.
    assert next(op for op in ops if op.instance_id == "0").operation_id == accepted[0].operation_id


async def test_an_attempt_that_finds_the_reimage_done_reports_the_restore_point_the_upgrade_knew(
    fleet, azure
):
    # An earlier attempt reimaged the instance and died before recording anything: this attempt
    # finds it on the target already. It sends nothing, and the previous OS disk it reports is
    # the one the upgrade read at admission, so a restore stays possible.

    name = await make_scale_set(fleet, 1)
    before = (await azure.get_instance(name, "0")).restore_point
    await azure.begin_reimage(name, "0", V2.at_version(V2.version))
    await eventually(lambda: azure.get_instance(name, "0"), lambda i: not i.busy)
    request = steps.ReimageInput(
        scale_set=name,
        instance_id="0",
        image=V2.at_version(V2.version),
        operation_id="x",
        restore_point=before,
    )
    result = await ActivityEnvironment().run(FleetActivities(azure).reimage_instance, request)
    assert result.operation.previous_os_disk == before
    assert result.operation.request_count == 0
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {"0": 1}
