"""Pause and resume of one upgrade, and approval of its batches under deferral
(osRollingUpgradeDeferral, notBeforeTimeout): on the time-skipping server, through the Azure SDK
to the emulator, asserted from the emulator's operations log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.emulator.admin import EmulatorAdmin
from models.errors import UpgradeErrorCode
from models.fleet import OperationKind, TimingSpec
from models.status import (
    RollingUpgradeStatusCode,
    RollingUpgradeStatusInfo,
    RollingUpgradeStatusProperties,
    UpgradeWaitKind,
)
from models.upgrade import (
    APPROVE_SIGNAL,
    PAUSE_SIGNAL,
    PLAN_QUERY,
    RESUME_SIGNAL,
    ApproveRequest,
    InstanceState,
    PauseRequest,
    ResumeRequest,
)
from starter.upgrades import final_report, get_instances, get_status
from tests.helpers.upgrades import V2, WorkerProcesses, count_ops, eventually, finish, make_scale_set, upgrade

SLOW = TimingSpec(reimage_seconds=[1.5, 1.5], restore_seconds=[0, 0], boot_seconds=[0, 0])


def props(status: RollingUpgradeStatusInfo) -> RollingUpgradeStatusProperties:
    assert status.properties is not None
    return status.properties


def waiting(kind: UpgradeWaitKind) -> Callable[[RollingUpgradeStatusInfo], bool]:
    return lambda s: props(s).wait is not None and props(s).wait.kind == kind


async def reimaged(fleet: EmulatorAdmin, name: str) -> dict[str, int]:
    return count_ops(await fleet.operations(name), OperationKind.REIMAGE)


# --- pause and resume -----------------------------------------------------------------------------


async def test_pause_mid_batch_lets_the_batch_finish_and_starts_nothing_until_resume(
    ts_env, ts_worker, fleet
):
    client = ts_env.client
    name = await make_scale_set(fleet, 6, zones=["1", "2"], update_domains=1, timing=SLOW)
    handle, _ = await upgrade(client, ts_worker.task_queue, name)  # one instance a batch
    await eventually(lambda: get_status(client, name), lambda s: props(s).progress.in_progress_instance_count)

    await handle.signal(PAUSE_SIGNAL, PauseRequest(reason="change freeze", by="alice"))
    paused = props(await get_status(client, name)).paused
    assert paused is not None and paused.kind == UpgradeWaitKind.PAUSED
    assert paused.by == "alice" and "paused by alice: change freeze" in paused.reason

    # The batch in flight finishes; then the upgrade holds.
    held = await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PAUSED))
    assert props(held).progress.successful_instance_count == 1
    assert props(held).progress.in_progress_instance_count == 0
    await asyncio.sleep(3)  # longer than two batches would take
    assert await reimaged(fleet, name) == {next(iter(await reimaged(fleet, name))): 1}
    assert props(await get_status(client, name)).progress.successful_instance_count == 1

    resumed_at = datetime.now(UTC)
    await handle.signal(RESUME_SIGNAL, ResumeRequest(by="bob"))
    report = await finish(ts_env, handle)
    status = props(report.status)
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert status.paused is None and status.wait is None
    ops = [op for op in await fleet.operations(name) if op.kind == OperationKind.REIMAGE]
    assert len(ops) == 6
    assert all(op.start_time >= resumed_at - timedelta(seconds=0.5) for op in ops[1:])


async def test_cancel_while_paused_ends_cancelled(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 6, zones=["1", "2"], update_domains=1, timing=SLOW)
    handle, _ = await upgrade(client, ts_worker.task_queue, name)
    await eventually(lambda: get_status(client, name), lambda s: props(s).progress.in_progress_instance_count)
    await handle.signal(PAUSE_SIGNAL, PauseRequest(reason="look first"))
    await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PAUSED))
    await handle.signal("cancel")
    report = await finish(ts_env, handle)
    assert props(report.status).running_status.code == RollingUpgradeStatusCode.CANCELLED
    assert sum((await reimaged(fleet, name)).values()) == 1
    assert sum(i.state == InstanceState.NOT_STARTED for i in report.instances) == 5


async def test_bare_signals_without_a_payload_use_the_defaults(ts_env, ts_worker, fleet):
    """`temporal workflow signal --name pause` or the Web UI may send no input at all."""
    client = ts_env.client
    name = await make_scale_set(fleet, 4, update_domains=2, timing=SLOW)
    handle, _ = await upgrade(client, ts_worker.task_queue, name)
    await eventually(lambda: get_status(client, name), lambda s: props(s).progress.in_progress_instance_count)
    await handle.signal(PAUSE_SIGNAL)
    held = await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PAUSED))
    assert props(held).paused.by == "User" and props(held).paused.reason == "paused by User"
    await handle.signal(RESUME_SIGNAL)
    report = await finish(ts_env, handle)
    assert props(report.status).running_status.code == RollingUpgradeStatusCode.COMPLETED


async def test_the_upgrade_timeout_still_runs_while_paused(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 6, zones=["1", "2"], update_domains=1)
    handle, _ = await upgrade(
        client,
        ts_worker.task_queue,
        name,
        policy={"pauseTimeBetweenBatches": "PT20M"},
        upgrade_timeout=timedelta(hours=1),
    )
    await eventually(lambda: get_status(client, name), lambda s: props(s).progress.successful_instance_count)
    await handle.signal(PAUSE_SIGNAL, PauseRequest(reason="until further notice", by="alice"))
    report = await finish(ts_env, handle)  # time skips: the pause between batches, then the hour
    status = props(report.status)
    assert status.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert status.error is not None and status.error.code == UpgradeErrorCode.TIMEOUT
    assert "paused by alice: until further notice" in (status.error.message or "")
    assert sum((await reimaged(fleet, name)).values()) == 1
    ended = max(i.end_time for i in report.instances if i.end_time)
    assert ended - status.running_status.start_time < timedelta(minutes=1)


# --- deferral and approval ------------------------------------------------------------------------


async def test_deferral_upgrades_nothing_until_approved(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 5, update_domains=5)
    handle, _ = await upgrade(client, ts_worker.task_queue, name, deferral=True)
    status = await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PENDING_APPROVAL))
    wait = props(status).wait
    assert wait.until is None and wait.instances and len(wait.instances) == 1
    assert "waiting for approval of batch 1" in wait.reason
    await asyncio.sleep(2)
    assert await fleet.operations(name) == []
    instances = {i.instance_id: i for i in await get_instances(client, name)}
    pending = instances[wait.instances[0]]
    assert pending.state == InstanceState.PENDING_APPROVAL and pending.pending_approval_since is not None
    assert props(await get_status(client, name)).progress.pending_instance_count == 5

    await handle.signal(APPROVE_SIGNAL, ApproveRequest(by="carol"))  # every instance, now and later
    report = await finish(ts_env, handle)
    assert props(report.status).running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert await reimaged(fleet, name) == {str(i): 1 for i in range(5)}
    for instance in report.instances:
        assert instance.approved_by == "carol" and "approved by carol at" in (instance.message or "")


async def test_not_before_timeout_approves_on_its_own(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 3, update_domains=3)
    handle, _ = await upgrade(
        client, ts_worker.task_queue, name, deferral=True, not_before_timeout=timedelta(minutes=15)
    )
    status = await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PENDING_APPROVAL))
    wait = props(status).wait
    assert wait.until == wait.since + timedelta(minutes=15)
    assert "on their own after notBeforeTimeout PT15M" in wait.reason
    assert await fleet.operations(name) == []

    report = await finish(ts_env, handle)  # time skips through three notBeforeTimeouts
    assert props(report.status).running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert await reimaged(fleet, name) == {"0": 1, "1": 1, "2": 1}
    for instance in report.instances:
        assert instance.approved_by == "notBeforeTimeout"
        assert "approved on its own after notBeforeTimeout PT15M" in (instance.message or "")
        assert instance.approval_time - instance.pending_approval_since == timedelta(minutes=15)
        assert instance.start_time >= instance.approval_time
    started = sorted(i.start_time for i in report.instances)
    assert started[-1] - props(report.status).running_status.start_time >= timedelta(minutes=45)


async def test_approving_some_instances_lets_only_those_go(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 5, update_domains=5)  # five batches of one
    handle, _ = await upgrade(client, ts_worker.task_queue, name, deferral=True)
    await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PENDING_APPROVAL))
    order = [batch[0] for batch in await handle.query(PLAN_QUERY, result_type=list[list[str]])]
    assert len(order) == 5

    await handle.signal(APPROVE_SIGNAL, ApproveRequest(instance_ids=order[:2], by="dave"))
    status = await eventually(
        lambda: get_status(client, name),
        lambda s: (
            props(s).progress.successful_instance_count == 2 and waiting(UpgradeWaitKind.PENDING_APPROVAL)(s)
        ),
    )
    assert props(status).wait.instances == [order[2]]
    await asyncio.sleep(1)
    assert await reimaged(fleet, name) == {order[0]: 1, order[1]: 1}

    # An approval before an instance is due counts: the last one goes without a further wait.
    await handle.signal(APPROVE_SIGNAL, ApproveRequest(instance_ids=[order[4]], by="erin"))
    await handle.signal(APPROVE_SIGNAL, ApproveRequest(instance_ids=order[2:4], by="dave"))
    report = await finish(ts_env, handle)
    assert props(report.status).running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert await reimaged(fleet, name) == {i: 1 for i in order}
    by = {i.instance_id: i.approved_by for i in report.instances}
    assert by == {order[0]: "dave", order[1]: "dave", order[2]: "dave", order[3]: "dave", order[4]: "erin"}


async def test_cancel_during_the_approval_wait_touches_nothing(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 4, update_domains=2)
    handle, _ = await upgrade(client, ts_worker.task_queue, name, deferral=True)
    await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PENDING_APPROVAL))
    await handle.signal("cancel")
    report = await finish(ts_env, handle)
    assert props(report.status).running_status.code == RollingUpgradeStatusCode.CANCELLED
    assert props(report.status).wait is None
    assert await fleet.operations(name) == []
    assert {i.state for i in report.instances} == {InstanceState.NOT_STARTED}


async def test_the_upgrade_timeout_runs_during_the_approval_wait(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 4, update_domains=2)
    handle, _ = await upgrade(
        client, ts_worker.task_queue, name, deferral=True, upgrade_timeout=timedelta(minutes=30)
    )
    status = await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PENDING_APPROVAL))
    assert props(status).wait.until == props(status).running_status.start_time + timedelta(minutes=30)
    report = await finish(ts_env, handle)
    error = props(report.status).error
    assert error is not None and error.code == UpgradeErrorCode.TIMEOUT
    assert "waiting for approval" in (error.message or "")
    assert await fleet.operations(name) == []


async def test_pause_during_the_approval_wait_holds_the_approved_batch(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 3, update_domains=3)
    handle, _ = await upgrade(client, ts_worker.task_queue, name, deferral=True)
    await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PENDING_APPROVAL))
    await handle.signal(PAUSE_SIGNAL, PauseRequest(reason="hold on", by="alice"))
    await handle.signal(APPROVE_SIGNAL, ApproveRequest(by="carol"))
    await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PAUSED))
    await asyncio.sleep(1)
    assert await fleet.operations(name) == []
    await handle.signal(RESUME_SIGNAL, ResumeRequest(by="alice"))
    report = await finish(ts_env, handle)
    assert props(report.status).running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert await reimaged(fleet, name) == {"0": 1, "1": 1, "2": 1}


# --- the request and the Web UI -------------------------------------------------------------------


# --- a pause survives a worker SIGKILL (real worker processes on the dev server) ------------------


async def test_a_pause_survives_a_worker_sigkill(local_env, fleet, emulator, tmp_path):
    client = local_env.client
    address = client.service_client.config.target_host
    workers = WorkerProcesses(address, emulator, tmp_path)
    name = await make_scale_set(fleet, 6, zones=["1", "2"], update_domains=1, timing=SLOW)
    await workers.start()
    try:
        # Two batches: a zone (three instances) each.
        handle, _ = await upgrade(
            client,
            workers.task_queue,
            name,
            policy={"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50},
        )
        await eventually(
            lambda: get_status(client, name), lambda s: props(s).progress.in_progress_instance_count
        )
        await handle.signal(PAUSE_SIGNAL, PauseRequest(reason="investigating", by="alice"))
        await workers.crash()  # SIGKILL with batch 1 in flight, the pause just received
        held = await eventually(lambda: get_status(client, name), waiting(UpgradeWaitKind.PAUSED), 60)
        assert props(held).paused.by == "alice" and props(held).progress.successful_instance_count == 3
        assert "paused by alice: investigating" in props(held).wait.reason
        await asyncio.sleep(2)  # held: no batch starts
        assert sum((await reimaged(fleet, name)).values()) == 3

        await handle.signal(RESUME_SIGNAL, ResumeRequest(by="alice"))
        report = await asyncio.wait_for(final_report(handle), 120)
        assert props(report.status).running_status.code == RollingUpgradeStatusCode.COMPLETED
        assert await reimaged(fleet, name) == {str(i): 1 for i in range(6)}
    finally:
        workers.stop()


# --- upgradectl pause, resume, approve ------------------------------------------------------------

QUICK = ["--health-interval", "1", "--health-wait-timeout", "PT2S"]


async def test_upgradectl_pause_approve_resume_and_status(upgradectl, fleet):
    name = await make_scale_set(fleet, 3, update_domains=3)
    started = await upgradectl("start", "--scale-set", name, "--image", str(V2), "--deferral", *QUICK)
    assert started.code == 0, started.err

    async def status_json() -> dict[str, Any]:
        properties: dict[str, Any] = (await upgradectl("status", name, "--json")).json()["properties"]
        return properties

    shown = await eventually(status_json, lambda p: p.get("wait", {}).get("kind") == "PendingApproval", 60)
    assert shown["wait"]["instances"] and "waiting for approval of batch 1" in shown["wait"]["reason"]
    human = await upgradectl("status", name)
    assert "waiting" in human.out and "upgradectl approve" in human.out
    assert "osRollingUpgradeDeferral" in human.out and "PendingApproval" not in human.err

    paused = await upgradectl("pause", name, "--reason", "change freeze", "--by", "alice")
    assert paused.code == 0 and "pause requested" in paused.err
    approved = await upgradectl("approve", name)
    assert approved.code == 0, approved.err
    assert "approved every instance pending approval now and later" in approved.err
    held = await eventually(status_json, lambda p: p.get("wait", {}).get("kind") == "Paused", 60)
    assert held["paused"]["by"] == "alice" and held["paused"]["reason"] == "paused by alice: change freeze"
    assert "paused by alice: change freeze" in (await upgradectl("status", name)).out
    assert await fleet.operations(name) == []

    unknown = await upgradectl("approve", name, "--instances", "0,99")
    assert unknown.code == 3 and "--instances: 99 is not an instance" in unknown.err

    resumed = await upgradectl("resume", name, "--by", "bob")
    assert resumed.code == 0 and "resume requested" in resumed.err
    watched = await upgradectl("watch", name)
    assert watched.code == 0, watched.err
    assert sum((await reimaged(fleet, name)).values()) == 3

    ended = await upgradectl("resume", name)
    assert ended.code == 5 and "already ended" in ended.err and "nothing to resume" in ended.err
    assert (await upgradectl("pause", "no-such-set", "--reason", "x")).code == 5


async def test_start_on_a_set_held_by_another_upgrade_is_refused_naming_the_holder(upgradectl, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)
    first = await upgradectl(
        "start", "--scale-set", name, "--image", str(V2), "--started-by", "Platform",
        "--pause-time-between-batches", "PT1H", *QUICK,
    )  # fmt: skip
    assert first.code == 0, first.err
    second = await upgradectl("start", "--scale-set", name, "--image", str(V2))
    assert second.code == 3
    assert "already being upgraded" in second.err and f"rolling-upgrade/{name}" in second.err
    assert "started by Platform" in second.err
    cancelled = await upgradectl("cancel", name, "--by", "carol")
    assert cancelled.code == 0 and f"cancel requested for the upgrade of {name} by carol" in cancelled.err
