"""Rollouts at fleet scale on the time-skipping server, through the Azure SDK to the emulator: a
region's sets upgrade at once in zone waves (never two zones of a region in flight, the sets of a
wave really together), geo-pairs never together, phase after phase; a region the version never
reaches holds back no other and is skipped after the replication timeout; a set a user cancels holds
the rollout; the bake time stops a rollout whose earlier phase turned unhealthy. (The zone waves'
decisions as a table: tests/rules/test_waves.py.)"""

from __future__ import annotations

import asyncio
import functools
import itertools
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fleet.emulator.admin import EmulatorAdmin
from models.automatic import (
    CHECK_NOW_SIGNAL,
    RESUME_SIGNAL,
    ROLLOUT_CANCEL_SIGNAL,
    HoldRequest,
    RolloutSetState,
    RolloutState,
)
from models.fleet import FaultSpec, FleetOperation, HealthState, TimingSpec
from models.upgrade import (
    CANCEL_SIGNAL,
    ZONE_PERMIT_SIGNAL,
    CancelRequest,
    UpgradeReport,
    upgrade_workflow_id,
)
from tests.helpers.automatic import (
    Images,
    assert_one_zone_in_flight,
    enroll,
    finished,
    in_flight,
    make_set,
    overlap,
    reimages,
    rollout_of,
    rollout_status,
    watcher,
)
from tests.helpers.upgrades import eventually

# Long enough that an instance's reimage and boot overlap another set's in the same wave.
STEADY = TimingSpec(reimage_seconds=[1.0, 1.0], restore_seconds=[0, 0], boot_seconds=[0.5, 0.5])
ZONES = ["1", "2", "3"]


async def roll_out(
    env: object,
    worker: object,
    fleet: EmulatorAdmin,
    images: Images,
    names: list[str],
    *,
    regions: list[str] | None = None,
    **settings: object,
) -> tuple[WorkflowHandle[Any, Any], WorkflowHandle[Any, Any]]:
    """A watcher with `settings` and `names` enrolled, version 1.1.0 published (to `regions`, or
    everywhere): the watcher and the rollout it starts."""
    client = env.client  # type: ignore[attr-defined]
    handle = await watcher(client, worker.task_queue, **settings)  # type: ignore[attr-defined]
    for name in names:
        await enroll(handle, name)
    await fleet.publish_image(images.at("1.1.0"), regions)
    await handle.signal(CHECK_NOW_SIGNAL)
    return handle, await rollout_of(client, images, "1.1.0")


async def reimaging(
    env: object, worker: object, fleet: EmulatorAdmin, *, siblings: int
) -> tuple[WorkflowHandle[Any, Any], str, list[str], str]:
    """A rollout in two phases, its first set (westeurope, slow reimages) reimaging: the rollout,
    that set, its `siblings` in the region and the set of the later phase (eastus)."""
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[2.0, 2.0], restore_seconds=[0, 0], boot_seconds=[0, 0])
    first = await make_set(fleet, images.latest, "westeurope", 6, zones=ZONES, timing=slow)
    others = [await make_set(fleet, images.latest, "westeurope", 3, zones=ZONES) for _ in range(siblings)]
    later = await make_set(fleet, images.latest, "eastus")
    names = [first, *others, later]
    _, rollout = await roll_out(env, worker, fleet, images, names, phases=[["westeurope"], ["eastus"]])
    await eventually(lambda: fleet.operations(first), lambda ops: len(reimages(ops)) >= 1)
    return rollout, first, others, later


def zone_windows(
    ops: dict[str, list[FleetOperation]], zone_of: dict[tuple[str, str], str | None], names: list[str]
) -> dict[str | None, list[tuple[str, tuple[float, float]]]]:
    """Per zone, each set's window in it (first reimage sent to last instance up)."""
    by_zone: dict[str | None, list[tuple[str, tuple[float, float]]]] = {}
    for name in names:
        per_zone: dict[str | None, list[FleetOperation]] = {}
        for op in ops[name]:
            per_zone.setdefault(zone_of[(name, op.instance_id)], []).append(op)
        for zone, zone_ops in per_zone.items():
            by_zone.setdefault(zone, []).append((name, in_flight(zone_ops)))
    return by_zone


