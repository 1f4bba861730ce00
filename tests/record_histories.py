"""`make histories`: record real upgrade histories into tests/histories/ for the replay test.

Each scenario runs on a fresh dev server against a fresh emulator, with worker processes (so
"crash-resume" is a real SIGKILL); one whose waits last hours ("window-hold", a maintenance
window) on a time-skipping server of its own, with the worker in this process. The parent's
history is written to `<scenario>.json`, each child's to `<scenario>.<child id suffix>.json`.
Workflow ids follow from the file names (see `workflow_id_of`), so a file is exactly the history
JSON the Web UI or CLI exports.

The workers reach the fleet as the product does: AzureFleet over HTTPS to the emulator's ARM
API (the environment of `EmulatorAddress.env()`); scenarios are set up through its admin API.

Run it for new scenarios, or after a patched change once the old recordings are kept (see
docs/maintaining.md, "Changing workflow code safely"). `--out DIR` writes elsewhere than
tests/histories/ (to try a scenario without touching the recordings the replay test uses).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings
from fleet.emulator.admin import EmulatorAdmin
from models.alarms import Alarm
from models.change import ExtensionRequest
from models.fleet import ExtensionSpec, FaultSpec, HealthState, OperationKind, OperationStatus, TimingSpec
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy
from models.upgrade import (
    APPROVE_SIGNAL,
    PREFLIGHT_WORKFLOW,
    ROLLING_UPGRADE_WORKFLOW,
    ApproveRequest,
    UpgradeRequest,
    upgrade_workflow_id,
)
from starter import processes
from starter.processes import EmulatorAddress
from starter.upgrades import UpgradeHandle, cancel_upgrade, get_status, start_upgrade
from tests.helpers.alarms import AlarmServer, alarm_server
from tests.helpers.maintenance import NIGHTLY, MaintenanceArm
from tests.helpers.upgrades import (
    INSTANT,
    QUICK_HEALTH,
    V2,
    WorkerProcesses,
    eventually,
    finish,
    make_scale_set,
    product_worker,
    unhealthy_on_target,
    upgrade,
)
from worker.connection import connect
from worker.search_attribute_setup import ensure_search_attributes

HISTORIES = Path(__file__).parent / "histories"
PREFIX = "h-"
QUICK = TimingSpec(reimage_seconds=[0.2, 0.2], restore_seconds=[0.2, 0.2], boot_seconds=[0.2, 0.2])
SLOW = TimingSpec(reimage_seconds=[1.5, 1.5], restore_seconds=[0.2, 0.2], boot_seconds=[0.2, 0.2])
# Extension scenarios: the scale set's model has extension `agent` at 1.2 (1.2.0 installed); the
# upgrade moves it to 1.3.0, the newest of its major (2.0.0, a new major, is never taken).
AGENT = ExtensionSpec.model_validate(
    {
        "name": "agent",
        "publisher": "Contoso.Monitoring",
        "type": "AgentLinux",
        "typeHandlerVersion": "1.2",
        "autoUpgradeMinorVersion": False,
    }
)
AGENT_OLD, AGENT_NEW = "1.2.0", "1.3.0"
# A second extension of the model, for upgrades of several extensions (each on its own).
LOGS = AGENT.model_copy(update={"name": "logs", "type_": "LogsLinux"})
AGENT_VERSIONS = [AGENT_OLD, AGENT_NEW, "2.0.0"]
EXT_QUICK = QUICK.model_copy(update={"extension_seconds": [0.2, 0.2]})
EXT_SLOW = QUICK.model_copy(update={"extension_seconds": [1.5, 1.5]})
# maxSurge scenarios: batches of two; the "surge" set in a region of its own, whose core quota
# the scenario lowers (Standard_D2s_v3, the emulator's default size: 2 vCPUs of standardDSv3Family).
SURGE = {"maxSurge": True, "maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}
SURGE_REGION = "h-surge-region"


def workflow_id_of(path: Path) -> str:
    """`happy-path.json` -> rolling-upgrade/h-happy-path; `happy-path.batch-2.json` -> .../batch-2;
    under `automatic/` the name is the id with '~' for '/' (tests/end_to_end/test_rollout_durability.py)."""
    if path.parent.name == "automatic":
        return path.name.removesuffix(".json").replace("~", "/")
    scenario, _, child = path.name.removesuffix(".json").partition(".")
    parent = upgrade_workflow_id(PREFIX + scenario)
    return f"{parent}/{child}" if child else parent


@dataclass
class Lab:
    """Where scenarios run: a server (the dev server, or a time-skipping one), the emulator,
    and the workers on `task_queue` (processes on the dev server, in this process otherwise)."""

    env: WorkflowEnvironment
    fleet: EmulatorAdmin
    azure: AzureFleet  # the product's client, for what only ARM does (a reimage)
    emulator: EmulatorAddress
    task_queue: str
    workers: WorkerProcesses | None = None


@dataclass
class Run:
    """What a scenario may do while its upgrade runs."""

    client: Client
    fleet: EmulatorAdmin
    azure: AzureFleet  # the product's client, for what only ARM does (a reimage)
    workers: WorkerProcesses | None
    emulator: EmulatorAddress
    scale_set: str
    handle: UpgradeHandle | None = None


@dataclass
class Scenario:
    capacity: int = 6
    zones: list[str] = field(default_factory=list)
    timing: TimingSpec = field(default_factory=lambda: QUICK)
    faults: FaultSpec = field(default_factory=FaultSpec)
    unhealthy_before: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    refused: bool = False  # record the preflight's refusal and the upgrade's own refusal
    during: Callable[[Run], Awaitable[None]] | None = None
    before: Callable[[Run], Awaitable[None]] | None = None
    # An extension upgrade of these extensions (None: an OS image upgrade to V2), on a scale set
    # whose model has `model_extensions`, each with `extension_versions` published first.
    extensions: list[ExtensionRequest] | None = None
    model_extensions: list[ExtensionSpec] = field(default_factory=list)
    extension_versions: list[str] = field(default_factory=list)
    location: str = "westeurope"
    # Waits of hours (a maintenance window): on a time-skipping server, the worker in this process.
    time_skipping: bool = False


def extension_scenario(**fields: Any) -> Scenario:
    """An upgrade of extension `agent` from 1.2.0 to 1.3.0 (AGENT), unless `fields` say others."""
    defaults = {
        "extensions": [ExtensionRequest(name=AGENT.name)],
        "model_extensions": [AGENT],
        "extension_versions": AGENT_VERSIONS,
        "timing": EXT_QUICK,
    }
    return Scenario(**{**defaults, **fields})


async def ops_count(run: Run, count: int) -> None:
    await eventually(lambda: run.fleet.operations(run.scale_set), lambda ops: len(ops) >= count, 60)


async def cancel_by_signal(run: Run) -> None:
    await ops_count(run, 2)
    await cancel_upgrade(run.client, run.scale_set)


async def cancel_by_request(run: Run) -> None:
    await ops_count(run, 2)
    await run.handle.cancel()


async def kill_the_worker(run: Run) -> None:
    await eventually(
        lambda: run.fleet.operations(run.scale_set),
        lambda ops: any(op.status == OperationStatus.IN_PROGRESS for op in ops),
        60,
    )
    assert run.workers is not None  # (worker processes: on the dev server)
    await run.workers.crash()


async def kill_the_worker_mid_reinstall(run: Run) -> None:
    """SIGKILL while the previous version of the extension is being reinstalled (a rollback)."""
    await eventually(
        lambda: run.fleet.operations(run.scale_set),
        lambda ops: any(
            op.kind == OperationKind.INSTALL_EXTENSION
            and op.extension_version == AGENT_OLD
            and op.status == OperationStatus.IN_PROGRESS
            for op in ops
        ),
        60,
    )
    assert run.workers is not None  # (worker processes: on the dev server)
    await run.workers.crash()


async def delete_an_instance(run: Run) -> None:
    await ops_count(run, 2)
    await run.fleet.delete_instance(run.scale_set, "1")


async def answer_nonsense_after_a_batch(run: Run) -> None:
    await eventually(
        lambda: get_status(run.client, run.scale_set),
        lambda s: s.properties.progress.successful_instance_count >= 1,
        60,
    )
    await run.fleet.set_faults(run.scale_set, FaultSpec(malformed_share=1.0))


async def scale_out_after_the_first_batch(run: Run) -> None:
    await ops_count(run, 1)
    await run.fleet.scale_out(run.scale_set, 2)


async def two_unhealthy_on_the_target(run: Run) -> None:
    await unhealthy_on_target(run.fleet, run.azure, run.scale_set, ["8", "9"])


async def recover_once_waiting(run: Run) -> None:
    await eventually(
        lambda: get_status(run.client, run.scale_set), lambda s: s.properties.wait is not None, 60
    )
    for instance_id in ("8", "9"):
        await run.fleet.set_health(run.scale_set, instance_id, None)


async def no_quota_after_the_first_batch(run: Run) -> None:
    """Once the first batch's new instances replaced its old ones (deleted), the region's quota
    leaves no room for more: the next batch, in the pause, falls back to an in-place reimage."""
    await eventually(
        lambda: get_status(run.client, run.scale_set),
        lambda s: s.properties.progress.successful_instance_count >= 2,
        60,
    )
    await run.fleet.set_core_quota(SURGE_REGION, "standardDSv3Family", 4 * 2)


async def nightly_window(run: Run) -> None:
    """The set's maintenance configuration (scope OSImage): 22:00 Pacific for 5 hours, daily."""
    async with MaintenanceArm(run.emulator) as arm:
        await arm.configure(run.scale_set, f"{run.scale_set}-nightly", NIGHTLY)


