"""`upgradectl demo` / `make demo`: the whole product on one machine, with a real upgrade.

Starts a Temporal dev server (Web UI on :8233, history kept in .demo/temporal.db), the fleet
emulator (Azure Resource Manager over HTTPS with a local CA, state in .demo/fleet.db) and a worker
as separate processes; the worker reaches the emulator as it would reach Azure, through the Azure
SDK (the AZURE_* settings of EmulatorAddress.env()). Creates a 20-instance scale set over three
zones in which two instances fail health on the new image, through the emulator's admin API;
prints the plan (`upgradectl plan`); upgrades it with live progress; prints the final status and
the Web UI address; then moves its monitoring extension to a new minor version on the same engine
(`upgradectl start --extensions`), upgrades a second set with maxSurge (new instances first, the
old deleted once they are healthy), and shows an automatic rollout; stops what it started unless
--keep.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from rich.console import Console
from rich.text import Text

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings
from fleet.emulator.admin import EmulatorAdmin
from models.change import ExtensionRequest
from models.fleet import ExtensionSpec, FaultSpec, ScaleSetSpec, TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy
from models.upgrade import UpgradeRequest
from starter import processes
from starter.auto_demo import run_automatic_demo
from starter.plan import admitted, plan_text
from starter.processes import EmulatorAddress
from starter.progress import watch
from starter.surge_demo import upgrade_with_surge
from starter.upgrades import EXIT_CODES, reported_properties, start_upgrade
from worker.connection import connect

if TYPE_CHECKING:
    from temporalio.client import Client

WORKDIR = Path(".demo")
TEMPORAL_PORT, UI_PORT, FLEET_PORT = 7233, 8233, 8780
TASK_QUEUE = "rolling-upgrades-demo"
SCALE_SET = "web"
CURRENT = ImageReference.parse("Contoso:web-os:2024:2024.11.01")
TARGET = ImageReference.parse("Contoso:web-os:2024:2024.12.01")
# In the planner's order these land in the third and the last batch, so the upgrade rolls
# them back and carries on: 1 of 11, then 2 of 20 failed, within the policy's 20%.
FAILING = ["13", "17"]
# The scale set's monitoring extension: on 1.2.0, and its publisher releases 1.3.0.
EXTENSION = ExtensionSpec(
    name="monitor",
    publisher="Contoso.Monitoring",
    type_="AgentLinux",
    type_handler_version="1.2",
    auto_upgrade_minor_version=False,
)
EXTENSION_VERSIONS = ("1.2.0", "1.3.0")


def web_ui_url(workflow_id: str, run_id: str) -> str:
    workflow = quote(workflow_id, safe="")
    return f"http://localhost:{UI_PORT}/namespaces/default/workflows/{workflow}/{run_id}/history"


def request_for_demo() -> UpgradeRequest:
    return UpgradeRequest(
        scale_set=SCALE_SET,
        target_image=TARGET,
        policy=RollingUpgradePolicy(),
        # Probe every second and give up on an instance after 20 s, so the demo is short.
        health=ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout="PT20S"),
        started_by="demo",
    )


def print_addresses(console: Console, emulator: EmulatorAddress) -> None:
    """Where the emulator is and how to reach it by hand, while the demo runs or after --keep."""
    ca = emulator.ca_file.resolve()
    console.print(f"fleet emulator: ARM endpoint {emulator.url}, CA file {ca}", soft_wrap=True)
    console.print(
        f"to try `upgradectl fleet show {SCALE_SET}` and `upgradectl plan --scale-set {SCALE_SET} "
        f"--image {TARGET.with_version('latest')}` by hand (with --keep, or in another shell now):",
        soft_wrap=True,
    )
    exports = EmulatorAddress(emulator.url, ca).env()
    console.print(
        "  export " + " ".join(f"{name}={value}" for name, value in exports.items()), soft_wrap=True
    )


async def create_scenario(console: Console, emulator: EmulatorAddress, instances: int) -> None:
    async with EmulatorAdmin(emulator.url, emulator.ca_file) as fleet:
        await fleet.publish_extension_version(EXTENSION.publisher, EXTENSION.type_, EXTENSION_VERSIONS[0])
        await fleet.create_scale_set(
            ScaleSetSpec(
                name=SCALE_SET,
                capacity=instances,
                zones=["1", "2", "3"],
                update_domain_count=2,
                image_reference=CURRENT,
                timing=TimingSpec(
                    reimage_seconds=[1, 2],
                    restore_seconds=[1, 2],
                    boot_seconds=[1, 3],
                    extension_seconds=[1, 2],
                ),
                faults=FaultSpec(unhealthy_after_upgrade=FAILING),
                extensions=[EXTENSION],
            )
        )
        await fleet.publish_image(TARGET)
        await fleet.publish_extension_version(EXTENSION.publisher, EXTENSION.type_, EXTENSION_VERSIONS[1])
    console.print(
        f"scale set [bold]{SCALE_SET}[/]: {instances} instances over zones 1, 2, 3 on "
        f"{CURRENT.resolved_version}; instances {' and '.join(FAILING)} will fail health on "
        f"{TARGET.resolved_version}",
        markup=True,  # our own text: upgradectl's consoles print markup only when asked
        soft_wrap=True,
    )


async def show_plan(console: Console, emulator: EmulatorAddress, request: UpgradeRequest) -> None:
    """What `upgradectl plan` prints for this upgrade: read through Azure's API, nothing touched."""
    async with AzureFleet(AzureSettings.from_env(emulator.env())) as azure:
        view = await azure.get_scale_set(request.scale_set)
        image = await azure.resolve_image(request.target_image or TARGET, view.location)
    console.print(
        f"the plan (`upgradectl plan --scale-set {SCALE_SET} --image {TARGET}`; reads only):",
        soft_wrap=True,
    )
    for line in plan_text(admitted(request, view, image, datetime.now(UTC)), view).splitlines():
        console.print(Text("  " + line), soft_wrap=True)
    console.print(
        "  (the estimate is Azure's; the emulator reimages in a second or two, so this takes about a minute)",
        soft_wrap=True,
    )


