"""The demo's MaxSurge part: the same upgrade of a second scale set with
rollingUpgradePolicy.maxSurge, so capacity never drops. Each batch first creates its new
instances from the new image, waits for them to be healthy, then deletes the ones they replace;
a line per batch says what was created and deleted."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console

from fleet.emulator.admin import EmulatorAdmin
from models.fleet import ScaleSetSpec, TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy
from models.upgrade import InstanceState, UpgradeReport, UpgradeRequest
from starter.processes import EmulatorAddress
from starter.progress import watch
from starter.upgrades import EXIT_CODES, reported_properties, start_upgrade

if TYPE_CHECKING:
    from temporalio.client import Client

SURGE_SET = "web-surge"


def batch_lines(report: UpgradeReport) -> list[str]:
    """`batch 1: created 6, 7 (healthy), deleted 0, 1`, and what was kept or done in place."""
    lines = []
    for batch in sorted({i.batch for i in report.instances if i.batch is not None}):
        members = [i for i in report.instances if i.batch == batch]
        replaced = [i for i in members if i.replaces]
        parts = []
        if replaced:
            created = ", ".join(i.instance_id for i in replaced)
            parts.append(
                f"created {created} (healthy), deleted {', '.join(str(i.replaces) for i in replaced)}"
            )
        moved = [
            f"{i.instance_id} in zone {i.zone}"
            for i in replaced
            if "Azure placed it there" in (i.message or "")
        ]
        if moved:
            parts.append(f"{', '.join(moved)}: Azure placed it there (the zone had nothing left to replace)")
        kept = [i.instance_id for i in members if i.state == InstanceState.ROLLED_BACK]
        if kept:
            parts.append(f"new instance(s) for {', '.join(kept)} failed health: deleted, the old kept")
        in_place = [i.instance_id for i in members if i.state == InstanceState.SUCCEEDED and not i.replaces]
        if in_place:
            parts.append(f"{', '.join(in_place)} upgraded in place (no core quota for new instances)")
        lines.append(f"batch {batch}: " + "; ".join(parts))
    return lines


async def upgrade_with_surge(
    console: Console,
    emulator: EmulatorAddress,
    client: Client,
    task_queue: str,
    images: tuple[ImageReference, ImageReference],
) -> int:
    current, target = images
    async with EmulatorAdmin(emulator.url, emulator.ca_file) as fleet:
        await fleet.create_scale_set(
            ScaleSetSpec(
                name=SURGE_SET,
                capacity=6,
                zones=["1", "2", "3"],
                update_domain_count=1,
                image_reference=current,
                timing=TimingSpec(reimage_seconds=[1, 2], restore_seconds=[1, 2], boot_seconds=[1, 3]),
            )
        )
    console.print(
        f"\nMaxSurge: `upgradectl start --scale-set {SURGE_SET} --image {target} --max-surge "
        "--max-batch-instance-percent 34 --max-unhealthy-instance-percent 34`: each batch creates its "
        "new instances first and deletes the old ones once the new are healthy, so the set never has "
        "fewer than its 6 instances",
        soft_wrap=True,
    )
    request = UpgradeRequest(
        scale_set=SURGE_SET,
        target_image=target,
        policy=RollingUpgradePolicy(
            max_surge=True, max_batch_instance_percent=34, max_unhealthy_instance_percent=34
        ),
        health=ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout="PT20S"),
        started_by="demo",
    )
    await start_upgrade(client, request, task_queue)
    report = await watch(client, SURGE_SET, console)
    for line in batch_lines(report):
        console.print("  " + line, soft_wrap=True)
    return EXIT_CODES[reported_properties(report).running_status.code]
