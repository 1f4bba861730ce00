"""Automatic rollouts on a real dev server with worker processes: a SIGKILL mid-rollout (and during
zone waves) loses nothing and doubles nothing, the history says Platform, and
`python -m tests.end_to_end.test_rollout_durability` records the histories of the watcher, a
rollout, its cohorts and its upgrades for the replay test (`--only waves`: zone waves of zonal sets
in two regions; `--only extensions`: the histories of automatic extension upgrades, on the
time-skipping server, since their retry comes an hour after a failure at the least)."""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import itertools
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings
from fleet.emulator.admin import EmulatorAdmin
from models.automatic import (
    AUTOMATIC_UPGRADES_WORKFLOW,
    CHECK_NOW_SIGNAL,
    ENROLL_UPDATE,
    AutomaticSettings,
    AutomaticState,
    Enrollment,
    EnrollRequest,
    RolloutSetState,
    RolloutState,
    RolloutStatus,
    rollout_workflow_id,
    watcher_workflow_id,
)
from models.fleet import FaultSpec, FleetOperation, OperationKind, OperationStatus, TimingSpec
from models.upgrade import upgrade_workflow_id
from starter import processes
from starter.history import upgrade_history
from tests.helpers.automatic import (
    POLICY,
    Images,
    enroll,
    finished,
    in_flight,
    make_set,
    overlap,
    reimages,
    rollout_of,
    rollout_status,
)
from tests.helpers.automatic_extensions import PUBLISHER, extension, publish, rollout
from tests.helpers.automatic_extensions import make_set as make_extension_set
from tests.helpers.upgrades import WorkerProcesses, eventually, once_started
from worker.assembly import build_worker
from worker.connection import connect
from worker.search_attribute_setup import ensure_search_attributes

SLOW = TimingSpec(reimage_seconds=[0.5, 0.5], restore_seconds=[0.2, 0.2], boot_seconds=[0.2, 0.2])
AUTOMATIC_HISTORIES = Path(__file__).resolve().parents[1] / "histories" / "automatic"


# A rollout's scale sets: (region, instances, zones) each.
SetSpec = tuple[str, int, tuple[str, ...]]
REGIONAL: tuple[SetSpec, ...] = (("northeurope", 4, ()), ("westeurope", 4, ()))
ZONES = ("1", "2", "3")
# One region's three zonal sets upgraded together in zone waves.
ZONAL: tuple[SetSpec, ...] = (("westeurope", 3, ZONES),) * 3
# Zone waves in two regions (a geo-pair: one phase each); two cohorts in westeurope.
TWO_REGIONS: tuple[SetSpec, ...] = ZONAL + (("northeurope", 3, ZONES),) * 2
TWO_REGIONS_SETTINGS = AutomaticSettings(max_sets_per_region=2)
# When to SIGKILL the workers, from each set's operations (in the order of the sets asked for).
CrashWhen = Callable[[list[list[FleetOperation]]], bool]


def first_set_reimaging(ops: list[list[FleetOperation]]) -> bool:
    """The first set (the first phase's, in REGIONAL) has a reimage in flight."""
    return any(op.status == OperationStatus.IN_PROGRESS for op in ops[0])


def wave_in_flight(ops: list[list[FleetOperation]]) -> bool:
    """A zone wave in flight: a reimage in progress and at least two sets touched."""
    touched = [set_ops for set_ops in ops if set_ops]
    in_progress = any(op.status == OperationStatus.IN_PROGRESS for set_ops in ops for op in set_ops)
    return in_progress and len(touched) >= 2


@dataclass
class Rollout:
    status: RolloutStatus
    names: list[str]  # the scale sets, in the order of their specs
    ops: dict[str, list[FleetOperation]]
    watcher: WorkflowHandle[Any, Any]
    handle: WorkflowHandle[Any, Any]


