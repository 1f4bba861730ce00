"""`make bench`: six scenarios (a seventh on request) on a dev server with a database file,
printed as a table and written as JSON under bench/results/.

The workers reach the fleet as the product does: through AzureFleet (azure-mgmt-compute) to the
emulator's Azure Resource Manager API over HTTPS. The emulator's admin API sets up scale sets and
reads back the operations log and the ARM calls it received per scale set (reads and actions,
from every process: the workers' and the floors').

1. Orchestration overhead: 100 and 1,000 instances with zero reimage and boot latency, next to
   floor (a), a bare workflow running as many no-op activities, and floor (b), a plain asyncio
   loop making the same ARM calls through the same client.
2. (The floors are part of 1, measured in the same run.)
3. Critical path: 300 instances, reimage 2-4 s and boot 4-8 s, a probe every second, the
   default policy; wall time against the ideal from the emulator's own timestamps, and how long
   the workflow takes to see an instance healthy.
4. Concurrency: 20 scale sets of 50 upgraded at once.
5. History size: the largest batch child of a 1,000-instance upgrade in one batch.
6. ARM reads: the same 100-instance set at maxBatchInstancePercent 10 and 50 (at once, one
   worker): reads per instance should not depend on the batch size. With the reads per minute
   of scenarios 3 and 4, set against Azure's documented throttling limits (THROTTLING in bench/lab.py).
7. Rollouts (`make bench ARGS=rollout`, not in the default run: about 20 minutes): bench/rollout.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import measure, rollout
from bench.floors import NOOP_WORKFLOW, http_floor
from bench.lab import (
    HISTORY_LIMIT,
    HISTORY_WARNING,
    INSTANT,
    PROBE_EVERY_SECOND,
    REALISTIC,
    THROTTLING,
    V1,
    V2,
    Lab,
    arm_figures,
    started,
    with_worker,
)

# Scenarios 1-6 measure the orchestration itself: their workers read unpaced (the rollout
# scenario measures the read budget).
from fleet.azure.read_pacing import UNPACED
from models.fleet import FleetOperation, ScaleSetSpec, TimingSpec
from models.policy import RollingUpgradePolicy
from models.upgrade import UpgradeReport, UpgradeRequest, upgrade_workflow_id
from starter.upgrades import final_report, reported_properties, start_upgrade

RESULTS = Path(__file__).parent / "results"
READS_BATCH_PERCENTS = (10, 50)


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


async def overhead(lab: Lab, size: int) -> dict[str, Any]:
    """Scenario 1 with its floors."""
    workers = await with_worker(lab, env=UNPACED)
    try:
        run = await upgrade(lab, workers.task_queue, f"overhead-{size}-{uuid.uuid4().hex[:6]}", size, INSTANT)
        assert workers.process is not None  # with_worker started it
        rss = measure.peak_rss_mb(workers.process.pid)
    finally:
        workers.stop()
    stats = await measure.history_stats(lab.client, upgrade_workflow_id(run.scale_set))

    floor_workers = await with_worker(lab, module="bench.floors", env=UNPACED)
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
    sdk_calls = await http_floor(lab.emulator, floor_set, measure.batches_of(run.report), V2, interval=1.0)
    floor_b = time.monotonic() - started
    arm = await arm_figures(lab, [run.scale_set], size, run.wall)
    floor_arm = await lab.fleet.calls(floor_set)

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
        **arm,
        # The floor's calls, as the emulator saw them and as its AzureFleet counted them.
        "floor_b_arm_reads_per_instance": round(floor_arm.reads / size, 2),
        "floor_b_arm_actions_per_instance": round(floor_arm.actions / size, 2),
        "floor_b_sdk_calls": sdk_calls,
    }


async def critical_path_of(lab: Lab, run: Upgrade) -> dict[str, Any]:
    operations = await run.operations(lab)
    instances = sum(len(batch) for batch in measure.batches_of(run.report))
    ideal = measure.ideal_seconds(run.report, operations, interval=1.0)
    lags = measure.detection_lags(run.report, operations)
    return {
        "wall_s": round(run.wall, 3),
        "ideal_s": round(ideal, 3),
        "wall_over_ideal": round(run.wall / ideal, 4),
        "detection_lag_median_s": round(statistics.median(lags), 3),
        "detection_lag_p99_s": round(measure.percentile(lags, 0.99), 3),
        "batches": run.report.batches,
        **(await arm_figures(lab, [run.scale_set], instances, run.wall)),
    }


async def critical_path(lab: Lab) -> dict[str, Any]:
    """Scenario 3."""
    workers = await with_worker(lab, env=UNPACED)
    try:
        run = await upgrade(lab, workers.task_queue, f"critical-{uuid.uuid4().hex[:6]}", 300, REALISTIC)
    finally:
        workers.stop()
    return {"instances": 300, **(await critical_path_of(lab, run))}


async def concurrency(lab: Lab, sets: int = 20, size: int = 50) -> dict[str, Any]:
    """Scenario 4: many scale sets at once on one worker."""
    workers = await with_worker(lab, env=UNPACED)
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
    arm = await arm_figures(lab, [run.scale_set for run in runs], sets * size, total)
    return {
        "scale_sets": sets,
        "instances_each": size,
        "total_wall_s": round(total, 3),
        "wall_over_ideal_mean": round(statistics.mean(ratios), 4),
        "wall_over_ideal_max": round(max(ratios), 4),
        "detection_lag_p99_s": round(max(p["detection_lag_p99_s"] for p in paths), 3),
        "worker_peak_rss_mb": round(rss, 1),
        **arm,  # every set's calls: reads a minute are the subscription's
        "max_instance_list_pages_per_minute_one_set": max(p["instance_list_pages_per_minute"] for p in paths),
    }


async def history_size(lab: Lab) -> dict[str, Any]:
    """Scenario 5: 1,000 instances in one batch (100%, across zones, one update domain)."""
    workers = await with_worker(lab, env=UNPACED)
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


async def arm_reads(lab: Lab, size: int = 100) -> dict[str, Any]:
    """Scenario 6: the same set at two batch sizes, upgraded at once on one worker."""
    workers = await with_worker(lab, env=UNPACED)
    try:
        runs = await asyncio.gather(
            *(
                upgrade(
                    lab,
                    workers.task_queue,
                    f"reads-{percent}-{uuid.uuid4().hex[:6]}",
                    size,
                    REALISTIC,
                    RollingUpgradePolicy(
                        max_batch_instance_percent=percent,
                        max_unhealthy_instance_percent=max(READS_BATCH_PERCENTS),
                    ),
                    update_domains=1,
                )
                for percent in READS_BATCH_PERCENTS
            )
        )
    finally:
        workers.stop()
    figures: dict[str, Any] = {"instances": size}
    for percent, run in zip(READS_BATCH_PERCENTS, runs, strict=True):
        arm = await arm_figures(lab, [run.scale_set], size, run.wall)
        figures[f"batch_{percent}_percent"] = {
            "batches": run.report.batches,
            "wall_s": round(run.wall, 3),
            **{
                k: arm[k]
                for k in ("arm_reads_per_instance", "arm_actions_per_instance", "arm_reads_per_minute")
            },
            "arm_reads_per_instance_by_kind": arm["arm_reads_per_instance_by_kind"],
        }
    small, large = (figures[f"batch_{p}_percent"]["arm_reads_per_instance"] for p in READS_BATCH_PERCENTS)
    figures["reads_per_instance_large_over_small_batch"] = round(large / small, 3)
    return figures


def throttling(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Reads a minute measured next to Azure's documented limits (THROTTLING)."""
    s3, s4 = results.get("critical_path"), results.get("concurrency")
    rows = []

    def row(measure: str, per_minute: float, limit: str) -> None:
        allowed = THROTTLING[limit]
        rows.append(
            {
                "measure": measure,
                "per_minute": per_minute,
                "limit": limit,
                "limit_per_minute": allowed,
                "share": round(per_minute / allowed, 3),
            }
        )

    if s7 := results.get("rollout_latency"):
        for what, figures in (
            (f"rollout of {s7['scale_sets']} sets (scenario 7a)", s7),
            ("the same rollout, one set after another", s7["one_set_after_another"]),
        ):
            row(
                f"{what}: ARM reads, most in a minute",
                figures["arm_reads_most_in_a_minute"],
                "arm_subscription_reads",
            )
    if s3:
        row("one set (scenario 3): ARM reads", s3["arm_reads_per_minute"], "arm_subscription_reads")
        row(
            "one set (scenario 3): instance list pages",
            s3["instance_list_pages_per_minute"],
            "compute_high_cost_get_vmss_per_scale_set",
        )
    if s4:
        row("20 sets at once (scenario 4): ARM reads", s4["arm_reads_per_minute"], "arm_subscription_reads")
        row(
            "20 sets at once (scenario 4): instance list pages",
            s4["instance_list_pages_per_minute"],
            "compute_high_cost_get_vmss_subscription",
        )
        kinds = s4["arm_reads_per_instance_by_kind"]
        instances = s4["scale_sets"] * s4["instances_each"]
        minutes = s4["total_wall_s"] / 60
        row(
            "20 sets at once (scenario 4): instance gets",
            round(kinds.get("instance_gets", 0) * instances / minutes, 1),
            "compute_get_vmss_vms_subscription",
        )
        row(
            "20 sets at once (scenario 4): operation polls",
            round(kinds.get("operation_polls", 0) * instances / minutes, 1),
            "compute_get_operation_subscription",
        )
    return rows


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    s1, s3, s4, s5, s6 = (
        results.get(k) for k in ("overhead_1000", "critical_path", "concurrency", "history_size", "arm_reads")
    )
    rows = []
    if s1:
        rows.append(
            {
                "target": "1,000 instances at zero latency within 1.5x of floor (a) per instance",
                "value": s1["ratio_to_floor_a"],
                "limit": 1.5,
            }
        )
    if s3:
        rows.append(
            {"target": "critical path wall / ideal <= 1.03", "value": s3["wall_over_ideal"], "limit": 1.03}
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
                "target": "twenty sets at once within 5% of one set (wall / ideal)",
                "value": round(s4["wall_over_ideal_mean"] / s3["wall_over_ideal"], 4),
                "limit": 1.05,
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
    if s6:
        small, large = READS_BATCH_PERCENTS
        rows.append(
            {
                "target": f"ARM reads per instance independent of batch size ({large}% / {small}%)",
                "value": s6["reads_per_instance_large_over_small_batch"],
                "limit": 1.05,
            }
        )
    rows += rollout_targets(results)
    for row in rows:
        row["met"] = row["value"] >= row["limit"] if row.get("at_least") else row["value"] <= row["limit"]
    return rows


def rollout_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    if s7a := results.get("rollout_latency"):
        rows += [
            {
                "target": "rollout wall / availability-first ideal <= 1.10",
                "value": s7a["wall_over_ideal"],
                "limit": 1.10,
            },
            {
                "target": "rollout at least 5x faster than one set after another",
                "value": s7a["speed_up"],
                "limit": 5.0,
                "at_least": True,
            },
            {
                "target": "rollout ARM reads in any minute / the subscription's 1,500",
                "value": round(s7a["arm_reads_most_in_a_minute"] / s7a["arm_read_budget_per_minute"], 3),
                "limit": 1.0,
            },
        ]
    if s7b := results.get("rollout_scale"):
        rows.append(
            {
                "target": f"rollout of {s7b['instances']:,} instances: every run below the event warning",
                "value": s7b["largest_history_events"],
                "limit": HISTORY_WARNING,
            }
        )
    return rows


def show(console: Console, results: dict[str, Any]) -> None:
    for name, figures in results.items():
        if not isinstance(figures, dict):
            continue
        table = Table(title=name.replace("_", " "), show_header=False)
        for key, value in figures.items():
            if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
                for sub, inner in value.items():
                    table.add_row(f"{key}.{sub}", str(inner))
            else:
                table.add_row(key, str(value))
        console.print(table)
    if results.get("throttling"):
        table = Table(title="ARM reads a minute against Azure's documented limits (bench/lab.py THROTTLING)")
        for column in ("measure", "per minute", "documented limit", "per minute", "share"):
            table.add_column(column)
        for row in results["throttling"]:
            table.add_row(
                row["measure"],
                str(row["per_minute"]),
                row["limit"],
                f"{row['limit_per_minute']:,}",
                f"{row['share']:.0%}",
            )
        console.print(table)
    table = Table(title="targets")
    for column in ("target", "value", "limit", "met"):
        table.add_column(column)
    for row in results["targets"]:
        limit = f"at least {row['limit']}" if row.get("at_least") else str(row["limit"])
        table.add_row(row["target"], str(row["value"]), limit, "yes" if row["met"] else "[red]NO[/]")
    console.print(table)


SCENARIOS = ("overhead", "critical", "concurrency", "history", "reads", "rollout")
DEFAULT = SCENARIOS[:-1]  # the rollout scenario takes about 20 minutes: on request


async def run(chosen: list[str], console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with started(Path(".bench")) as lab:
        await lab.fleet.publish_image(V2)
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
        if "reads" in chosen:
            small, large = READS_BATCH_PERCENTS
            console.print(
                f"scenario 6: ARM reads, 100 instances at {small}% and {large}% batches at once ..."
            )
            results["arm_reads"] = await arm_reads(lab)
        if "rollout" in chosen:
            console.print(
                "scenario 7a: rollout, 24 zonal sets of 30-60 in 3 regions, then one set after another ..."
            )
            results["rollout_latency"] = await rollout.latency(lab)
            console.print("scenario 7b: rollout, 20 sets x 500 instances, zero latency ...")
            results["rollout_scale"] = await rollout.scale(lab)
    results["throttling"] = throttling(results)
    results["targets"] = targets(results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Measure what orchestration costs on top of the fleet."
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"any of {', '.join(SCENARIOS)}; all but rollout by default",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    console = Console()
    results = asyncio.run(run(args.scenarios or list(DEFAULT), console))
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
