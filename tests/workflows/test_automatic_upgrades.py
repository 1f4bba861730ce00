"""Automatic OS image upgrades: the watcher, its enrollments and availability-first rollouts, on the
time-skipping server, through the Azure SDK to the emulator."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta

import pytest
from temporalio.service import RPCError

from models.automatic import (
    CHECK_NOW_SIGNAL,
    ENROLL_UPDATE,
    ENROLLMENTS_QUERY,
    HOLD_SIGNAL,
    PLATFORM,
    RESUME_SIGNAL,
    ROLLOUT_CANCEL_SIGNAL,
    ROLLOUTS_QUERY,
    WITHDRAW_UPDATE,
    AutomaticSettings,
    Enrollment,
    EnrollRequest,
    HoldRequest,
    RolloutSetState,
    RolloutState,
    RolloutSummary,
    WithdrawRequest,
    watcher_workflow_id,
)
from models.fleet import FaultSpec, ScaleSetSpec, TimingSpec
from models.policy import RollingUpgradePolicy, UpgradePolicy
from models.upgrade import (
    APPROVE_SIGNAL,
    INSTANCES_QUERY,
    ApproveRequest,
    InstanceProgress,
    InstanceState,
    UpgradeReport,
    upgrade_workflow_id,
)
from tests.helpers.automatic import (
    POLICY,
    QUICK,
    Images,
    assert_availability_first,
    enroll,
    finished,
    make_set,
    reimages,
    rollout_of,
    rollout_status,
    watcher,
)
from tests.helpers.upgrades import eventually


async def test_a_published_version_rolls_every_opted_in_latest_set_availability_first(
    ts_env, ts_worker, fleet
):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    west = await make_set(fleet, images.latest, "westeurope", 3, zones=["1", "2", "3"])
    west_too = await make_set(fleet, images.latest, "westeurope", 3, zones=["1", "2", "3"])
    north = await make_set(fleet, images.latest, "northeurope")
    east = await make_set(fleet, images.latest, "eastus")
    pinned = await make_set(fleet, images.at("1.0.0"), "eastus")
    not_enrolled = await make_set(fleet, images.latest, "eastus")
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    for name in (west, west_too, north, east):
        assert (await enroll(handle, name)).note is None
    note = (await enroll(handle, pinned)).note
    assert note is not None and "pinned to version 1.0.0: left alone" in note

    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await finished(ts_env, await rollout_of(ts_env.client, images, "1.1.0"))

    assert rollout.state == RolloutState.COMPLETED
    assert {s.scale_set: s.state for s in rollout.sets} == dict.fromkeys(
        (west, west_too, north, east), RolloutSetState.COMPLETED
    )
    # Geo-pairs in different phases: northeurope and westeurope never together.
    phase = {region: n for n, regions in enumerate(rollout.phases, 1) for region in regions}
    assert phase["northeurope"] != phase["westeurope"]
    ops = {name: reimages(await fleet.operations(name)) for name in (west, west_too, north, east, pinned)}
    for name in (west, west_too, north, east):
        assert len(ops[name]) == 3 and all(op.image_reference.resolved_version == "1.1.0" for op in ops[name])
    assert ops[pinned] == [] and reimages(await fleet.operations(not_enrolled)) == []
    await assert_availability_first(fleet, ops, (west, west_too), north)
    # Each upgrade says who started it, as Azure's history does.
    upgrade = ts_env.client.get_workflow_handle(upgrade_workflow_id(east), result_type=UpgradeReport)
    report = await upgrade.result()
    assert report.history_entry(None).properties.started_by == PLATFORM
    enrolled = {e.scale_set: e for e in await handle.query(ENROLLMENTS_QUERY, result_type=list[Enrollment])}
    assert enrolled[east].applied_version == "1.1.0" and enrolled[pinned].applied_version is None


async def test_an_automatic_upgrade_follows_the_scale_sets_own_rolling_policy(ts_env, ts_worker, fleet):
    # Seed 003: "Upgrade policies defined on the scale set are honored". Enrolled with
    # useRollingUpgradePolicy and only the unhealthy-upgraded limit given: the set's own 50%
    # batches are followed, the given field wins, and cross-zone stays off (availability first)
    # though the set's policy allows it.
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    own = RollingUpgradePolicy(
        max_batch_instance_percent=50, max_unhealthy_instance_percent=50, enable_cross_zone_upgrade=True
    )
    name = f"auto-{uuid.uuid4().hex[:8]}"
    spec = ScaleSetSpec(
        name=name, location="eastus", capacity=6, update_domain_count=1, image_reference=images.latest
    )
    await fleet.create_scale_set(spec.model_copy(update={"rolling_upgrade_policy": own}))
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    policy = UpgradePolicy.model_validate(
        {
            "applicationHealth": QUICK.to_json(),
            "automaticOSUpgradePolicy": {"useRollingUpgradePolicy": True},
            "rollingUpgradePolicy": {"maxUnhealthyUpgradedInstancePercent": 40},
        }
    )
    request = EnrollRequest(
        scale_set=name, policy=policy, policy_given=["maxUnhealthyUpgradedInstancePercent"], by="test"
    )
    await handle.execute_update(ENROLL_UPDATE, request, result_type=Enrollment)

    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await finished(ts_env, await rollout_of(ts_env.client, images, "1.1.0"))
    assert rollout.state == RolloutState.COMPLETED
    report = await ts_env.client.get_workflow_handle(
        upgrade_workflow_id(name), result_type=UpgradeReport
    ).result()
    assert report.request is not None
    chosen = report.request.policy
    assert (chosen.max_batch_instance_percent, chosen.max_unhealthy_instance_percent) == (50, 50)
    assert chosen.max_unhealthy_upgraded_instance_percent == 40
    assert chosen.enable_cross_zone_upgrade is False
    assert report.request.policy_source("maxBatchInstancePercent") == "scale set"
    assert report.batches == 2  # 50% of 6


async def test_derived_phases_are_staged_by_enrolled_instances_and_the_rollout_gets_the_settings(
    ts_env, ts_worker, fleet
):
    """Phase 1 is the region with the fewest enrolled instances (the canary), then up to 2, 4, ...
    regions by instances, geo-pairs apart (eastus and westus: westus waits for phase 3); the
    rollout is asked with the watcher's fleet-scale settings. Read from the rollout's input, so
    this holds whatever the rollout does with it."""
    from models.automatic import RolloutRequest

    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    sizes = {"westeurope": 2, "eastus": 3, "westus": 4, "northeurope": 5}
    names = {region: await make_set(fleet, images.latest, region, size) for region, size in sizes.items()}
    handle = await watcher(
        ts_env.client,
        ts_worker.task_queue,
        max_sets_per_region=3,
        max_instances_per_region=40,
        phase_bake_time=timedelta(hours=12),
        replication_timeout=timedelta(days=2),
    )
    for name in names.values():
        await enroll(handle, name)
    enrolled = {e.scale_set: e for e in await handle.query(ENROLLMENTS_QUERY, result_type=list[Enrollment])}
    assert {region: enrolled[name].instance_count for region, name in names.items()} == sizes

    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")
    history = await rollout.fetch_history()
    payloads = history.events[0].workflow_execution_started_event_attributes.input.payloads
    [request] = await ts_env.client.data_converter.decode(payloads[:1], [RolloutRequest])
    with contextlib.suppress(RPCError):  # (ended already)
        await rollout.terminate("read its input")

    assert request.phases == [["westeurope"], ["eastus", "northeurope"], ["westus"]]
    assert (request.max_sets_per_region, request.max_instances_per_region) == (3, 40)
    assert request.phase_bake_time == timedelta(hours=12)
    assert request.replication_timeout == timedelta(days=2)


async def test_a_region_waits_until_the_version_is_replicated_to_it(ts_env, ts_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    west = await make_set(fleet, images.latest, "westeurope")
    north = await make_set(fleet, images.latest, "northeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["northeurope"]])
    for name in (west, north):
        await enroll(handle, name)

    await fleet.publish_image(images.at("1.1.0"), ["westeurope"])
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")
    status = await eventually(
        lambda: rollout_status(rollout),
        lambda s: (
            {i.scale_set: i.state for i in s.sets}
            == {west: RolloutSetState.COMPLETED, north: RolloutSetState.WAITING_FOR_REPLICATION}
        ),
    )
    assert "waiting for 1.1.0 to reach northeurope" in (
        status.sets[[i.scale_set for i in status.sets].index(north)].message or ""
    )
    assert reimages(await fleet.operations(north)) == []

    await fleet.publish_image(images.at("1.1.0"), ["westeurope", "northeurope"])
    final = await finished(ts_env, rollout)
    assert final.state == RolloutState.COMPLETED
    assert len(reimages(await fleet.operations(north))) == 3


async def test_versions_excluded_from_latest_or_past_end_of_life_are_never_rolled(ts_env, ts_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    name = await make_set(fleet, images.latest, "westeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue, poll_interval=timedelta(hours=1))
    await enroll(handle, name)

    await fleet.publish_image(images.at("1.1.0"), exclude_from_latest=True)
    await fleet.publish_image(images.at("1.2.0"), end_of_life_date="2020-01-01T00:00:00Z")
    await ts_env.sleep(timedelta(hours=5))  # five looks

    assert await handle.query(ROLLOUTS_QUERY, result_type=list[RolloutSummary]) == []
    assert reimages(await fleet.operations(name)) == []


async def test_a_fault_in_phase_one_leaves_phase_two_untouched(ts_env, ts_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    broken = await make_set(fleet, images.latest, "northeurope", faults=FaultSpec(unhealthy_images=["1.1.0"]))
    later = await make_set(fleet, images.latest, "westeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    for name in (broken, later):
        await enroll(handle, name)

    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await finished(ts_env, await rollout_of(ts_env.client, images, "1.1.0"))

    assert rollout.phases == [["northeurope"], ["westeurope"]]
    assert rollout.state == RolloutState.FAULTED
    assert rollout.stopped_by is not None and rollout.stopped_by.target == broken
    assert f"the upgrade of {broken} in northeurope (phase 1) faulted" in (rollout.stopped_by.message or "")
    states = {s.scale_set: s.state for s in rollout.sets}
    assert states == {broken: RolloutSetState.FAULTED, later: RolloutSetState.SKIPPED}
    assert reimages(await fleet.operations(later)) == []
    # The watcher does not start that version again on the sets it stopped at.
    await eventually(
        lambda: handle.query(ROLLOUTS_QUERY, result_type=list[RolloutSummary]),
        lambda rollouts: [r.state for r in rollouts] == [RolloutState.FAULTED],
    )
    enrolled = {e.scale_set: e for e in await handle.query(ENROLLMENTS_QUERY, result_type=list[Enrollment])}
    assert enrolled[broken].failed_version == "1.1.0" and enrolled[later].failed_version == "1.1.0"


async def test_a_newer_version_supersedes_a_rollout_between_scale_sets(ts_env, ts_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1.0, 1.0], restore_seconds=[0, 0], boot_seconds=[0, 0])
    first = await make_set(fleet, images.latest, "westeurope", timing=slow)
    second = await make_set(fleet, images.latest, "northeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["northeurope"]])
    for name in (first, second):
        await enroll(handle, name)
    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    old = await rollout_of(ts_env.client, images, "1.1.0")
    await eventually(
        lambda: rollout_status(old),
        lambda s: {i.scale_set: i.state for i in s.sets}[first] == RolloutSetState.RUNNING,
    )

    await fleet.publish_image(images.at("1.2.0"))  # while the first phase's upgrade runs
    await handle.signal(CHECK_NOW_SIGNAL)
    superseded = await finished(ts_env, old)  # once the upgrade in flight finished
    new = await finished(ts_env, await rollout_of(ts_env.client, images, "1.2.0"))

    assert superseded.state == RolloutState.SUPERSEDED
    assert {s.scale_set: s.state for s in superseded.sets}[second] == RolloutSetState.SKIPPED
    assert new.state == RolloutState.COMPLETED
    assert [op.image_reference.resolved_version for op in reimages(await fleet.operations(second))] == [
        "1.2.0"
    ] * 3
    assert [op.image_reference.resolved_version for op in reimages(await fleet.operations(first))] == [
        "1.1.0"
    ] * 3 + ["1.2.0"] * 3


async def test_opting_out_mid_rollout_lets_the_upgrade_in_flight_finish_and_starts_no_other(
    ts_env, ts_worker, fleet
):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1.0, 1.0], restore_seconds=[0, 0], boot_seconds=[0, 0])
    first = await make_set(fleet, images.latest, "westeurope", timing=slow)
    second = await make_set(fleet, images.latest, "northeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["northeurope"]])
    for name in (first, second):
        await enroll(handle, name)
    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")
    await eventually(
        lambda: rollout_status(rollout),
        lambda s: {i.scale_set: i.state for i in s.sets}[first] == RolloutSetState.RUNNING,
    )

    for name in (first, second):
        await handle.execute_update(
            WITHDRAW_UPDATE, WithdrawRequest(scale_set=name, by="test"), result_type=Enrollment
        )
    final = await finished(ts_env, rollout)

    states = {s.scale_set: s for s in final.sets}
    assert states[first].state == RolloutSetState.COMPLETED  # in flight: finished
    assert len(reimages(await fleet.operations(first))) == 3
    assert states[second].state == RolloutSetState.SKIPPED
    assert "opted out" in (states[second].message or "")
    assert reimages(await fleet.operations(second)) == []
    assert await handle.query(ENROLLMENTS_QUERY, result_type=list[Enrollment]) == []


@pytest.mark.parametrize("days", [365])
async def test_the_watcher_keeps_a_bounded_history_over_a_year(ts_env, ts_worker, fleet, days):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    name = await make_set(fleet, images.latest, "westeurope", 1)
    handle = await watcher(ts_env.client, ts_worker.task_queue, poll_interval=timedelta(days=1))
    await enroll(handle, name)
    first_run = (await handle.describe()).run_id

    for _ in range(days // 30):  # (one long sleep would outlast the call's own deadline)
        await ts_env.sleep(timedelta(days=30))

    watcher_id = watcher_workflow_id(ts_worker.task_queue)
    description = await ts_env.client.get_workflow_handle(watcher_id).describe()
    assert description.run_id != first_run  # continued as new
    history = await ts_env.client.get_workflow_handle(watcher_id).fetch_history()
    assert len(history.events) < 5_000
    # The enrollment went along.
    enrolled = await ts_env.client.get_workflow_handle(watcher_id).query(
        ENROLLMENTS_QUERY, result_type=list[Enrollment]
    )
    assert [e.scale_set for e in enrolled] == [name]


async def test_a_deferred_automatic_upgrade_waits_for_approval_and_the_notice_approves_on_its_own(
    ts_env, ts_worker, fleet
):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    approved = await make_set(fleet, images.latest, "westeurope", 2)
    noticed = await make_set(fleet, images.latest, "eastus", 2)
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["eastus"]])
    deferred = UpgradePolicy.model_validate(
        {"applicationHealth": QUICK.to_json(), "automaticOSUpgradePolicy": {"osRollingUpgradeDeferral": True}}
    )
    await enroll(handle, approved, deferred)
    notice = EnrollRequest(scale_set=noticed, policy=deferred, not_before_timeout=timedelta(minutes=15))
    await handle.execute_update(ENROLL_UPDATE, notice, result_type=Enrollment)
    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")

    # Nothing is touched until someone approves (Azure's ApproveRollingUpgrade).
    upgrade = ts_env.client.get_workflow_handle(upgrade_workflow_id(approved), result_type=UpgradeReport)

    async def instances() -> list[InstanceProgress]:
        try:
            progress: list[InstanceProgress] = await upgrade.query(
                INSTANCES_QUERY, result_type=list[InstanceProgress]
            )
            return progress
        except RPCError:
            return []  # not started yet

    await eventually(instances, lambda found: any(i.state == InstanceState.PENDING_APPROVAL for i in found))
    assert reimages(await fleet.operations(approved)) == []
    await upgrade.signal(APPROVE_SIGNAL, ApproveRequest(by="operator"))
    final = await finished(ts_env, rollout)  # the second set: approved on its own after PT15M

    assert final.state == RolloutState.COMPLETED
    approvers = {}
    for name in (approved, noticed):
        done = ts_env.client.get_workflow_handle(upgrade_workflow_id(name), result_type=UpgradeReport)
        approvers[name] = {i.approved_by for i in (await done.result()).instances}
        assert len(reimages(await fleet.operations(name))) == 2
    assert approvers == {approved: {"operator"}, noticed: {"notBeforeTimeout"}}


async def test_a_cancelled_rollout_cancels_the_upgrade_in_flight_starts_no_other_and_is_not_retried(
    ts_env, ts_worker, fleet
):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1.0, 1.0], restore_seconds=[0, 0], boot_seconds=[0, 0])
    first = await make_set(fleet, images.latest, "westeurope", 4, timing=slow)
    second = await make_set(fleet, images.latest, "northeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["northeurope"]])
    for name in (first, second):
        await enroll(handle, name)
    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")
    await eventually(lambda: fleet.operations(first), lambda ops: len(reimages(ops)) >= 1)

    await rollout.signal(ROLLOUT_CANCEL_SIGNAL, HoldRequest(by="test", reason="bad image"))
    final = await finished(ts_env, rollout)

    assert final.state == RolloutState.CANCELLED
    states = {s.scale_set: s.state for s in final.sets}
    assert states == {first: RolloutSetState.CANCELLED, second: RolloutSetState.SKIPPED}
    assert 1 <= len(reimages(await fleet.operations(first))) < 4  # its batch in flight finished
    assert reimages(await fleet.operations(second)) == []
    await ts_env.sleep(timedelta(hours=1))  # four more looks: the version is not started again
    rollouts = await handle.query(ROLLOUTS_QUERY, result_type=list[RolloutSummary])
    assert [r.state for r in rollouts] == [RolloutState.CANCELLED]


async def test_a_set_refused_at_admission_is_skipped_and_the_rollout_goes_on(ts_env, ts_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    kept = await make_set(fleet, images.latest, "westeurope")
    gone = await make_set(fleet, images.latest, "northeurope")  # phase 2: held before it starts
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["northeurope"]])
    for name in (gone, kept):
        await enroll(handle, name)
    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")
    await rollout.signal(HOLD_SIGNAL, HoldRequest(by="test", reason="while the set goes"))
    await eventually(lambda: rollout_status(rollout), lambda s: s.state == RolloutState.HELD)
    await fleet.delete_scale_set(gone)
    await rollout.signal(RESUME_SIGNAL, HoldRequest(by="test"))
    final = await finished(ts_env, rollout)

    states = {s.scale_set: s for s in final.sets}
    assert states[gone].state == RolloutSetState.SKIPPED
    assert "refused, nothing touched: ScaleSetNotFound" in (states[gone].message or "")
    assert final.state == RolloutState.COMPLETED and final.stopped_by is None
    assert states[kept].state == RolloutSetState.COMPLETED


async def test_a_watcher_that_ended_is_started_again_with_its_enrollments(ts_env, ts_worker, fleet):
    from starter import automatic

    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    first = await make_set(fleet, images.latest, "westeurope", 1)
    second = await make_set(fleet, images.latest, "eastus", 1)
    queue = ts_worker.task_queue
    await automatic.change_settings(ts_env.client, queue, AutomaticSettings(poll_interval=timedelta(hours=2)))
    await automatic.enroll(ts_env.client, queue, EnrollRequest(scale_set=first, policy=POLICY, by="test"))
    handle = ts_env.client.get_workflow_handle(watcher_workflow_id(queue))
    await handle.terminate(reason="someone pressed Terminate in the Web UI")

    shown = await automatic.overview(ts_env.client, queue)  # reads only: not started again
    assert not shown.running and [e.scale_set for e in shown.enrollments] == [first]
    await automatic.enroll(ts_env.client, queue, EnrollRequest(scale_set=second, policy=POLICY, by="test"))

    again = await automatic.overview(ts_env.client, queue)
    assert again.running
    assert sorted(e.scale_set for e in again.enrollments) == sorted([first, second])
    assert again.settings.poll_interval == timedelta(hours=2)


async def test_a_rollout_terminated_behind_the_watchers_back_does_not_block_its_image(
    ts_env, ts_worker, fleet
):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1.0, 1.0], restore_seconds=[0, 0], boot_seconds=[0, 0])
    first = await make_set(fleet, images.latest, "westeurope", timing=slow)
    second = await make_set(fleet, images.latest, "northeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["northeurope"]])
    for name in (first, second):
        await enroll(handle, name)
    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    old = await rollout_of(ts_env.client, images, "1.1.0")
    await eventually(
        lambda: rollout_status(old),
        lambda s: {i.scale_set: i.state for i in s.sets}[first] == RolloutSetState.RUNNING,
    )
    await old.terminate(reason="pressed Terminate in the Web UI")

    await handle.signal(CHECK_NOW_SIGNAL)
    rollouts = await eventually(
        lambda: handle.query(ROLLOUTS_QUERY, result_type=list[RolloutSummary]),
        lambda found: [r.state for r in found] == [RolloutState.CANCELLED],
    )
    assert "ended without a word to the watcher" in (rollouts[0].message or "")
    enrolled = {e.scale_set: e for e in await handle.query(ENROLLMENTS_QUERY, result_type=list[Enrollment])}
    assert enrolled[second].failed_version == "1.1.0"  # not started again by itself

    await fleet.publish_image(images.at("1.2.0"))  # a newer version rolls as usual
    await handle.signal(CHECK_NOW_SIGNAL)
    new = await finished(ts_env, await rollout_of(ts_env.client, images, "1.2.0"))
    assert {s.scale_set: s.state for s in new.sets}[second] == RolloutSetState.COMPLETED


async def test_opting_out_with_cancel_cancels_the_upgrade_in_flight(ts_env, ts_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1.0, 1.0], restore_seconds=[0, 0], boot_seconds=[0, 0])
    first = await make_set(fleet, images.latest, "westeurope", 5, timing=slow)
    second = await make_set(fleet, images.latest, "northeurope")
    handle = await watcher(ts_env.client, ts_worker.task_queue, phases=[["westeurope"], ["northeurope"]])
    for name in (first, second):
        await enroll(handle, name)
    await fleet.publish_image(images.at("1.1.0"))
    await handle.signal(CHECK_NOW_SIGNAL)
    rollout = await rollout_of(ts_env.client, images, "1.1.0")
    await eventually(lambda: fleet.operations(first), lambda ops: len(reimages(ops)) >= 1)

    withdraw = WithdrawRequest(scale_set=first, cancel_in_flight=True, by="test")
    await handle.execute_update(WITHDRAW_UPDATE, withdraw, result_type=Enrollment)
    final = await finished(ts_env, rollout)

    states = {s.scale_set: s.state for s in final.sets}
    assert states == {first: RolloutSetState.CANCELLED, second: RolloutSetState.COMPLETED}
    assert 1 <= len(reimages(await fleet.operations(first))) < 5  # its batch in flight finished
    upgrade = ts_env.client.get_workflow_handle(upgrade_workflow_id(first), result_type=UpgradeReport)
    assert (await upgrade.result()).status.properties.running_status.code == "Cancelled"