async def roll(
    client: Client,
    fleet: EmulatorAdmin,
    workers: WorkerProcesses,
    *,
    crash: CrashWhen | None,
    sets: tuple[SetSpec, ...] = REGIONAL,
    settings: AutomaticSettings | None = None,
) -> Rollout:
    """A new version of a gallery image rolled by the watcher over `sets`; the worker processes
    SIGKILLed (and started again) once `crash` says so."""
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    names = [
        await make_set(fleet, images.latest, region, capacity, zones=list(zones), timing=SLOW)
        for region, capacity, zones in sets
    ]
    await workers.start()
    try:
        watcher = await client.start_workflow(
            AUTOMATIC_UPGRADES_WORKFLOW,
            AutomaticState(settings=settings or AutomaticSettings()),
            id=watcher_workflow_id(workers.task_queue),
            task_queue=workers.task_queue,
        )
        for name in names:
            await watcher.execute_update(
                ENROLL_UPDATE, EnrollRequest(scale_set=name, policy=POLICY, by="test"), result_type=Enrollment
            )
        await fleet.publish_image(images.at("1.1.0"))
        await watcher.signal(CHECK_NOW_SIGNAL)
        rollout_id = rollout_workflow_id(images.latest, "1.1.0")
        handle = await once_started(
            client.get_workflow_handle(rollout_id, result_type=RolloutStatus), timeout=60
        )
        if crash is not None:

            async def operations() -> list[list[FleetOperation]]:
                return [await fleet.operations(name) for name in names]

            await eventually(operations, crash, timeout=60)
            await workers.crash()
        status = await asyncio.wait_for(handle.result(), 240)
        return Rollout(status, names, {n: await fleet.operations(n) for n in names}, watcher, handle)
    finally:
        workers.stop()


async def test_a_worker_killed_mid_rollout_loses_and_doubles_nothing(local_env, fleet, emulator, tmp_path):
    address = local_env.client.service_client.config.target_host
    workers = WorkerProcesses(address, emulator, tmp_path)
    rollout = await roll(local_env.client, fleet, workers, crash=first_set_reimaging)

    assert rollout.status.state == RolloutState.COMPLETED
    assert [s.state.value for s in rollout.status.sets] == ["Completed", "Completed"]
    for ops in rollout.ops.values():
        reimages = collections.Counter(op.instance_id for op in ops if op.kind == OperationKind.REIMAGE)
        assert reimages == dict.fromkeys(reimages, 1) and len(reimages) == 4  # exactly once each
        assert {op.status for op in ops} == {OperationStatus.SUCCEEDED}
    # Azure's history of the set says the platform started it.
    north = rollout.status.sets[0].scale_set
    entries = await eventually(
        lambda: upgrade_history(local_env.client, north), lambda found: len(found) == 1, timeout=30
    )
    assert entries[0].properties.started_by == "Platform"
    assert entries[0].properties.running_status.code == "Completed"


async def test_a_worker_killed_during_zone_waves_reimages_every_instance_once_one_zone_at_a_time(
    local_env, fleet, emulator, tmp_path
):
    """Three zonal sets of one region upgraded together in zone waves (at most two instances of
    the region in flight); the workers SIGKILLed while a wave is in flight."""
    address = local_env.client.service_client.config.target_host
    workers = WorkerProcesses(address, emulator, tmp_path)
    settings = AutomaticSettings(max_instances_per_region=2)
    rollout = await roll(
        local_env.client, fleet, workers, crash=wave_in_flight, sets=ZONAL, settings=settings
    )

    assert workers.started == 2  # SIGKILLed once, mid-wave, and started again
    assert rollout.status.state == RolloutState.COMPLETED
    assert {s.scale_set: s.state for s in rollout.status.sets} == dict.fromkeys(
        rollout.names, RolloutSetState.COMPLETED
    )
    zone_of: dict[tuple[str, str], str | None] = {}
    for name in rollout.names:
        for instance in (await fleet.show_scale_set(name)).instances:
            zone_of[(name, instance.instance_id)] = instance.zone
            assert instance.image_reference.resolved_version == "1.1.0"
    windows = []
    for name in rollout.names:
        ops = reimages(rollout.ops[name])
        # Every instance reimaged exactly once, to the new version, whatever the crash cut.
        per_instance = collections.Counter(op.instance_id for op in ops)
        assert per_instance == dict.fromkeys(per_instance, 1) and len(per_instance) == 3
        assert all(op.image_reference.resolved_version == "1.1.0" for op in ops)
        assert {op.status for op in rollout.ops[name]} == {OperationStatus.SUCCEEDED}
        windows += [(name, zone_of[(name, op.instance_id)], in_flight([op])) for op in ops]
    assert {zone for _, zone, _ in windows} == set(ZONES)
    # From the emulator's timestamps: never two zones of the region in flight at once ...
    for (_, zone_a, a), (_, zone_b, b) in itertools.combinations(windows, 2):
        assert zone_a == zone_b or not overlap(a, b), f"zones {zone_a} and {zone_b} in flight together"
    # ... never more than maxInstancesPerRegion instances, and sets of a wave together.
    spans = [window for _, _, window in windows]
    assert max(sum(start <= t < end for start, end in spans) for t, _ in spans) <= 2
    assert any(
        set_a != set_b and overlap(a, b)
        for (set_a, _, a), (set_b, _, b) in itertools.combinations(windows, 2)
    )
    # One upgrade per set, which Azure's history says the platform started.
    for name in rollout.names:
        entries = await eventually(
            functools.partial(upgrade_history, local_env.client, name),
            lambda found: len(found) == 1,
            timeout=30,
        )
        assert entries[0].properties.started_by == "Platform"
        assert entries[0].properties.running_status.code == "Completed"


