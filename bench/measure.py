"""Figures from what a run left behind: histories, the emulator's operations log, /proc."""

from __future__ import annotations

import math
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