async def approve_at_the_checkpoint(run: Run) -> None:
    await eventually(
        lambda: get_status(run.client, run.scale_set),
        lambda s: s.properties.wait is not None and "approval" in s.properties.wait.reason,
        60,
    )
    assert run.handle is not None
    await run.handle.signal(APPROVE_SIGNAL, ApproveRequest(by="carol"))


# A local alarm endpoint for the "alarm-fired" scenario, for as long as this process runs (the
# stack is kept: collected, it would close the server).
_ALARMS = contextlib.ExitStack()
ALARM: AlarmServer = _ALARMS.enter_context(alarm_server())


async def alarm_quiet(run: Run) -> None:
    ALARM.state = "ok"


async def alarm_fires_mid_batch_2(run: Run) -> None:
    """Instance 2 of batch 2 upgraded and 3 reimaged, waiting for health: the alarm fires."""
    await eventually(
        lambda: run.fleet.operations(run.scale_set), lambda ops: {op.instance_id for op in ops} >= {"2", "3"}
    )
    ALARM.state = "firing"


def webhook_receiver() -> str:
    """A local endpoint that accepts every notification (for the "notifications" scenario)."""

    class Accept(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/hooks"


SCENARIOS: dict[str, Scenario] = {
    "happy-path": Scenario(zones=["1", "2"]),
    "rollback-breach": Scenario(faults=FaultSpec(unhealthy_images=[V2.version])),
    "restore-on-breach": Scenario(
        faults=FaultSpec(unhealthy_after_upgrade=["1"]),
        options={
            "disable_automatic_rollback": True,
            "policy": {"rollbackFailedInstancesOnPolicyBreach": True},
        },
    ),
    "below-threshold": Scenario(capacity=10, faults=FaultSpec(unhealthy_after_upgrade=["5"])),
    "pre-upgrade-gate": Scenario(capacity=5, unhealthy_before=["1", "3"]),
    "cancel-mid-batch": Scenario(timing=SLOW.model_copy(), during=cancel_by_signal),
    "cancel-request": Scenario(timing=SLOW.model_copy(), during=cancel_by_request),
    "pause": Scenario(capacity=3, options={"policy": {"pauseTimeBetweenBatches": "PT2S"}}),
    "crash-resume": Scenario(timing=SLOW.model_copy(), during=kill_the_worker),
    "deleted-instance": Scenario(
        timing=SLOW.model_copy(),
        during=delete_an_instance,
        options={"policy": {"maxUnhealthyUpgradedInstancePercent": 50}},
    ),
    "unexpected-error": Scenario(
        capacity=3,
        options={"policy": {"pauseTimeBetweenBatches": "PT3S"}},
        during=answer_nonsense_after_a_batch,
    ),
    "timeout": Scenario(
        capacity=3, options={"upgrade_timeout": "PT1M", "policy": {"pauseTimeBetweenBatches": "PT40S"}}
    ),
    "scale-out": Scenario(
        capacity=4,
        options={"policy": {"pauseTimeBetweenBatches": "PT2S"}},
        during=scale_out_after_the_first_batch,
    ),
    "health-budget": Scenario(
        capacity=10,
        before=two_unhealthy_on_the_target,
        during=recover_once_waiting,
        options={
            "health": ApplicationHealthSettings(
                interval_in_seconds=1, health_wait_timeout=timedelta(seconds=90)
            )
        },
    ),
    "refused": Scenario(
        capacity=2, refused=True, options={"target_image": V2.model_copy(update={"version": "2099.01.01"})}
    ),
    "notifications": Scenario(
        capacity=3,
        options={
            "notifications": {
                "webhooks": [webhook_receiver(), f"http://127.0.0.1:{processes.free_port()}/nobody-listens"],
                "perBatch": True,
            }
        },
    ),
    "ext-happy-path": extension_scenario(capacity=4, zones=["1", "2"]),
    "ext-rollback-health": extension_scenario(
        faults=FaultSpec(unhealthy_extension_versions=[f"{AGENT.name}:{AGENT_NEW}"])
    ),
    "ext-rollback-install": extension_scenario(
        faults=FaultSpec(failing_extension_versions=[f"{AGENT.name}:{AGENT_NEW}"])
    ),
    # agent fails to install (reinstalled at once, then stopped by its own breach); logs moves on.
    "ext-independent": extension_scenario(
        capacity=3,
        extensions=[ExtensionRequest(name=AGENT.name), ExtensionRequest(name=LOGS.name)],
        model_extensions=[AGENT, LOGS],
        faults=FaultSpec(failing_extension_versions=[f"{AGENT.name}:{AGENT_NEW}"]),
    ),
    "ext-crash-resume": extension_scenario(timing=EXT_SLOW, during=kill_the_worker),
    "ext-crash-reinstall": extension_scenario(
        timing=EXT_SLOW,
        faults=FaultSpec(unhealthy_extension_versions=[f"{AGENT.name}:{AGENT_NEW}"]),
        during=kill_the_worker_mid_reinstall,
    ),
    # The first batch surges (two new instances, healthy, the old two deleted); then the quota
    # leaves no room and the second is reimaged in place.
    "surge": Scenario(
        capacity=4,
        zones=["1", "2"],
        location=SURGE_REGION,
        options={"policy": {**SURGE, "pauseTimeBetweenBatches": "PT3S"}},
        during=no_quota_after_the_first_batch,
    ),
    # The first batch's new instances never turn healthy: deleted, the old ones kept, Faulted.
    "surge-rollback": Scenario(
        capacity=4, faults=FaultSpec(unhealthy_images=[V2.version]), options={"policy": SURGE}
    ),
    # Held at 10% for an approval, baked at 50%, done.
    "checkpoints": Scenario(
        capacity=10,
        during=approve_at_the_checkpoint,
        options={
            "policy": {
                "maxBatchInstancePercent": 20,
                "checkpoints": [{"percent": 10, "approval": True}, {"percent": 50, "bakeTime": "PT2S"}],
            }
        },
    ),
    # An HTTP alarm fires while batch 2 waits for health: the batch is rolled back, Faulted.
    "alarm-fired": Scenario(
        capacity=10,
        faults=FaultSpec(unhealthy_after_upgrade=["3"]),
        before=alarm_quiet,
        during=alarm_fires_mid_batch_2,
        options={
            "health": ApplicationHealthSettings(
                interval_in_seconds=1, health_wait_timeout=timedelta(minutes=1)
            ),
            "alarms": [Alarm.model_validate({"name": "app", "http": {"url": f"{ALARM.url}/state"}})],
        },
    ),
    # Held before a batch while the set's window is closed (before the first unless it starts
    # inside one, and after the 6-hour pause, which outlasts the 5-hour window), resumed when it opens.
    "window-hold": Scenario(
        capacity=4,
        timing=INSTANT,
        before=nightly_window,
        options={
            "respect_maintenance_window": True,
            "policy": {
                "maxBatchInstancePercent": 50,
                "maxUnhealthyInstancePercent": 50,
                "pauseTimeBetweenBatches": "PT6H",
            },
        },
        time_skipping=True,
    ),
}


async def record(name: str, scenario: Scenario, lab: Lab, out: Path = HISTORIES) -> list[Path]:
    client, fleet = lab.env.client, lab.fleet
    for extension in scenario.model_extensions:
        for version in scenario.extension_versions:
            await fleet.publish_extension_version(extension.publisher, extension.type_, version)
    scale_set = await make_scale_set(
        fleet,
        scenario.capacity,
        zones=scenario.zones,
        update_domains=1,
        timing=scenario.timing,
        faults=scenario.faults,
        name=PREFIX + name,  # fixed names give the histories stable workflow ids
        extensions=scenario.model_extensions,
        location=scenario.location,
    )
    for instance_id in scenario.unhealthy_before:
        await fleet.set_health(scale_set, instance_id, HealthState.UNHEALTHY)
    run = Run(client, fleet, lab.azure, lab.workers, lab.emulator, scale_set)
    if scenario.before:
        await scenario.before(run)
    written: list[Path] = []
    handle = client.get_workflow_handle(upgrade_workflow_id(scale_set))
    if scenario.refused:
        written.append(await refuse_both_ways(client, lab.task_queue, name, scale_set, scenario, out))
    else:
        run.handle = await start(client, lab.task_queue, scale_set, scenario)
        if scenario.during:
            await scenario.during(run)
        await finish(lab.env, run.handle)
    parent = await handle.fetch_history()
    written.append(out / f"{name}.json")
    written[-1].write_text(parent.to_json())
    for event in parent.events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            execution = event.child_workflow_execution_started_event_attributes.workflow_execution
            child = await client.get_workflow_handle(
                execution.workflow_id, run_id=execution.run_id
            ).fetch_history()
            suffix = execution.workflow_id.removeprefix(handle.id + "/")
            written.append(out / f"{name}.{suffix}.json")
            written[-1].write_text(child.to_json())
    return written


async def start(client: Client, task_queue: str, scale_set: str, scenario: Scenario) -> UpgradeHandle:
    """The scenario's upgrade: of the OS image (to V2), or of its extensions."""
    if scenario.extensions is None:
        handle, _ = await upgrade(client, task_queue, scale_set, **scenario.options)
        return handle
    options = dict(scenario.options)
    request = UpgradeRequest(
        scale_set=scale_set,
        extensions=scenario.extensions,
        policy=RollingUpgradePolicy.model_validate(options.pop("policy", {})),
        health=options.pop("health", QUICK_HEALTH),
        **options,
    )
    handle, _ = await start_upgrade(client, request, task_queue)
    return handle


async def refuse_both_ways(
    client: Client, task_queue: str, name: str, scale_set: str, scenario: Scenario, out: Path = HISTORIES
) -> Path:
    """The preflight refuses; the upgrade itself, started without one (as when the fleet
    changes between preflight and start), refuses too."""
    request = UpgradeRequest(scale_set=scale_set, **scenario.options)
    preflight_id = f"{upgrade_workflow_id(scale_set)}/preflight"
    with contextlib.suppress(WorkflowFailureError):
        await client.execute_workflow(PREFLIGHT_WORKFLOW, request, id=preflight_id, task_queue=task_queue)
    path = out / f"{name}.preflight.json"
    path.write_text((await client.get_workflow_handle(preflight_id).fetch_history()).to_json())
    handle = await client.start_workflow(
        ROLLING_UPGRADE_WORKFLOW, request, id=upgrade_workflow_id(scale_set), task_queue=task_queue
    )
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return path


async def main(names: list[str], out: Path = HISTORIES) -> None:
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="histories-"))
    port, ui_port, fleet_port = processes.free_port(), processes.free_port(), processes.free_port()
    server = processes.start_dev_server(port, ui_port, None, workdir / "server.log")
    emulator_process = processes.start_emulator(fleet_port, workdir / "fleet.db", workdir / "fleet.log")
    emulator = processes.EmulatorAddress.of(fleet_port, workdir / "fleet.db")
    try:
        dev_server = WorkflowEnvironment.from_client(await connect(f"127.0.0.1:{port}"))
        async with (
            EmulatorAdmin(emulator.url, emulator.ca_file) as fleet,
            AzureFleet(AzureSettings.from_env(emulator.env())) as azure,
        ):
            for name in names:
                if SCENARIOS[name].time_skipping:
                    paths = await record_time_skipping(name, fleet, azure, emulator, out)
                else:
                    workers = WorkerProcesses(f"127.0.0.1:{port}", emulator, workdir)
                    await workers.start()
                    try:
                        lab = Lab(dev_server, fleet, azure, emulator, workers.task_queue, workers)
                        paths = await record(name, SCENARIOS[name], lab, out)
                    finally:
                        workers.stop()
                for path in paths:
                    print(f"recorded {path.resolve()}")
    finally:
        processes.stop(emulator_process)
        processes.stop(server)
        shutil.rmtree(workdir, ignore_errors=True)


async def record_time_skipping(
    name: str, fleet: EmulatorAdmin, azure: AzureFleet, emulator: EmulatorAddress, out: Path
) -> list[Path]:
    """A scenario on a time-skipping server of its own (its clock jumps), the worker in this process."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=processes.venv_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        await ensure_search_attributes(env.client)
        async with product_worker(env, azure) as worker:
            return await record(
                name, SCENARIOS[name], Lab(env, fleet, azure, emulator, worker.task_queue), out
            )
    finally:
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m tests.record_histories", description="Record upgrade histories for the replay test."
    )
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help="all by default")
    parser.add_argument(
        "--out", type=Path, default=HISTORIES, help="where to write them (default: tests/histories/)"
    )
    args = parser.parse_args()
    chosen = args.scenarios or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}; known: {', '.join(SCENARIOS)}")
    asyncio.run(main(chosen, args.out))
