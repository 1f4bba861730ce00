"""What every scenario of `make bench` runs against and measures with: the lab (dev server,
emulator, worker processes), the fleet's timings, Azure's documented read limits, and the ARM
calls the emulator counted per scale set."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client

from fleet.emulator.admin import ArmCalls, EmulatorAdmin
from models.fleet import TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings
from starter import processes
from worker.connection import connect

V1 = ImageReference.parse("Contoso:bench-os:2024:2024.11.01")
V2 = ImageReference.parse("Contoso:bench-os:2024:2024.12.01")
INSTANT = TimingSpec(reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0, 0])
REALISTIC = TimingSpec(reimage_seconds=[2, 4], restore_seconds=[2, 4], boot_seconds=[4, 8])
PROBE_EVERY_SECOND = ApplicationHealthSettings(interval_in_seconds=1)
HISTORY_WARNING, HISTORY_LIMIT = 10_240, 51_200

# Azure's documented read throttling, per minute (a token bucket: the refill rate per minute, a
# burst of up to the bucket's capacity on top):
# - Azure Resource Manager, per subscription, security principal and region: reads, a bucket of
#   250 refilled at 25 a second, i.e. 1,500 a minute ("Understand how Azure Resource Manager
#   throttles requests", learn.microsoft.com/azure/azure-resource-manager/management/
#   request-limits-and-throttling, the token-bucket limits subscriptions moved to from 2024; the
#   older limit was 12,000 reads an hour).
# - The Compute resource provider, per region ("Compute throttling limits", learn.microsoft.com/
#   azure/virtual-machines/compute-throttling-limits, 2024-05-27): "Get VMSS VMs" (Get, Get
#   Instance View of one scale set VM) 2,000 a minute per subscription (bucket 6,000) and 12 per
#   VM (bucket 36); "High Cost Get VMSS" (Get Instance View, List of scale sets) 360 a minute per
#   subscription (bucket 1,080) and 10 per scale set (bucket 30); "Get Operation" (async
#   operation status) 5,000 a minute per subscription (bucket 15,000). The list of a scale set's
#   VMs ($expand=instanceView) is in no published policy; the troubleshooting guide's 429 names
#   the group "HighCostGet" (x-ms-ratelimit-remaining-resource: Microsoft.Compute/HighCostGet;0),
#   so its pages are set against the stricter High Cost Get VMSS limits.
THROTTLING = {
    "arm_subscription_reads": 1_500,
    "compute_get_vmss_vms_subscription": 2_000,
    "compute_high_cost_get_vmss_subscription": 360,
    "compute_high_cost_get_vmss_per_scale_set": 10,
    "compute_get_operation_subscription": 5_000,
}


@dataclass
class Lab:
    client: Client
    address: str  # Temporal's
    emulator: processes.EmulatorAddress  # ARM and the admin API, over HTTPS
    fleet: EmulatorAdmin
    logs: Path


@asynccontextmanager
async def started(workdir: Path) -> AsyncIterator[Lab]:
    """A dev server with a database file (as a real deployment persists, not the dev server's
    in-memory default) and the emulator, in a fresh `workdir`; stopped on the way out."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    port, ui_port, fleet_port = processes.free_port(), processes.free_port(), processes.free_port()
    server = processes.start_dev_server(port, ui_port, workdir / "temporal.db", workdir / "server.log")
    emulator_process = processes.start_emulator(fleet_port, workdir / "fleet.db", workdir / "fleet.log")
    emulator = processes.EmulatorAddress.of(fleet_port, workdir / "fleet.db")
    try:
        address = f"127.0.0.1:{port}"
        async with EmulatorAdmin(emulator.url, emulator.ca_file, timeout=30) as fleet:
            yield Lab(await connect(address), address, emulator, fleet, workdir)
    finally:
        processes.stop(emulator_process)
        processes.stop(server)


async def with_worker(
    lab: Lab, module: str = "worker", env: dict[str, str] | None = None
) -> processes.WorkerProcesses:
    """A worker process on a task queue of its own (`env` on top of its environment)."""
    workers = processes.WorkerProcesses(lab.address, lab.emulator, lab.logs, module=module)
    workers.env.update(env or {})
    await workers.start()
    return workers


# Reads by what they are, from the emulator's request shapes (fleet/emulator/app.py arm_shape).
READ_KINDS = {
    "GET virtualMachineScaleSets/*/virtualMachines": "instance_list_pages",
    "GET virtualMachines": "instance_list_pages",  # Flexible: the VMs of the set
    "GET virtualMachineScaleSets/*/virtualMachines/*": "instance_gets",
    "GET virtualMachines/*": "instance_gets",
    "GET locations/*/operations/*": "operation_polls",
    "GET virtualMachineScaleSets/*": "scale_set_gets",
}


def read_kinds(calls: list[ArmCalls]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for call in calls:
        for shape, count in call.requests.items():
            if shape.startswith(("GET ", "HEAD ")):
                kinds[READ_KINDS.get(shape, "other_reads")] += count
    return kinds


async def arm_figures(lab: Lab, scale_sets: list[str], instances: int, wall: float) -> dict[str, Any]:
    """ARM calls the emulator received about these scale sets: per upgraded instance, reads by
    kind, and reads a minute over `wall`."""
    calls = [await lab.fleet.calls(name) for name in scale_sets]
    reads, actions = sum(c.reads for c in calls), sum(c.actions for c in calls)
    kinds = read_kinds(calls)
    return {
        "arm_reads": reads,
        "arm_actions": actions,
        "arm_reads_per_instance": round(reads / instances, 2),
        "arm_actions_per_instance": round(actions / instances, 2),
        "arm_reads_per_instance_by_kind": {k: round(v / instances, 2) for k, v in sorted(kinds.items())},
        "arm_reads_per_minute": round(60 * reads / wall, 1),
        "instance_list_pages_per_minute": round(60 * kinds["instance_list_pages"] / wall, 1),
    }
