"""Scenario 7 (`make bench ARGS=rollout`): a rollout of a new gallery image version across many
zonal scale sets that follow 'latest', in three regions (a geo-pair and one more), started as the
watcher starts one: a RolloutWorkflow with the sets' enrollments and the derived phases.

(a) Latency profile (reimage 2-4 s, boot 4-8 s, a probe a second): the wall time against the
    availability-first ideal from the emulator's own timestamps (measure.wave_ideal_seconds);
    the same rollout on fresh sets under the rule of one set after another in a region
    (max_sets_per_region 1), and the speed-up; ARM reads a minute against the subscription's
    budget, counted by the emulator every few seconds while the rollout runs.
(b) Scale, zero latency: 10,000 instances; wall, ARM calls per instance, the largest history of
    any workflow run involved (the rollout, each upgrade, each batch child: every run of the
    worker's task queue), the worker's peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

from bench import measure
from bench.lab import (
    HISTORY_WARNING,
    INSTANT,
    PROBE_EVERY_SECOND,
    REALISTIC,
    THROTTLING,
    Lab,
    arm_figures,
    with_worker,
)
from fleet.azure.read_pacing import DEFAULT_READS_PER_MINUTE, UNPACED
from fleet.emulator.admin import EmulatorAdmin
from fleet.emulator.arm import RESOURCE_GROUP, SUBSCRIPTION
from models.automatic import (
    MAX_SETS_PER_REGION,
    ROLLOUT_WORKFLOW,
    Enrollment,
    RolloutRequest,
    RolloutStatus,
    rollout_workflow_id,
)
from models.fleet import ScaleSetSpec, TimingSpec
from models.image import ImageReference
from models.policy import RollingUpgradePolicy, UpgradePolicy
from models.upgrade import UpgradeReport
from rules.enrolled import enrolled_instances
from rules.phases import plan_phases
from starter.upgrades import final_report, upgrade_handle

GALLERY = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute"
    "/galleries/bench/images"
)
FROM_VERSION, TO_VERSION = "1.0.0", "1.1.0"
REGIONS = ("westeurope", "northeurope", "eastus")  # westeurope and northeurope: a geo-pair
ZONES = ["1", "2", "3"]
READ_BUDGET = THROTTLING["arm_subscription_reads"]
# (a)'s policy: batches of up to 40%, so a set of 30-60 instances upgrades each zone in one batch
# and the rollout under one set after another (16 sets end to end) takes about 10 minutes; with
# the default 20% every zone takes two batches and that rollout about twice as long.
LATENCY_POLICY = RollingUpgradePolicy(max_batch_instance_percent=40, max_unhealthy_instance_percent=40)
SAMPLE_EVERY = 5.0  # seconds between counts of the ARM reads while a rollout runs
# (b) measures the orchestration at scale, not Azure's read budget: its worker's reads are not
# paced (fleet/azure/read_pacing.py). At the default pace of 1,200 a minute, 10,000 instances'
# reads alone take about half an hour: the figures say how long.


def sizes(sets: int, low: int, high: int) -> list[int]:
    """Deterministic instance counts between `low` and `high`, spread over the range."""
    span = high - low + 1
    return [low + (i * 7) % span for i in range(sets)]


@dataclass
class Fleet:
    """Scale sets following one gallery image's 'latest', the version they are rolled to
    published (everywhere) after they were created."""

    image: ImageReference  # version 'latest'
    regions: dict[str, str]  # scale set -> region
    capacity: dict[str, int]

    @property
    def instances(self) -> int:
        return sum(self.capacity.values())


async def build_fleet(lab: Lab, label: str, capacities: list[int], timing: TimingSpec) -> Fleet:
    """Zonal Uniform sets of `capacities` (zones 1, 2, 3, one update domain), dealt round the
    regions, on an image of their own (so another run's sets never follow it)."""
    image = ImageReference(id=f"{GALLERY}/{label}-{uuid.uuid4().hex[:6]}")
    await lab.fleet.publish_image(image.model_copy(update={"version": FROM_VERSION}))
    regions, capacity = {}, {}
    for i, size in enumerate(capacities):
        region = REGIONS[i % len(REGIONS)]
        name = f"{label}-{region}-{i:02d}"
        await lab.fleet.create_scale_set(
            ScaleSetSpec(
                name=name,
                location=region,
                capacity=size,
                zones=ZONES,
                update_domain_count=1,
                image_reference=image,
                timing=timing,
                seed=i,
            )
        )
        regions[name], capacity[name] = region, size
    await lab.fleet.publish_image(image.model_copy(update={"version": TO_VERSION}))
    return Fleet(image, regions, capacity)


def rollout_request(
    fleet: Fleet, rolling: RollingUpgradePolicy, max_sets_per_region: int = MAX_SETS_PER_REGION
) -> RolloutRequest:
    """What the watcher starts for these sets once TO_VERSION is 'latest' (with its default
    settings but `max_sets_per_region`): an enrollment per set (its rolling upgrade policy, a
    probe a second), staged phases by enrolled instances."""
    policy = UpgradePolicy.model_validate(
        {
            "automaticOSUpgradePolicy": {"enableAutomaticOSUpgrade": True, "useRollingUpgradePolicy": True},
            "rollingUpgradePolicy": rolling.to_json(),
            "applicationHealth": PROBE_EVERY_SECOND.to_json(),
        }
    )
    enrollments = [
        Enrollment(
            scale_set=name,
            policy=policy,
            enrolled_by="bench",
            location=region,
            instance_count=fleet.capacity[name],
            image_reference=fleet.image,
        )
        for name, region in fleet.regions.items()
    ]
    return RolloutRequest(
        source=fleet.image,
        version=TO_VERSION,
        enrollments=enrollments,
        phases=plan_phases(enrolled_instances(enrollments)),
        max_sets_per_region=max_sets_per_region,
    )


@dataclass
class ReadCounter:
    """The ARM reads the emulator counted about some scale sets, every SAMPLE_EVERY seconds
    while in use (and once at each end): (seconds since the start, reads so far)."""

    fleet: EmulatorAdmin
    scale_sets: list[str]
    samples: list[tuple[float, int]] = field(default_factory=list)
    _started: float = 0.0
    _task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        calls = await asyncio.gather(*(self.fleet.calls(name) for name in self.scale_sets))
        self.samples.append((time.monotonic() - self._started, sum(c.reads for c in calls)))

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            await self._sample()

    async def __aenter__(self) -> ReadCounter:
        self._started = time.monotonic()
        await self._sample()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._sample()

    def most_in_a_minute(self) -> int:
        return measure.most_in_a_minute(self.samples)


@dataclass
class Rollout:
    fleet: Fleet
    wall: float
    status: RolloutStatus
    reports: dict[str, UpgradeReport]
    most_reads_in_a_minute: int
    task_queue: str
    worker_peak_rss_mb: float


async def roll(
    lab: Lab, fleet: Fleet, request: RolloutRequest, worker_env: dict[str, str] | None = None
) -> Rollout:
    """Start the rollout on a worker of its own, wait for its end and each set's upgrade report."""
    workers = await with_worker(lab, env=worker_env)
    try:
        async with ReadCounter(lab.fleet, list(fleet.regions)) as reads:
            started = time.monotonic()
            status = await lab.client.execute_workflow(
                ROLLOUT_WORKFLOW,
                request,
                id=rollout_workflow_id(fleet.image, TO_VERSION),
                task_queue=workers.task_queue,
                result_type=RolloutStatus,
            )
            wall = time.monotonic() - started
        reports = {name: await final_report(upgrade_handle(lab.client, name)) for name in fleet.regions}
        assert workers.process is not None  # with_worker started it
        rss = measure.peak_rss_mb(workers.process.pid)
    finally:
        workers.stop()
    return Rollout(fleet, wall, status, reports, reads.most_in_a_minute(), workers.task_queue, rss)


async def waves(lab: Lab, run: Rollout) -> dict[str, Any]:
    """The ideal from the emulator's timestamps, and whether zone waves ever overlapped."""
    spans: list[measure.SetSpans] = []
    windows: dict[str, list[tuple[str | None, datetime, datetime]]] = {}
    for item in run.status.sets:
        report = run.reports[item.scale_set]
        operations = await lab.fleet.operations(item.scale_set)
        spans.append(measure.SetSpans(item.phase, item.region, measure.zone_spans(report, operations)))
        ops = measure.reimages(operations)
        for instance in report.instances:
            if (op := ops.get(instance.instance_id)) is not None:
                ready = op.ready_time or op.end_time or op.start_time
                windows.setdefault(item.region, []).append((instance.zone, op.start_time, ready))
    ideal = measure.wave_ideal_seconds(spans)
    return {
        "ideal_s": round(ideal, 3),
        "wall_over_ideal": round(run.wall / ideal, 4),
        "most_zones_in_flight_in_a_region": max(measure.most_zones_in_flight(w) for w in windows.values()),
    }


async def arm_of(lab: Lab, run: Rollout) -> dict[str, Any]:
    return await arm_figures(lab, list(run.fleet.regions), run.fleet.instances, run.wall)


async def reads_of(lab: Lab, run: Rollout) -> dict[str, Any]:
    """The rollout's ARM calls; its reads a minute, on average and at most, next to the budget."""
    arm = await arm_of(lab, run)
    return {
        "arm_reads_per_minute": arm["arm_reads_per_minute"],
        "arm_reads_most_in_a_minute": run.most_reads_in_a_minute,
        "arm_read_budget_per_minute": READ_BUDGET,
        "arm_reads_per_instance": arm["arm_reads_per_instance"],
        "arm_actions_per_instance": arm["arm_actions_per_instance"],
    }


def outline(run: Rollout) -> dict[str, Any]:
    return {
        "state": run.status.state.value,
        "phases": run.status.phases,
        "scale_sets": len(run.fleet.regions),
        "instances": run.fleet.instances,
        "batches": sum(r.batches for r in run.reports.values()),
    }


async def latency(
    lab: Lab,
    sets: int = 24,
    low: int = 30,
    high: int = 60,
    rolling: RollingUpgradePolicy | None = None,
) -> dict[str, Any]:
    """Scenario 7 (a): the rollout at the default concurrency, then under one set after another."""
    rolling = rolling or LATENCY_POLICY
    capacities = sizes(sets, low, high)
    fleet = await build_fleet(lab, "waves", capacities, REALISTIC)
    run = await roll(lab, fleet, rollout_request(fleet, rolling))
    figures: dict[str, Any] = {
        **outline(run),
        "instances_each": f"{min(capacities)}-{max(capacities)}",
        "policy": rolling.to_json(),
        "wall_s": round(run.wall, 3),
        **(await waves(lab, run)),
        **(await reads_of(lab, run)),
    }
    figures["reads_unpaced"] = await unpaced(lab, capacities, rolling)
    old_fleet = await build_fleet(lab, "one-by-one", capacities, REALISTIC)
    old = await roll(lab, old_fleet, rollout_request(old_fleet, rolling, max_sets_per_region=1))
    figures["one_set_after_another"] = {
        "state": old.status.state.value,
        "wall_s": round(old.wall, 3),
        **(await reads_of(lab, old)),
    }
    figures["speed_up"] = round(old.wall / run.wall, 2)
    return figures


async def unpaced(lab: Lab, capacities: list[int], rolling: RollingUpgradePolicy) -> dict[str, Any]:
    """The same rollout on fresh sets with the worker's reads not paced: what the zone waves
    cost on top of the fleet's latency alone, without the read budget."""
    fleet = await build_fleet(lab, "unpaced", capacities, REALISTIC)
    run = await roll(lab, fleet, rollout_request(fleet, rolling), worker_env=UNPACED)
    return {"wall_s": round(run.wall, 3), **(await waves(lab, run)), **(await reads_of(lab, run))}


async def scale(lab: Lab, sets: int = 20, size: int = 500) -> dict[str, Any]:
    """Scenario 7 (b): zero fleet latency, every workflow run's history."""
    fleet = await build_fleet(lab, "scale", [size] * sets, INSTANT)
    run = await roll(lab, fleet, rollout_request(fleet, RollingUpgradePolicy()), worker_env=UNPACED)
    histories = await measure.run_histories(lab.client, f'TaskQueue="{run.task_queue}"')
    largest = max(histories, key=lambda k: histories[k])
    arm = await arm_of(lab, run)
    return {
        **outline(run),
        "wall_s": round(run.wall, 3),
        "ms_per_instance": round(1000 * run.wall / fleet.instances, 2),
        "arm_reads_per_instance": arm["arm_reads_per_instance"],
        "arm_actions_per_instance": arm["arm_actions_per_instance"],
        "arm_reads_per_minute_unpaced": arm["arm_reads_per_minute"],
        "minutes_of_reads_at_the_default_pace": round(arm["arm_reads"] / DEFAULT_READS_PER_MINUTE, 1),
        "workflow_runs": len(histories),
        "rollout_history_events": max(v for k, v in histories.items() if k.startswith("rollout/")),
        "largest_history_events": histories[largest],
        "largest_history_run": largest,
        "warning_at": HISTORY_WARNING,
        "worker_peak_rss_mb": round(run.worker_peak_rss_mb, 1),
    }