async def test_the_sets_of_a_region_go_together_zone_by_zone_pairs_and_phases_apart(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    # westeurope and northeurope are a geo-pair; the canary is the region with fewer instances.
    west = [
        await make_set(fleet, images.latest, "westeurope", 3, zones=ZONES, timing=STEADY) for _ in range(3)
    ]
    north = [
        await make_set(fleet, images.latest, "northeurope", 6, zones=ZONES, timing=STEADY) for _ in range(3)
    ]
    _, handle = await roll_out(ts_env, ts_worker, fleet, images, [*west, *north])
    rollout = await finished(ts_env, handle)

    assert rollout.state == RolloutState.COMPLETED
    assert rollout.phases == [["westeurope"], ["northeurope"]]
    assert {s.state for s in rollout.sets} == {RolloutSetState.COMPLETED}
    ops = {name: reimages(await fleet.operations(name)) for name in (*west, *north)}
    zone_of = {}
    for name in (*west, *north):
        assert len(ops[name]) == (3 if name in west else 6)  # every instance once
        for instance in (await fleet.show_scale_set(name)).instances:
            zone_of[(name, instance.instance_id)] = instance.zone
    for region in (west, north):
        windows = [(zone_of[(n, op.instance_id)], in_flight([op])) for n in region for op in ops[n]]
        assert_one_zone_in_flight(windows)  # across its sets
        # The sets of one wave were in flight together: the parallelism is real.
        for zone, sets in zone_windows(ops, zone_of, region).items():
            assert len(sets) == 3
            latest_start = max(window[0] for _, window in sets)
            earliest_end = min(window[1] for _, window in sets)
            assert latest_start < earliest_end, f"the sets of zone {zone}'s wave went one after another"
        # Zones in order: 1, then 2, then 3.
        starts = {z: min(w[0] for _, w in sets) for z, sets in zone_windows(ops, zone_of, region).items()}
        assert sorted(starts, key=lambda z: starts[z]) == ZONES
    # The geo-pair apart, and phase 2 only after phase 1.
    west_end = max(in_flight(ops[n])[1] for n in west)
    north_start = min(in_flight(ops[n])[0] for n in north)
    assert west_end <= north_start
    # A set's permit that came right after its reading reads health no second time (ARM's budget).
    quick, read_again = 0, 0
    for name in (*west, *north):
        history = await ts_env.client.get_workflow_handle(upgrade_workflow_id(name)).fetch_history()
        q, r = reads_after_quick_permits(history.events, timedelta(seconds=5))
        quick, read_again = quick + q, read_again + r
    assert quick > 0, "no permit came within a probe interval of the set's reading: nothing was shown"
    assert read_again == 0, f"{read_again} of {quick} quick permits read health again"
    # The first wave came with each set's start: its first batch before any report or permit.
    for name in (*west, *north):
        history = await ts_env.client.get_workflow_handle(upgrade_workflow_id(name)).fetch_history()
        assert messages_before_first_batch(history.events) == [], name


def messages_before_first_batch(events: Any) -> list[str]:
    """The wave reports an upgrade sent and the permits it got before it started its first batch."""
    seen: list[str] = []
    for event in events:
        kind = EventType.Name(event.event_type)
        if kind == "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED":
            return seen
        if kind == "EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED":
            seen.append(event.signal_external_workflow_execution_initiated_event_attributes.signal_name)
        elif kind == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED":
            seen.append(event.workflow_execution_signaled_event_attributes.signal_name)
    return seen


def reads_after_quick_permits(events: Any, interval: timedelta) -> tuple[int, int]:
    """In an upgrade's history: how many zone permits came within `interval` of its last health
    reading (admission or read_health), and after how many of them health was read again before
    the next batch."""
    quick = read_again = 0
    read_at, waiting = None, False
    for event in events:
        kind = EventType.Name(event.event_type)
        when = event.event_time.ToDatetime()
        if kind == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            if name == "read_health" and waiting:
                read_again += 1
            if name in ("read_health", "resolve_image", "resolve_extensions"):
                read_at = when  # (admission: the set described, then the change resolved)
        elif kind == "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED":
            if event.workflow_execution_signaled_event_attributes.signal_name == ZONE_PERMIT_SIGNAL:
                waiting = read_at is not None and when - read_at < interval
                quick += waiting
        elif kind == "EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED":
            waiting = False
    return quick, read_again


async def test_a_region_the_version_never_reaches_holds_back_no_other_and_is_skipped_after_the_timeout(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    never = await make_set(fleet, images.latest, "westeurope")
    later = await make_set(fleet, images.latest, "eastus")
    _, rollout = await roll_out(  # never replicated to westeurope
        ts_env,
        ts_worker,
        fleet,
        images,
        [never, later],
        regions=["eastus"],
        phases=[["westeurope"], ["eastus"]],
        replication_timeout=timedelta(days=1),
    )
    waiting = await eventually(
        lambda: rollout_status(rollout),
        lambda s: (
            {i.scale_set: i.state for i in s.sets}
            == {never: RolloutSetState.WAITING_FOR_REPLICATION, later: RolloutSetState.COMPLETED}
        ),
    )
    assert waiting.current_phase == 2  # the later phase went on meanwhile
    final = await finished(ts_env, rollout)

    assert final.state == RolloutState.COMPLETED
    states = {s.scale_set: s for s in final.sets}
    assert states[never].state == RolloutSetState.SKIPPED
    assert "1.1.0 to reach westeurope" in (states[never].message or "")
    assert "PT24H" in (states[never].message or "")
    assert states[never].end_time - states[never].start_time >= timedelta(days=1)
    # Looks again every 5 minutes at first, then less and less often, at most hourly:
    # a day of waiting is some thirty looks and timers, not 288.
    history = await rollout.fetch_history()
    looks = sum(e.HasField("activity_task_scheduled_event_attributes") for e in history.events)
    timers = sum(e.HasField("timer_started_event_attributes") for e in history.events)
    assert looks <= 32 and timers <= 32, (looks, timers)
    assert reimages(await fleet.operations(never)) == []
    assert len(reimages(await fleet.operations(later))) == 3


async def test_a_set_a_user_cancels_holds_the_rollout_until_resumed_and_cancel_ends_it(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    rollout, cancelled, [sibling], later = await reimaging(ts_env, ts_worker, fleet, siblings=1)
    upgrade = ts_env.client.get_workflow_handle(upgrade_workflow_id(cancelled))
    await upgrade.signal(CANCEL_SIGNAL, CancelRequest(by="alice", reason="wrong window"))
    held = await eventually(lambda: rollout_status(rollout), lambda s: s.state == RolloutState.HELD)
    assert held.hold is not None and held.hold.by == "alice"
    assert cancelled in held.hold.reason and "cancelled by alice" in held.hold.reason
    states = {s.scale_set: s.state for s in held.sets}
    assert states[cancelled] == RolloutSetState.CANCELLED and states[later] == RolloutSetState.PENDING
    await ts_env.sleep(timedelta(hours=1))  # held: nothing new starts
    assert reimages(await fleet.operations(later)) == []

    await rollout.signal(RESUME_SIGNAL, HoldRequest(by="alice"))  # on without the cancelled set
    final = await finished(ts_env, rollout)
    assert final.state == RolloutState.COMPLETED
    states = {s.scale_set: s.state for s in final.sets}
    assert states == {
        cancelled: RolloutSetState.CANCELLED,
        sibling: RolloutSetState.COMPLETED,
        later: RolloutSetState.COMPLETED,
    }
    assert len(reimages(await fleet.operations(cancelled))) < 6  # not taken up again


async def test_a_held_rollout_cancelled_ends_with_the_later_phases_untouched(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    rollout, cancelled, _, later = await reimaging(ts_env, ts_worker, fleet, siblings=0)
    await ts_env.client.get_workflow_handle(upgrade_workflow_id(cancelled)).signal(CANCEL_SIGNAL)
    await eventually(lambda: rollout_status(rollout), lambda s: s.state == RolloutState.HELD)

    await rollout.signal(ROLLOUT_CANCEL_SIGNAL, HoldRequest(by="alice", reason="not today"))
    final = await finished(ts_env, rollout)
    assert final.state == RolloutState.CANCELLED
    assert {s.scale_set: s.state for s in final.sets} == {
        cancelled: RolloutSetState.CANCELLED,
        later: RolloutSetState.SKIPPED,
    }
    assert reimages(await fleet.operations(later)) == []


@pytest.mark.parametrize("meanwhile", ["turned unhealthy", "healthy", "deleted"])
async def test_after_the_bake_time_an_earlier_phase_turned_unhealthy_stops_the_rollout_a_healthy_one_goes_on(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin, meanwhile: str
) -> None:
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    canary = await make_set(fleet, images.latest, "westeurope", 5)
    later = await make_set(fleet, images.latest, "eastus")
    _, rollout = await roll_out(
        ts_env,
        ts_worker,
        fleet,
        images,
        [canary, later],
        phases=[["westeurope"], ["eastus"]],
        phase_bake_time=timedelta(hours=6),
    )
    baking = await eventually(lambda: rollout_status(rollout), lambda s: s.bake_until is not None)
    assert {s.scale_set: s.state for s in baking.sets}[canary] == RolloutSetState.COMPLETED
    assert reimages(await fleet.operations(later)) == []  # not while baking
    if meanwhile == "turned unhealthy":  # 2 of 5 down: more than maxUnhealthyUpgradedInstancePercent 20%
        for instance in ("0", "1"):
            await fleet.set_health(canary, instance, HealthState.UNHEALTHY)
    if meanwhile == "deleted":  # nothing left to judge: not a failure
        await fleet.delete_scale_set(canary)
    final = await finished(ts_env, rollout)

    sets = {s.scale_set: s for s in final.sets}
    if meanwhile != "turned unhealthy":
        assert final.state == RolloutState.COMPLETED
        assert sets[later].start_time - sets[canary].end_time >= timedelta(hours=6)
        return
    assert final.state == RolloutState.FAULTED
    assert final.stopped_by is not None and final.stopped_by.target == canary
    assert final.stopped_by.code == "UnhealthyAfterBakeTime"
    message = final.stopped_by.message or ""
    assert "2 of 5 instances unhealthy (40%)" in message and "phase 2 not started" in message
    assert sets[later].state == RolloutSetState.SKIPPED
    assert reimages(await fleet.operations(later)) == []


async def test_a_fault_in_a_wave_stops_the_sets_in_flight_after_their_batch_and_starts_no_zone_more(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    broken = await make_set(
        fleet, images.latest, "westeurope", 3, zones=ZONES, faults=FaultSpec(unhealthy_images=["1.1.0"])
    )
    healthy = [await make_set(fleet, images.latest, "westeurope", 3, zones=ZONES) for _ in range(2)]
    later = await make_set(fleet, images.latest, "eastus")
    _, rollout = await roll_out(
        ts_env, ts_worker, fleet, images, [broken, *healthy, later], phases=[["westeurope"], ["eastus"]]
    )
    final = await finished(ts_env, rollout)

    assert final.state == RolloutState.FAULTED
    assert final.stopped_by is not None and final.stopped_by.target == broken
    states = {s.scale_set: s.state for s in final.sets}
    assert states[broken] == RolloutSetState.FAULTED and states[later] == RolloutSetState.SKIPPED
    for name in healthy:  # in flight in zone 1's wave with it: stopped after that batch
        assert states[name] == RolloutSetState.CANCELLED
        assert "the rollout stopped at " + broken in (
            {s.scale_set: s for s in final.sets}[name].message or ""
        )
    zone_of = {}
    for name in (broken, *healthy):
        for instance in (await fleet.show_scale_set(name)).instances:
            zone_of[(name, instance.instance_id)] = instance.zone
    touched = {
        zone_of[(name, op.instance_id)]
        for name in (broken, *healthy)
        for op in reimages(await fleet.operations(name))
    }
    assert touched == {"1"}  # no later wave started
    assert reimages(await fleet.operations(later)) == []


async def test_a_rollout_terminated_mid_waves_leaves_no_upgrade_waiting_for_a_wave(
    local_env: WorkflowEnvironment, local_worker: Worker, fleet: EmulatorAdmin
) -> None:
    """On a real server (the time-skipping one neither terminates a child with its parent nor
    tells a parent its child was terminated): terminating a rollout terminates its cohorts, and
    each upgrade in flight stops after its zone, when the cohort no longer takes its report (an
    upgrade waiting for a wave finds out within the hour it re-reports)."""
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1.0, 1.0], restore_seconds=[0, 0], boot_seconds=[0, 0])
    names = [
        await make_set(fleet, images.latest, "westeurope", 3, zones=ZONES, timing=slow) for _ in range(2)
    ]
    handle, rollout = await roll_out(local_env, local_worker, fleet, images, names)
    for name in names:  # both in zone 1's wave
        await eventually(functools.partial(fleet.operations, name), lambda ops: len(reimages(ops)) >= 1, 60)
    await rollout.terminate(reason="test: an operator terminates the rollout")

    for name in names:
        upgrade = local_env.client.get_workflow_handle(upgrade_workflow_id(name), result_type=UpgradeReport)
        report = await asyncio.wait_for(upgrade.result(), 60)
        assert report.status.properties is not None
        assert report.status.properties.running_status.code == "Cancelled"
        assert len(reimages(await fleet.operations(name))) == 1  # zone 1 only
    await handle.terminate(reason="test done")


async def test_no_run_of_a_rollout_grows_with_the_fleet_only_with_a_cohort(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    """Twelve sets of one region, cohorts of three: the rollout's own history grows by a few
    events a cohort, each cohort's with its own sets only; at 1,000 sets and cohorts of 20 the
    largest run stays far under Temporal's 10,240-event warning (see `make bench ARGS=rollout`)."""
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    names = [await make_set(fleet, images.latest, "eastus", 2) for _ in range(12)]
    _, rollout = await roll_out(ts_env, ts_worker, fleet, images, names, max_sets_per_region=3)
    final = await finished(ts_env, rollout)
    assert final.state == RolloutState.COMPLETED and {s.state for s in final.sets} == {
        RolloutSetState.COMPLETED
    }

    rollout_events = len((await rollout.fetch_history()).events)
    cohort_events = [
        len(
            (
                await ts_env.client.get_workflow_handle(f"{rollout.id}/eastus/cohort-{n}").fetch_history()
            ).events
        )
        for n in (1, 2, 3, 4)
    ]
    # Per cohort: its start, end and the workflow tasks around them; per set in a cohort: its
    # upgrade's start and end, its reports and permits.
    # (measured: 61, and 50-56 per cohort)
    assert rollout_events <= 40 + 10 * 4, rollout_events
    assert all(events <= 30 + 15 * 3 for events in cohort_events), cohort_events


async def test_a_mixed_layout_keeps_one_zone_of_a_region_in_flight_regional_sets_apart_every_instance_once(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    """Sets of one region on different zones (all three, two, one) and regional sets, over a
    geo-pair and a third region: audited from the emulator's operations log alone."""
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    layout: dict[str, list[tuple[int, list[str] | None]]] = {
        "westeurope": [(3, ZONES), (4, ["2", "3"]), (2, None), (2, ["1"])],
        "northeurope": [(3, ZONES), (2, None)],
        "eastus": [(4, ["1", "2"])],
    }
    sets: dict[str, list[str]] = {}
    capacity: dict[str, int] = {}
    for region, specs in layout.items():
        for size, zones in specs:
            name = await make_set(fleet, images.latest, region, size, zones=zones, timing=STEADY)
            sets.setdefault(region, []).append(name)
            capacity[name] = size
    names = [name for region_sets in sets.values() for name in region_sets]
    _, handle = await roll_out(ts_env, ts_worker, fleet, images, names)
    rollout = await finished(ts_env, handle)

    assert rollout.state == RolloutState.COMPLETED
    assert {s.state for s in rollout.sets} == {RolloutSetState.COMPLETED}
    ops = {name: reimages(await fleet.operations(name)) for name in names}
    zone_of: dict[tuple[str, str], str | None] = {}
    for name in names:
        instances = (await fleet.show_scale_set(name)).instances
        assert sorted(op.instance_id for op in ops[name]) == sorted(i.instance_id for i in instances)
        assert len(ops[name]) == capacity[name], name  # every instance exactly once
        for instance in instances:
            zone_of[(name, instance.instance_id)] = instance.zone
    for region, region_sets in sets.items():
        windows = [(zone_of[(n, op.instance_id)], in_flight([op])) for n in region_sets for op in ops[n]]
        # Regional sets (zone None) too: in a wave of their own.
        assert_one_zone_in_flight(windows, f"{region}: ")
    # Zone 2 of westeurope: the set on all three zones and the set on two went together.
    wave_2 = zone_windows(ops, zone_of, sets["westeurope"])["2"]
    assert len(wave_2) == 2 and overlap(wave_2[0][1], wave_2[1][1])
    # Phases one after another; the geo-pair in different phases, never in flight together.
    phase_of = {region: number for number, phase in enumerate(rollout.phases) for region in phase}
    assert phase_of["westeurope"] != phase_of["northeurope"]
    window = {
        region: in_flight([op for n in region_sets for op in ops[n]]) for region, region_sets in sets.items()
    }
    assert not overlap(window["westeurope"], window["northeurope"])
    for earlier, later in itertools.permutations(sets, 2):
        if phase_of[earlier] < phase_of[later]:
            assert window[earlier][1] <= window[later][0], f"{later} began before {earlier} ended"
