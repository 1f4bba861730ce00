"""Maintenance windows (Microsoft.Maintenance, scope OSImage) holding an upgrade: on the
time-skipping server, through the Azure SDK to the emulator, the window read from the
configuration assigned to the set. The series starts on the eve of the US spring-forward change
(2027-03-14), so the hold between the two batches spans it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.automatic import CHECK_NOW_SIGNAL, RolloutSetState, RolloutState
from models.maintenance import MaintenanceWindow
from models.status import RollingUpgradeStatusCode, UpgradeWaitKind
from models.upgrade import InstanceState, UpgradeReport, upgrade_workflow_id
from starter.processes import EmulatorAddress
from starter.upgrades import final_report, get_status
from tests.helpers.automatic import Images, enroll, finished, make_set, rollout_of, rollout_status, watcher
from tests.helpers.maintenance import MaintenanceArm
from tests.helpers.upgrades import eventually, finish, make_scale_set, upgrade

# 22:00 Pacific for 5 hours, every day from 2027-03-13 (PST, UTC-8); from 2027-03-14 on, PDT (UTC-7).
WINDOW = {"startDateTime": "2027-03-13 22:00", "duration": "05:00", "timeZone": "Pacific Standard Time"}
FIRST_OPENS = datetime(2027, 3, 14, 6, 0, tzinfo=UTC)  # 22:00 PST
SECOND_OPENS = datetime(2027, 3, 15, 5, 0, tzinfo=UTC)  # 22:00 PDT: 23 hours later, not 24


async def assigned(emulator: EmulatorAddress, scale_set: str) -> None:
    async with MaintenanceArm(emulator) as arm:
        (await arm.put_configuration(f"nightly-{scale_set}", WINDOW)).raise_for_status()
        (await arm.assign(scale_set, f"nightly-{scale_set}")).raise_for_status()


async def test_a_window_holds_batches_until_it_opens_and_again_after_it_closes_across_dst(
    ts_env, ts_worker, fleet, emulator
):
    name = await make_scale_set(fleet, 4, update_domains=1)
    await assigned(emulator, name)
    # Two batches of two; the 6-hour pause after the first outlasts the 5-hour window.
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        respect_maintenance_window=True,
        policy={
            "maxBatchInstancePercent": 50,
            "maxUnhealthyInstancePercent": 50,
            "pauseTimeBetweenBatches": "PT6H",
        },
    )
    held = await eventually(
        lambda: get_status(ts_env.client, name),
        lambda s: s.properties is not None and s.properties.wait is not None,
    )
    assert held.properties is not None and held.properties.wait is not None
    wait = held.properties.wait
    assert wait.kind == UpgradeWaitKind.MAINTENANCE_WINDOW and wait.until == FIRST_OPENS
    assert "waiting for the maintenance window" in wait.reason and "PST" in wait.reason
    assert held.properties.progress.successful_instance_count == 0  # nothing touched before it

    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    starts = sorted((i.start_time, i.batch) for i in report.instances if i.state == InstanceState.SUCCEEDED)
    first = [t for t, batch in starts if batch == 1]
    second = [t for t, batch in starts if batch == 2]
    assert len(first) == len(second) == 2
    assert all(FIRST_OPENS <= t < FIRST_OPENS + timedelta(minutes=5) for t in first if t)
    # Not at the 6-hour pause's end (inside no window) but when the next window opens, 23 h later.
    assert all(SECOND_OPENS <= t < SECOND_OPENS + timedelta(minutes=5) for t in second if t)


async def test_a_manual_start_ignores_the_window_unless_asked(ts_env, ts_worker, fleet, emulator):
    name = await make_scale_set(fleet, 2, update_domains=1)
    await assigned(emulator, name)
    handle, _ = await upgrade(
        ts_env.client, ts_worker.task_queue, name, policy={"maxBatchInstancePercent": 50}
    )
    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert all(i.start_time and i.start_time < FIRST_OPENS for i in report.instances)


async def test_a_rollout_starts_a_sets_batches_only_in_its_enrolled_window_and_says_so(
    ts_env, ts_worker, fleet
):
    # A window opening three hours from the test server's now (time skips there: other tests
    # may have moved it on), in UTC; the watcher looks once a day, so little else wakes up.
    now = await ts_env.get_current_time()
    opens = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
    window = {"startDateTime": f"{opens:%Y-%m-%d %H:%M}", "duration": "05:00", "timeZone": "UTC"}
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    name = await make_set(fleet, images.latest, "westeurope", 2)
    handle = await watcher(ts_env.client, ts_worker.task_queue, poll_interval=timedelta(days=1))
    enrolled = await enroll(handle, name, maintenance_window=MaintenanceWindow.model_validate(window))
    assert enrolled.maintenance_window is not None

    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")
    held = await eventually(
        lambda: rollout_status(rollout),
        lambda s: any("waiting for the maintenance window" in (i.message or "") for i in s.sets),
    )
    [item] = held.sets
    assert item.state == RolloutSetState.RUNNING and "UTC" in (item.message or "")
    assert await fleet.operations(name) == []  # nothing touched outside the window

    ended = await finished(ts_env, rollout)
    assert ended.state == RolloutState.COMPLETED
    upgrade = ts_env.client.get_workflow_handle(upgrade_workflow_id(name), result_type=UpgradeReport)
    report = await final_report(upgrade)
    assert all(i.start_time and opens <= i.start_time < opens + timedelta(hours=5) for i in report.instances)