async def record(
    out: Path, sets: tuple[SetSpec, ...] = REGIONAL, settings: AutomaticSettings | None = None
) -> None:
    """Run a rollout on a fresh dev server and emulator; write the histories of the watcher, the
    rollout, its cohorts and the sets' upgrades as `<workflow id, '/' as '~'>.json` (what the
    Web UI or CLI would export)."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        port, ui_port, fleet_port = processes.free_port(), processes.free_port(), processes.free_port()
        server = processes.start_dev_server(port, ui_port, None, work / "server.log")
        emulator = processes.start_emulator(fleet_port, work / "fleet.db", work / "emulator.log")
        try:
            address = f"127.0.0.1:{port}"
            target = processes.EmulatorAddress.of(fleet_port, work / "fleet.db")
            client = await connect(address)
            workers = WorkerProcesses(address, target, work)
            async with EmulatorAdmin(target.url, target.ca_file) as fleet:
                rollout = await roll(client, fleet, workers, crash=None, sets=sets, settings=settings)
            assert rollout.status.state == RolloutState.COMPLETED, rollout.status
            out.mkdir(parents=True, exist_ok=True)
            ids = [rollout.watcher.id, rollout.handle.id, *await cohort_ids(client, rollout.status)]
            ids += [item.workflow_id or upgrade_workflow_id(item.scale_set) for item in rollout.status.sets]
            for workflow_id in ids:
                history = await client.get_workflow_handle(workflow_id).fetch_history()
                (out / f"{workflow_id.replace('/', '~')}.json").write_text(history.to_json())
                print(f"recorded {workflow_id}")
        finally:
            processes.stop(emulator)
            processes.stop(server)


async def cohort_ids(client: Client, status: RolloutStatus) -> list[str]:
    """The rollout's cohorts (`<rollout id>/<region>/cohort-<n>`): those that ran."""
    found = []
    for region in sorted({item.region for item in status.sets}):
        for number in itertools.count(1):
            cohort_id = f"{status.workflow_id}/{region}/cohort-{number}"
            try:
                await client.get_workflow_handle(cohort_id).describe()
            except RPCError:
                break
            found.append(cohort_id)
    return found


# A scenario on the time-skipping server: the ids of the workflows to record.
Scenario = Callable[[WorkflowEnvironment, EmulatorAdmin], Awaitable[list[str]]]
# Fixed names: the recordings' workflow ids (and so their file names) stay the same.
RECORDED_QUEUE = "h-automatic-extensions"
FLAKY, STEADY = "FlakyAgent", "SteadyAgent"