async def upgrade(console: Console, emulator: EmulatorAddress, instances: int) -> int:
    await create_scenario(console, emulator, instances)
    request = request_for_demo()
    await show_plan(console, emulator, request)
    client = await connect(f"127.0.0.1:{TEMPORAL_PORT}")
    _, admission = await start_upgrade(client, request, TASK_QUEUE)
    url = web_ui_url(admission.workflow_id, admission.run_id)
    console.print(f"upgrade started; follow it in the Temporal Web UI:\n  {url}", soft_wrap=True)
    report = await watch(client, SCALE_SET, console)
    print(json.dumps(report.status.to_json(), indent=2))
    console.print(f"Web UI of this upgrade:\n  {url}", soft_wrap=True)
    code = EXIT_CODES[reported_properties(report).running_status.code]
    if code != 0:
        return code
    code = await upgrade_extension(console, client)
    if code != 0:
        return code
    code = await upgrade_with_surge(console, emulator, client, TASK_QUEUE, (CURRENT, TARGET))
    if code != 0:
        return code
    # The third part: the service, not a command. A published version rolls out by itself.
    return await run_automatic_demo(
        console,
        emulator,
        temporal_address=f"127.0.0.1:{TEMPORAL_PORT}",
        task_queue=TASK_QUEUE,
        ui_port=UI_PORT,
    )


async def upgrade_extension(console: Console, client: Client) -> int:
    """One engine, another kind of change: the monitoring extension to its publisher's new minor
    version, batch by batch with the same gates (`upgradectl start --extensions monitor`)."""
    console.print(
        f"\nthe same engine, another change: `upgradectl start --scale-set {SCALE_SET} --extensions "
        f"{EXTENSION.name}` moves the {EXTENSION.type_} extension {EXTENSION_VERSIONS[0]} → "
        f"{EXTENSION_VERSIONS[1]} (its publisher's new minor version), batch by batch",
        soft_wrap=True,
    )
    request = request_for_demo().model_copy(
        update={"target_image": None, "extensions": [ExtensionRequest(name=EXTENSION.name)]}
    )
    _, admission = await start_upgrade(client, request, TASK_QUEUE)
    report = await watch(client, SCALE_SET, console)
    console.print(
        f"extension upgrade {reported_properties(report).running_status.code.value}; Web UI:\n  "
        f"{web_ui_url(admission.workflow_id, admission.run_id)}",
        soft_wrap=True,
    )
    return EXIT_CODES[reported_properties(report).running_status.code]


def run_demo(*, keep: bool, instances: int, console: Console) -> int:
    busy = [p for p in (TEMPORAL_PORT, UI_PORT, FLEET_PORT) if processes.port_open(p)]
    if busy:
        console.print(
            f"[red]error:[/] port(s) {', '.join(map(str, busy))} already in use: is a demo "
            "(`make demo ARGS=--keep`) still running? Stop it first.",
            markup=True,
        )
        return 4
    WORKDIR.mkdir(exist_ok=True)
    emulator = EmulatorAddress.of(FLEET_PORT, WORKDIR / "fleet.db")
    started: list[subprocess.Popen[bytes]] = []
    try:
        console.print("starting the Temporal dev server, the fleet emulator and a worker ...")
        started.append(
            processes.start_dev_server(
                TEMPORAL_PORT, UI_PORT, WORKDIR / "temporal.db", WORKDIR / "temporal.log"
            )
        )
        started.append(processes.start_emulator(FLEET_PORT, WORKDIR / "fleet.db", WORKDIR / "fleet.log"))
        started.append(
            processes.start_worker(
                {
                    "TEMPORAL_ADDRESS": f"127.0.0.1:{TEMPORAL_PORT}",
                    # The worker reaches the emulator as it would reach Azure: the SDK, AZURE_*.
                    **emulator.env(),
                    "UPGRADE_TASK_QUEUE": TASK_QUEUE,
                    # The demo's server keeps its database between runs: this build serves, even
                    # after a version bump (docs/operating.md, "Releases").
                    "UPGRADE_MAKE_CURRENT": "always",
                    "PYTHONUNBUFFERED": "1",
                },
                WORKDIR / "worker.log",
            )
        )
        print_addresses(console, emulator)
        code = asyncio.run(upgrade(console, emulator, instances))
        if keep:
            console.print(
                f"everything is still up (Web UI http://localhost:{UI_PORT}, fleet emulator "
                f"{emulator.url}, logs in {WORKDIR}/); with the exports above, try `upgradectl fleet "
                f"show {SCALE_SET}`, `upgradectl fleet ops {SCALE_SET}` or `upgradectl history "
                f"{SCALE_SET}` (TEMPORAL_ADDRESS=127.0.0.1:{TEMPORAL_PORT} UPGRADE_TASK_QUEUE={TASK_QUEUE}). "
                "Ctrl-C stops it all.",
                soft_wrap=True,
            )
            try:
                while all(p.poll() is None for p in started):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return code
    finally:
        for process in reversed(started):
            processes.stop(process)
        if not keep:
            console.print(f"stopped the servers; logs are in {WORKDIR}/")
