"""Figures from what a run left behind: histories, the emulator's operations log, /proc."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from models.fleet import FleetOperation, OperationKind
from models.upgrade import UpgradeReport


@dataclass
class HistoryStats:
    parent_events: int
    child_events: list[int]
    activities: int
    parent_bytes: int
    largest_child_bytes: int

    @property
    def total_events(self) -> int:
        return self.parent_events + sum(self.child_events)


async def history_stats(client: Client, workflow_id: str) -> HistoryStats:
    """Events of the upgrade and of each batch child, and how many activities they ran."""
    parent = await client.get_workflow_handle(workflow_id).fetch_history()
    child_events: list[int] = []
    largest_child_bytes = 0
    activities = sum(1 for e in parent.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    for event in parent.events:
        if event.event_type == EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
            execution = event.child_workflow_execution_started_event_attributes.workflow_execution
            child = await client.get_workflow_handle(
                execution.workflow_id, run_id=execution.run_id
            ).fetch_history()
            child_events.append(len(child.events))
            largest_child_bytes = max(largest_child_bytes, sum(e.ByteSize() for e in child.events))
            activities += sum(
                1 for e in child.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            )
    parent_bytes = sum(e.ByteSize() for e in parent.events)
    return HistoryStats(len(parent.events), child_events, activities, parent_bytes, largest_child_bytes)


def peak_rss_mb(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, math.ceil(share * len(ordered)) - 1)
    return ordered[rank]


def batches_of(report: UpgradeReport) -> list[list[str]]:
    by_batch: dict[int, list[str]] = {}
    for instance in report.instances:
        if instance.batch:
            by_batch.setdefault(instance.batch, []).append(instance.instance_id)
    return [by_batch[number] for number in sorted(by_batch)]


def reimages(operations: list[FleetOperation]) -> dict[str, FleetOperation]:
    return {op.instance_id: op for op in operations if op.kind == OperationKind.REIMAGE}


def ideal_seconds(report: UpgradeReport, operations: list[FleetOperation], interval: float) -> float:
    """The sum over batches of the slowest instance's reimage plus the wait until the first probe
    (every `interval` from the reimage's end) that could find it healthy; plus the pauses."""
    ops = reimages(operations)
    total = 0.0
    for batch in batches_of(report):
        slowest = 0.0
        for instance_id in batch:
            op = ops[instance_id]
            if op.end_time is None or op.ready_time is None:
                raise ValueError(f"the reimage of instance {instance_id} has not finished")
            reimage = (op.end_time - op.start_time).total_seconds()
            boot = (op.ready_time - op.end_time).total_seconds()
            slowest = max(slowest, reimage + math.ceil(boot / interval - 1e-9) * interval)
        total += slowest
    pauses = max(0, len(batches_of(report)) - 1)
    pause = report.request.policy.pause_time_between_batches.total_seconds() if report.request else 0.0
    return total + pauses * pause


def detection_lags(report: UpgradeReport, operations: list[FleetOperation]) -> list[float]:
    """Seconds from an instance becoming healthy in the emulator to the workflow knowing it."""
    ops = reimages(operations)
    lags = []
    for instance in report.instances:
        op = ops.get(instance.instance_id)
        if op and op.ready_time and instance.end_time and instance.state.value == "Succeeded":
            lags.append((instance.end_time - op.ready_time).total_seconds())
    return lags


def seconds_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def zone_spans(report: UpgradeReport, operations: list[FleetOperation]) -> dict[str | None, float]:
    """Per availability zone (None: a regional set), the seconds the set's batches kept it busy
    there: the sum over its batches of the batch's first reimage start to its last instance
    ready, from the emulator's timestamps."""
    ops = reimages(operations)
    windows: dict[tuple[int, str | None], tuple[datetime, datetime]] = {}
    for instance in report.instances:
        op = ops.get(instance.instance_id)
        if instance.batch is None or op is None:
            continue
        if op.ready_time is None:
            raise ValueError(f"instance {instance.instance_id} of batch {instance.batch} never became ready")
        key = (instance.batch, instance.zone)
        start, end = windows.get(key, (op.start_time, op.ready_time))
        windows[key] = (min(start, op.start_time), max(end, op.ready_time))
    spans: dict[str | None, float] = defaultdict(float)
    for (_, zone), (start, end) in windows.items():
        spans[zone] += seconds_between(start, end)
    return dict(spans)


@dataclass(frozen=True)
class SetSpans:
    """One scale set of a rollout: where it went and how long its batches took per zone."""

    phase: int
    region: str
    zones: dict[str | None, float]


def wave_ideal_seconds(sets: Iterable[SetSpans]) -> float:
    """The availability-first ideal of a rollout: phases one after another; in a region, zone
    waves one after another, each as long as its slowest set's batches in that zone; a phase as
    long as its slowest region."""
    waves: dict[tuple[int, str], dict[str | None, float]] = defaultdict(dict)
    for s in sets:
        wave = waves[(s.phase, s.region)]
        for zone, seconds in s.zones.items():
            wave[zone] = max(wave.get(zone, 0.0), seconds)
    phases: dict[int, float] = defaultdict(float)
    for (phase, _), zones in waves.items():
        phases[phase] = max(phases[phase], sum(zones.values()))
    return sum(phases.values())


def most_zones_in_flight(windows: Iterable[tuple[str | None, datetime, datetime]]) -> int:
    """The most distinct zones with an instance in flight at one instant (the windows of one
    region: reimage start to ready); 1 when zone waves never overlap."""
    events = sorted(
        [(start, 1, zone) for zone, start, _ in windows] + [(end, -1, zone) for zone, _, end in windows],
        key=lambda e: (e[0], e[1]),  # an instance ready at the instant another starts: not together
    )
    in_flight: dict[str | None, int] = defaultdict(int)
    most = 0
    for _, step, zone in events:
        in_flight[zone] += step
        most = max(most, sum(1 for count in in_flight.values() if count > 0))
    return most


def most_in_a_minute(samples: list[tuple[float, int]]) -> int:
    """From (seconds, running count) samples, the largest increase within any 60 s (the whole
    run's count when it was shorter)."""
    times = [t for t, _ in samples]
    most = 0
    for j, (t, count) in enumerate(samples):
        i = bisect.bisect_left(times, t - 60, 0, j + 1)
        most = max(most, count - samples[i][1])
    return most


async def run_histories(client: Client, query: str) -> dict[str, int]:
    """Events of every workflow run the visibility `query` lists (`TaskQueue="..."`: all of a
    worker's), by `workflow id@run id`."""
    events = {}
    async for execution in client.list_workflows(query):
        history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
        events[f"{execution.id}@{execution.run_id}"] = len(history.events)
    return events