async def record_time_skipping(out: Path, scenario: Scenario) -> None:
    """Run `scenario` on the time-skipping server and a fresh emulator (its waits take hours);
    write the histories of the workflows it returns."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        fleet_port = processes.free_port()
        emulator = processes.start_emulator(fleet_port, work / "fleet.db", work / "emulator.log")
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=processes.venv_binary("temporal-test-server"),
            data_converter=pydantic_data_converter,
        )
        try:
            await ensure_search_attributes(env.client)
            target = processes.EmulatorAddress.of(fleet_port, work / "fleet.db")
            async with (
                EmulatorAdmin(target.url, target.ca_file) as fleet,
                AzureFleet(AzureSettings.from_env(target.env())) as azure,
                build_worker(env.client, azure, RECORDED_QUEUE),
            ):
                ids = await scenario(env, fleet)
            out.mkdir(parents=True, exist_ok=True)
            for workflow_id in ids:
                history = await env.client.get_workflow_handle(workflow_id).fetch_history()
                (out / f"{workflow_id.replace('/', '~')}.json").write_text(history.to_json())
                print(f"recorded {workflow_id}")
        finally:
            await env.shutdown()
            processes.stop(emulator)


async def roll_extensions(env: WorkflowEnvironment, fleet: EmulatorAdmin) -> list[str]:
    """Automatic extension upgrades: two extensions due at once on one scale set (one waits for
    the other's upgrade to end), one version failing to install (rolled back, the rollout
    Faulted), fixed by its publisher and retried an hour later: the watcher and the rollouts."""
    for type_ in (FLAKY, STEADY):
        await publish(fleet, type_, "1.2.0")
    name = await make_extension_set(
        fleet,
        "westeurope",
        [extension("flaky", FLAKY), extension("steady", STEADY)],
        2,
        faults=FaultSpec(failing_extension_versions=[f"{FLAKY}:1.3.0"]),
    )
    watcher = await env.client.start_workflow(
        AUTOMATIC_UPGRADES_WORKFLOW,
        AutomaticState(settings=AutomaticSettings(extension_retry_interval=timedelta(hours=1))),
        id=watcher_workflow_id(RECORDED_QUEUE),
        task_queue=RECORDED_QUEUE,
    )
    await enroll(watcher, name, extensions=["flaky", "steady"])
    for type_ in (FLAKY, STEADY):
        await publish(fleet, type_, "1.3.0")
    await watcher.signal(CHECK_NOW_SIGNAL)
    flaky, steady = await rollout(env.client, FLAKY, "1.3.0"), await rollout(env.client, STEADY, "1.3.0")
    assert (await finished(env, flaky)).state == RolloutState.FAULTED
    assert (await finished(env, steady)).state == RolloutState.COMPLETED
    await fleet.fix_extension_version(PUBLISHER, FLAKY, "1.3.0")
    await env.sleep(timedelta(hours=1))
    retried = await rollout(env.client, FLAKY, "1.3.0", retry=1)
    assert (await finished(env, retried)).state == RolloutState.COMPLETED
    await env.sleep(timedelta(minutes=30))  # two more looks: nothing more to do
    return [handle.id for handle in (watcher, flaky, steady, retried)]


async def roll_staged(env: WorkflowEnvironment, fleet: EmulatorAdmin) -> list[str]:
    """A staged rollout: the canary region (two zonal sets in zone waves), a bake of an hour
    and its health read again, then a region the version reaches only later (waiting for it,
    looked at again and again) next to one it reached at once: the rollout, its cohorts and the
    upgrades."""
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    canary = [await make_set(fleet, images.latest, "westeurope", 3, zones=list(ZONES)) for _ in range(2)]
    late = await make_set(fleet, images.latest, "eastus", 8)  # more instances than the canary's
    early = await make_set(fleet, images.latest, "northeurope", 8)
    watcher = await env.client.start_workflow(
        AUTOMATIC_UPGRADES_WORKFLOW,
        AutomaticState(settings=AutomaticSettings(phase_bake_time=timedelta(hours=1))),
        id=watcher_workflow_id(RECORDED_QUEUE),
        task_queue=RECORDED_QUEUE,
    )
    for name in (*canary, late, early):
        await enroll(watcher, name)
    await fleet.publish_image(images.at("1.1.0"), ["westeurope", "northeurope"])
    await watcher.signal(CHECK_NOW_SIGNAL)
    handle = await rollout_of(env.client, images, "1.1.0")
    await eventually(lambda: rollout_status(handle), lambda s: s.bake_until is not None, timeout=60)
    await env.sleep(timedelta(hours=1))  # the bake
    await eventually(
        lambda: rollout_status(handle),
        lambda s: {i.scale_set: i.state for i in s.sets}[late] == RolloutSetState.WAITING_FOR_REPLICATION,
        timeout=60,
    )
    await env.sleep(timedelta(minutes=40))  # a few looks at eastus
    await fleet.publish_image(images.at("1.1.0"), ["westeurope", "northeurope", "eastus"])
    status = await finished(env, handle)
    assert status.state == RolloutState.COMPLETED, status
    assert status.phases[0] == ["westeurope"], status.phases
    # (not the watcher: its recording under this queue is the extensions scenario's)
    ids = [handle.id, *await cohort_ids(env.client, status)]
    return ids + [upgrade_workflow_id(item.scale_set) for item in status.sets]


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=record.__doc__)
    parser.add_argument("--out", type=Path, default=AUTOMATIC_HISTORIES)
    parser.add_argument(
        "--only",
        choices=["images", "waves", "extensions", "staged"],
        help=(
            "record one of the scenarios (default: all): images, a rollout over regional sets in "
            "two regions; waves, zone waves of zonal sets in two regions (two cohorts in one); "
            "extensions, automatic extension upgrades; staged, a canary region, a bake and a region "
            "the version reaches later"
        ),
    )
    args = parser.parse_args(argv)
    if args.only in (None, "images"):
        asyncio.run(record(args.out))
    if args.only in (None, "waves"):
        asyncio.run(record(args.out, TWO_REGIONS, TWO_REGIONS_SETTINGS))
    if args.only in (None, "extensions"):
        asyncio.run(record_time_skipping(args.out, roll_extensions))
    if args.only in (None, "staged"):
        asyncio.run(record_time_skipping(args.out, roll_staged))


if __name__ == "__main__":
    main()
