"""`make bench`: five scenarios on a dev server with a database file, printed as a table and
written as JSON under bench/results/.

1. Orchestration overhead: 100 and 1,000 instances with zero reimage and boot latency, next to
   floor (a), a bare workflow running as many no-op activities, and floor (b), a plain asyncio
   loop making the same HTTP calls to the emulator.
2. (The floors are part of 1, measured in the same run.)
3. Critical path: 300 instances, reimage 2-4 s and boot 4-8 s, a probe every second, the
   default policy; wall time against the ideal from the emulator's own timestamps, and how long
   the workflow takes to see an instance healthy.
4. Concurrency: 20 scale sets of 50 upgraded at once.
5. History size: the largest batch child of a 1,000-instance upgrade in one batch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.client import Client

from bench import measure
from bench.floors import NOOP_WORKFLOW, http_floor
from fleet.client import EmulatorClient
from models.fleet import FleetOperation, ScaleSetSpec, TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy
from models.upgrade import UpgradeReport, UpgradeRequest, upgrade_workflow_id
from starter import processes
from starter.upgrades import final_report, reported_properties, start_upgrade
from worker.connection import connect

RESULTS = Path(__file__).parent / "results"
V1 = ImageReference.parse("Contoso:bench-os:2024:2024.11.01")
V2 = ImageReference.parse("Contoso:bench-os:2024:2024.12.01")
INSTANT = TimingSpec(reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0, 0])
REALISTIC = TimingSpec(reimage_seconds=[2, 4], restore_seconds=[2, 4], boot_seconds=[4, 8])
PROBE_EVERY_SECOND = ApplicationHealthSettings(interval_in_seconds=1)
HISTORY_WARNING, HISTORY_LIMIT = 10_240, 51_200


@dataclass
class Lab:
    client: Client
    address: str
    fleet_url: str
    fleet: EmulatorClient
    logs: Path


@dataclass
class Upgrade:
    scale_set: str
    wall: float
    report: UpgradeReport

    async def operations(self, lab: Lab) -> list[FleetOperation]:
        return await lab.fleet.operations(self.scale_set)


async def upgrade(
    lab: Lab,
    task_queue: str,
    name: str,
    capacity: int,
    timing: TimingSpec,
    policy: RollingUpgradePolicy | None = None,
    zones: list[str] | None = None,
    update_domains: int = 5,
) -> Upgrade:
    await lab.fleet.create_scale_set(
        ScaleSetSpec(
            name=name,
            capacity=capacity,
            zones=zones or [],
            update_domain_count=update_domains,
            image_reference=V1,
            timing=timing,
            seed=7,
        )
    )
    request = UpgradeRequest(
        scale_set=name,
        target_image=V2,
        policy=policy or RollingUpgradePolicy(),
        health=PROBE_EVERY_SECOND,
        started_by="bench",
    )
    started = time.monotonic()
    handle, _ = await start_upgrade(lab.client, request, task_queue, admission_timeout=300)
    report = await final_report(handle)
    return Upgrade(name, time.monotonic() - started, report)


async def with_worker(lab: Lab, module: str = "worker") -> processes.WorkerProcesses:
    workers = processes.WorkerProcesses(lab.address, lab.fleet_url, lab.logs, module=module)
    await workers.start()
    return workers


async def overhead(lab: Lab, size: int) -> dict[str, Any]:
    """Scenario 1 with its floors."""
    workers = await with_worker(lab)
    try:
        run = await upgrade(lab, workers.task_queue, f"overhead-{size}-{uuid.uuid4().hex[:6]}", size, INSTANT)
        assert workers.process is not None  # with_worker started it
        rss = measure.peak_rss_mb(workers.process.pid)
    finally:
        workers.stop()
    stats = await measure.history_stats(lab.client, upgrade_workflow_id(run.scale_set))

    floor_workers = await with_worker(lab, module="bench.floors")
    try:
        started = time.monotonic()
        await lab.client.execute_workflow(
            NOOP_WORKFLOW,
            stats.activities,
            id=f"bench-noop-{uuid.uuid4()}",
            task_queue=floor_workers.task_queue,
        )
        floor_a = time.monotonic() - started
    finally:
        floor_workers.stop()

    floor_set = f"floor-{size}-{uuid.uuid4().hex[:6]}"
    await lab.fleet.create_scale_set(
        ScaleSetSpec(name=floor_set, capacity=size, image_reference=V1, timing=INSTANT)
    )
    started = time.monotonic()
    await http_floor(lab.fleet_url, floor_set, measure.batches_of(run.report), V2, interval=1.0)
    floor_b = time.monotonic() - started

    return {
        "instances": size,
        "status": reported_properties(run.report).running_status.code.value,
        "batches": run.report.batches,
        "wall_s": round(run.wall, 3),
        "ms_per_instance": round(1000 * run.wall / size, 2),
        "activities": stats.activities,
        "activities_per_s": round(stats.activities / run.wall, 1),
        "history_events": stats.total_events,
        "history_events_per_instance": round(stats.total_events / size, 2),
        "parent_history_kb": round(stats.parent_bytes / 1024, 1),
        "worker_peak_rss_mb": round(rss, 1),
        "floor_a_bare_workflow_s": round(floor_a, 3),
        "floor_a_ms_per_instance": round(1000 * floor_a / size, 2),
        "floor_b_plain_asyncio_s": round(floor_b, 3),
        "floor_b_ms_per_instance": round(1000 * floor_b / size, 2),
        "ratio_to_floor_a": round(run.wall / floor_a, 2),
        "ratio_to_floor_b": round(run.wall / floor_b, 2),
    }


async def critical_path_of(lab: Lab, run: Upgrade) -> dict[str, Any]:
    operations = await run.operations(lab)
    ideal = measure.ideal_seconds(run.report, operations, interval=1.0)
    lags = measure.detection_lags(run.report, operations)
    return {
        "wall_s": round(run.wall, 3),
        "ideal_s": round(ideal, 3),
        "wall_over_ideal": round(run.wall / ideal, 4),
        "detection_lag_median_s": round(statistics.median(lags), 3),
        "detection_lag_p99_s": round(measure.percentile(lags, 0.99), 3),
        "batches": run.report.batches,
    }


async def critical_path(lab: Lab) -> dict[str, Any]:
    """Scenario 3."""
    workers = await with_worker(lab)
    try:
        run = await upgrade(lab, workers.task_queue, f"critical-{uuid.uuid4().hex[:6]}", 300, REALISTIC)
    finally:
        workers.stop()
    return {"instances": 300, **(await critical_path_of(lab, run))}


async def concurrency(lab: Lab, sets: int = 20, size: int = 50) -> dict[str, Any]:
    """Scenario 4: many scale sets at once on one worker."""
    workers = await with_worker(lab)
    try:
        started = time.monotonic()
        runs = await asyncio.gather(
            *(
                upgrade(lab, workers.task_queue, f"fleet-{i}-{uuid.uuid4().hex[:6]}", size, REALISTIC)
                for i in range(sets)
            )
        )
        total = time.monotonic() - started
        assert workers.process is not None  # with_worker started it
        rss = measure.peak_rss_mb(workers.process.pid)
    finally:
        workers.stop()
    paths = [await critical_path_of(lab, run) for run in runs]
    ratios = [p["wall_over_ideal"] for p in paths]
    return {
        "scale_sets": sets,
        "instances_each": size,
        "total_wall_s": round(total, 3),
        "wall_over_ideal_mean": round(statistics.mean(ratios), 4),
        "wall_over_ideal_max": round(max(ratios), 4),
        "detection_lag_p99_s": round(max(p["detection_lag_p99_s"] for p in paths), 3),
        "worker_peak_rss_mb": round(rss, 1),
    }


async def history_size(lab: Lab) -> dict[str, Any]:
    """Scenario 5: 1,000 instances in one batch (100%, across zones, one update domain)."""
    workers = await with_worker(lab)
    policy = RollingUpgradePolicy(
        max_batch_instance_percent=100, max_unhealthy_instance_percent=100, enable_cross_zone_upgrade=True
    )
    try:
        run = await upgrade(
            lab,
            workers.task_queue,
            f"history-{uuid.uuid4().hex[:6]}",
            1000,
            INSTANT,
            policy,
            zones=["1", "2", "3"],
            update_domains=1,
        )
    finally:
        workers.stop()
    stats = await measure.history_stats(lab.client, upgrade_workflow_id(run.scale_set))
    return {
        "instances": 1000,
        "batches": run.report.batches,
        "children": len(stats.child_events),
        "largest_child_events": max(stats.child_events),
        "parent_events": stats.parent_events,
        "largest_child_history_kb": round(stats.largest_child_bytes / 1024, 1),
        "warning_at": HISTORY_WARNING,
        "limit_at": HISTORY_LIMIT,
        "wall_s": round(run.wall, 3),
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    s1, s3, s4, s5 = (
        results.get(k) for k in ("overhead_1000", "critical_path", "concurrency", "history_size")
    )
    rows = []
    if s1:
        rows.append(
            {
                "target": "1,000 instances within 2x of floor (a) per instance",
                "value": s1["ratio_to_floor_a"],
                "limit": 2.0,
            }
        )
    if s3:
        rows.append(
            {"target": "critical path wall / ideal <= 1.05", "value": s3["wall_over_ideal"], "limit": 1.05}
        )
        rows.append(
            {
                "target": "detection lag p99 <= one probe interval (1 s)",
                "value": s3["detection_lag_p99_s"],
                "limit": 1.0,
            }
        )
    if s3 and s4:
        rows.append(
            {
                "target": "concurrency keeps the ratio within 10%",
                "value": round(s4["wall_over_ideal_mean"] / s3["wall_over_ideal"], 4),
                "limit": 1.10,
            }
        )
    if s5:
        rows.append(
            {
                "target": "largest batch child below the 10,240-event warning",
                "value": s5["largest_child_events"],
                "limit": HISTORY_WARNING,
            }
        )
    for row in rows:
        row["met"] = row["value"] <= row["limit"]
    return rows


def show(console: Console, results: dict[str, Any]) -> None:
    for name, figures in results.items():
        if name == "targets" or not isinstance(figures, dict):
            continue
        table = Table(title=name.replace("_", " "), show_header=False)
        for key, value in figures.items():
            table.add_row(key, str(value))
        console.print(table)
    table = Table(title="targets")
    for column in ("target", "value", "limit", "met"):
        table.add_column(column)
    for row in results["targets"]:
        table.add_row(
            row["target"], str(row["value"]), str(row["limit"]), "yes" if row["met"] else "[red]NO[/]"
        )
    console.print(table)


SCENARIOS = ("overhead", "critical", "concurrency", "history")


async def run(chosen: list[str], console: Console) -> dict[str, Any]:
    workdir = Path(".bench")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    port, ui_port, fleet_port = processes.free_port(), processes.free_port(), processes.free_port()
    # A database file, as a real deployment persists (not the dev server's in-memory default).
    server = processes.start_dev_server(port, ui_port, workdir / "temporal.db", workdir / "server.log")
    emulator = processes.start_emulator(fleet_port, workdir / "fleet.db", workdir / "fleet.log")
    results: dict[str, Any] = {}
    try:
        address, fleet_url = f"127.0.0.1:{port}", f"http://127.0.0.1:{fleet_port}"
        async with EmulatorClient(fleet_url, timeout=30) as fleet:
            lab = Lab(await connect(address), address, fleet_url, fleet, workdir)
            await fleet.publish_image(V2)
            if "overhead" in chosen:
                for size in (100, 1000):
                    console.print(f"scenario 1: orchestration overhead, {size} instances, with floors ...")
                    results[f"overhead_{size}"] = await overhead(lab, size)
            if "critical" in chosen:
                console.print("scenario 3: critical path, 300 instances ...")
                results["critical_path"] = await critical_path(lab)
            if "concurrency" in chosen:
                console.print("scenario 4: 20 scale sets x 50 instances at once ...")
                results["concurrency"] = await concurrency(lab)
            if "history" in chosen:
                console.print("scenario 5: history size, 1,000 instances in one batch ...")
                results["history_size"] = await history_size(lab)
    finally:
        processes.stop(emulator)
        processes.stop(server)
    results["targets"] = targets(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Measure what orchestration costs on top of the fleet."
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)}; all by default"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    console = Console()
    results = asyncio.run(run(args.scenarios or list(SCENARIOS), console))
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **results,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench-{document['when'].replace(':', '')}.json"
    path.write_text(json.dumps(document, indent=2))
    show(console, results)
    console.print(f"written to {path}")
