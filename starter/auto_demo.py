"""The demo's second part: automatic OS image upgrades. Publishing an image version rolls it out,
region by region, across every enrolled scale set that follows 'latest'.

`run_automatic_demo` expects what the first part started (a dev server, the fleet emulator and a
worker): it creates three scale sets on a gallery image at 'latest', in westeurope and northeurope
(a geo-pair: never in one phase, never in flight together) and eastus, and one pinned to a version
(enrolled, left alone, and `auto show` says so); enrolls them as `upgradectl auto enable` does;
sets the watcher's poll interval to a minute; publishes version 1.1.0 replicated to all three
regions and asks the watcher to look now; then shows the rollout live (phases, scale sets, their
states) until it ends, and prints where to see it in the Web UI and that the upgrades' history
says startedBy Platform.

`python -m starter.auto_demo [--keep]` runs it on its own, with servers of its own on free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from rich.console import Console
from rich.live import Live
from rich.text import Text
from temporalio.client import Client

from fleet.emulator.admin import EmulatorAdmin
from fleet.emulator.arm import RESOURCE_GROUP, SUBSCRIPTION
from models.automatic import (
    CHECK_NOW_SIGNAL,
    ENDED,
    PLATFORM,
    AutomaticSettings,
    EnrollRequest,
    RolloutState,
    RolloutStatus,
    RolloutSummary,
)
from models.change import version_key
from models.fleet import ScaleSetSpec, TimingSpec
from models.image import ImageReference
from models.policy import UpgradePolicy
from starter import automatic, processes
from starter.auto_view import render_rollout
from starter.history import upgrade_history
from starter.processes import EmulatorAddress
from worker.connection import connect

GALLERY_IMAGE = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute"
    "/galleries/contoso/images/shop-os"
)
LATEST = ImageReference(id=GALLERY_IMAGE)  # version 'latest'
REGIONS = ["westeurope", "northeurope", "eastus"]
# (name, region, instances): westeurope and northeurope are a geo-pair.
SCALE_SETS = [("shop-weu", "westeurope", 6), ("shop-neu", "northeurope", 6), ("shop-eus", "eastus", 4)]
PINNED = ("shop-pinned", "westeurope", 2)
TIMING = TimingSpec(reimage_seconds=[1, 2], restore_seconds=[1, 2], boot_seconds=[1, 2])
# What `upgradectl auto enable --use-rolling-upgrade-policy --max-batch-instance-percent 50
# --max-unhealthy-instance-percent 50 --health-interval 1 --health-wait-timeout PT20S` enrolls:
# batches of up to half a zone's instances, probes every second, so the demo is short.
POLICY = UpgradePolicy.model_validate(
    {
        "automaticOSUpgradePolicy": {"enableAutomaticOSUpgrade": True, "useRollingUpgradePolicy": True},
        "rollingUpgradePolicy": {"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50},
        "applicationHealth": {"intervalInSeconds": 1, "healthWaitTimeout": "PT20S"},
    }
)
SETTINGS = AutomaticSettings(
    poll_interval=timedelta(minutes=1), replication_poll_interval=timedelta(minutes=1)
)
ROLLOUT_WAIT = 150.0  # seconds for the watcher to notice the new version (it looks at least every minute)


def web_ui_url(workflow_id: str, run_id: str | None, ui_port: int) -> str:
    workflow = quote(workflow_id, safe="")
    return f"http://localhost:{ui_port}/namespaces/default/workflows/{workflow}/{run_id or ''}".rstrip("/")


async def demo_versions(fleet: EmulatorAdmin) -> tuple[str, str]:
    """1.0.0 and 1.1.0, or the next two minor versions when the emulator's state is kept from an
    earlier run (`make demo ARGS=--keep`, the same database)."""
    known = [
        v.image_reference.resolved_version
        for v in await fleet.images()
        if v.image_reference.definition == LATEST.definition
    ]
    if not known:
        return "1.0.0", "1.1.0"
    major, minor, *_ = (*version_key(max(known, key=version_key)), 0, 0)
    return f"{major}.{minor + 1}.0", f"{major}.{minor + 2}.0"


async def create_fleet(console: Console, emulator: EmulatorAddress) -> tuple[str, str]:
    """The scale sets, on the current version; returns it and the version to publish."""
    async with EmulatorAdmin(emulator.url, emulator.ca_file) as fleet:
        current, new = await demo_versions(fleet)
        await fleet.publish_image(LATEST.model_copy(update={"version": current}), REGIONS)
        for name, region, instances in SCALE_SETS:
            await fleet.create_scale_set(
                ScaleSetSpec(
                    name=name,
                    location=region,
                    capacity=instances,
                    zones=["1", "2", "3"],
                    update_domain_count=1,
                    image_reference=LATEST,
                    timing=TIMING,
                )
            )
        name, region, instances = PINNED
        await fleet.create_scale_set(
            ScaleSetSpec(
                name=name,
                location=region,
                capacity=instances,
                image_reference=LATEST.model_copy(update={"version": current}),
                timing=TIMING,
            )
        )
    sets = ", ".join(f"{name} ({region}, {instances})" for name, region, instances in SCALE_SETS)
    console.print(
        f"scale sets on gallery image contoso/shop-os at 'latest' ({current} now): {sets}; "
        f"{PINNED[0]} ({PINNED[1]}) pinned to {current}",
        soft_wrap=True,
    )
    return current, new


async def enroll_all(console: Console, client: Client, task_queue: str) -> None:
    for name, *_ in [*SCALE_SETS, PINNED]:
        enrollment = await automatic.enroll(
            client, task_queue, EnrollRequest(scale_set=name, policy=POLICY, by="demo")
        )
        line = Text(f"`upgradectl auto enable {name}`: enrolled ({enrollment.location})")
        if enrollment.note:
            line.append(f"; {enrollment.note}", "yellow")
        console.print(line, soft_wrap=True)
    settings = await automatic.change_settings(client, task_queue, SETTINGS)
    console.print(
        f"`upgradectl auto settings --poll-interval PT1M`: the watcher looks for new versions every "
        f"{int(settings.poll_interval.total_seconds() // 60)} minute(s)",
        soft_wrap=True,
    )


async def publish(
    console: Console, emulator: EmulatorAddress, client: Client, task_queue: str, version: str
) -> None:
    async with EmulatorAdmin(emulator.url, emulator.ca_file) as fleet:
        await fleet.publish_image(LATEST.model_copy(update={"version": version}), REGIONS)
    console.print(
        f"published shop-os {version}, replicated to {', '.join(REGIONS)} (`upgradectl fleet publish`)",
        soft_wrap=True,
    )
    # The watcher would notice within its poll interval; ask it to look now.
    await automatic.watcher(client, task_queue).signal(CHECK_NOW_SIGNAL)


async def rollout_started(client: Client, task_queue: str, version: str) -> RolloutSummary | None:
    deadline = time.monotonic() + ROLLOUT_WAIT
    while time.monotonic() < deadline:
        found = automatic.matching(await automatic.rollouts(client, task_queue), version, None)
        if found:
            return found[0]
        await asyncio.sleep(1.0)
    return None


async def follow(console: Console, client: Client, workflow_id: str) -> RolloutStatus:
    """The rollout, live, until it ends (`upgradectl rollout show` once a second)."""
    status = await automatic.rollout_status(client, workflow_id)
    with Live(render_rollout(status), console=console, refresh_per_second=4) as live:
        while status.state not in ENDED:
            await asyncio.sleep(1.0)
            status = await automatic.rollout_status(client, workflow_id)
            live.update(render_rollout(status))
    console.line()
    return status


async def run_automatic_demo(
    console: Console,
    emulator: EmulatorAddress,
    *,
    temporal_address: str,
    task_queue: str,
    ui_port: int,
) -> int:
    """Publish a version and watch it roll out; 0 when the rollout completed, 1 otherwise."""
    console.print(Text("automatic OS image upgrades", "bold"))
    _, new = await create_fleet(console, emulator)
    client = await connect(temporal_address)
    await enroll_all(console, client, task_queue)
    await publish(console, emulator, client, task_queue, new)
    summary = await rollout_started(client, task_queue, new)
    if summary is None:
        console.print(
            Text(f"no rollout of {new} started within {ROLLOUT_WAIT:.0f} s: see the worker's log", "red")
        )
        return 1
    description = await client.get_workflow_handle(summary.workflow_id).describe()
    url = web_ui_url(summary.workflow_id, description.run_id, ui_port)
    console.print(f"rollout {summary.workflow_id} started; in the Temporal Web UI:\n  {url}", soft_wrap=True)
    status = await follow(console, client, summary.workflow_id)
    console.print(
        f"the rollout in the Web UI (a summary per phase, links to each upgrade):\n  {url}", soft_wrap=True
    )
    name = SCALE_SETS[0][0]
    entries = await upgrade_history(client, name)
    started_by = entries[0].properties.started_by if entries else "?"
    console.print(
        f"`upgradectl history {name}`: the latest upgrade was started by {started_by}"
        + (" (Azure's word for an automatic upgrade)" if started_by == PLATFORM else ""),
        soft_wrap=True,
    )
    console.print(
        f"try `upgradectl rollout show {new}`, `upgradectl rollout list` and `upgradectl auto show` "
        f"(TEMPORAL_ADDRESS={temporal_address} UPGRADE_TASK_QUEUE={task_queue})",
        soft_wrap=True,
    )
    return 0 if status.state == RolloutState.COMPLETED else 1


def main(keep: bool = False) -> int:
    """The automatic part on its own: a dev server, the emulator and a worker of its own."""
    console = Console(stderr=True, highlight=False)
    workdir = Path(".demo") / "automatic"  # beside make demo's state (.demo/ is ignored)
    workdir.mkdir(parents=True, exist_ok=True)
    port, ui_port, fleet_port = processes.free_port(), processes.free_port(), processes.free_port()
    emulator = EmulatorAddress.of(fleet_port, workdir / "fleet.db")
    task_queue = "rolling-upgrades-automatic-demo"
    started: list[subprocess.Popen[bytes]] = []
    try:
        console.print("starting the Temporal dev server, the fleet emulator and a worker ...")
        started.append(processes.start_dev_server(port, ui_port, None, workdir / "temporal.log"))
        started.append(processes.start_emulator(fleet_port, workdir / "fleet.db", workdir / "fleet.log"))
        started.append(
            processes.start_worker(
                {
                    "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
                    **emulator.env(),
                    "UPGRADE_TASK_QUEUE": task_queue,
                    "PYTHONUNBUFFERED": "1",
                },
                workdir / "worker.log",
            )
        )
        code = asyncio.run(
            run_automatic_demo(
                console,
                emulator,
                temporal_address=f"127.0.0.1:{port}",
                task_queue=task_queue,
                ui_port=ui_port,
            )
        )
        if keep:
            console.print(f"everything is still up (logs in {workdir}/); Ctrl-C stops it all.")
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop everything below
                while all(p.poll() is None for p in started):
                    time.sleep(1)
        return code
    finally:
        for process in reversed(started):
            processes.stop(process)


if __name__ == "__main__":
    sys.exit(main(keep="--keep" in sys.argv[1:]))
