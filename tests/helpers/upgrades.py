"""Building blocks for upgrade tests: scale sets in the emulator, requests, polling."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fleet.emulator.admin import EmulatorAdmin
from fleet.protocol import FleetBackend
from models.fleet import FaultSpec, FleetOperation, HealthState, OperationKind, ScaleSetSpec, TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy
from models.upgrade import Admission, UpgradeReport, UpgradeRequest
from starter.processes import WorkerProcesses as WorkerProcesses  # the tests' worker processes
from starter.upgrades import UpgradeHandle, final_report, get_status, start_upgrade
from worker.assembly import build_worker
from worker.deployment import DeploymentSettings, package_version, take_current

T = TypeVar("T")

# An address where nothing answers, for as long as the tests run: a port bound and never
# listening refuses connections, and no server started later can take it.
_NEVER_LISTENING = socket.socket()
_NEVER_LISTENING.bind(("127.0.0.1", 0))
CLOSED = f"127.0.0.1:{_NEVER_LISTENING.getsockname()[1]}"

V1 = ImageReference.parse("Contoso:web-os:2024:2024.11.01")
V2 = ImageReference.parse("Contoso:web-os:2024:2024.12.01")
INSTANT = TimingSpec(
    reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0, 0], power_seconds=[0, 0]
)
# Probes every second; an instance that is not healthy is given up after 2 s.
QUICK_HEALTH = ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout=timedelta(seconds=2))


@asynccontextmanager
async def product_worker(
    env: WorkflowEnvironment, fleet: FleetBackend, task_queue: str | None = None, **options: Any
) -> AsyncIterator[Worker]:
    """The product's worker in this process, on a task queue of its own (a fresh one unless
    given). On a dev server it is versioned as `python -m worker` is, a Worker Deployment of its
    own named after the task queue, made current (a real server refuses a workflow that declares
    a versioning behavior from an unversioned worker); the time-skipping server has no worker
    versioning, so there it runs unversioned."""
    task_queue = task_queue or f"tq-{uuid.uuid4()}"
    deployment = None if env.supports_time_skipping else DeploymentSettings(task_queue, package_version())
    version = deployment.version if deployment else None
    async with build_worker(env.client, fleet, task_queue, deployment=version, **options) as worker:
        if deployment is not None:
            await take_current(env.client, deployment)
        yield worker


async def make_scale_set(
    fleet: EmulatorAdmin,
    capacity: int = 10,
    *,
    zones: list[str] | None = None,
    update_domains: int = 5,
    faults: FaultSpec | None = None,
    timing: TimingSpec = INSTANT,
    name: str | None = None,
    **spec: Any,
) -> str:
    name = name or f"ss-{uuid.uuid4().hex[:10]}"
    await fleet.create_scale_set(
        ScaleSetSpec(
            name=name,
            capacity=capacity,
            zones=zones or [],
            update_domain_count=update_domains,
            image_reference=V1,
            timing=timing,
            faults=faults or FaultSpec(),
            **spec,
        )
    )
    await fleet.publish_image(V2)
    return name


async def upgrade(
    client: Client,
    task_queue: str,
    scale_set: str,
    *,
    image: ImageReference = V2,
    health: ApplicationHealthSettings = QUICK_HEALTH,
    **policy: Any,
) -> tuple[UpgradeHandle, Admission]:
    request = UpgradeRequest(
        scale_set=scale_set,
        target_image=image,
        policy=RollingUpgradePolicy.model_validate(policy.pop("policy", {})),
        health=health,
        **policy,
    )
    return await start_upgrade(client, request, task_queue)


async def upgrade_paused_after_first_batch(
    client: Client, task_queue: str, fleet: EmulatorAdmin
) -> tuple[str, UpgradeHandle, Admission]:
    """A six-instance upgrade across two zones, held in its hour-long pause after batch 1: a
    running upgrade to inspect."""
    name = await make_scale_set(fleet, 6, zones=["1", "2"], update_domains=1)
    handle, admission = await upgrade(client, task_queue, name, policy={"pauseTimeBetweenBatches": "PT1H"})
    await eventually(
        lambda: get_status(client, name), lambda s: s.properties.progress.successful_instance_count == 1
    )
    return name, handle, admission


async def finish(env: WorkflowEnvironment, handle: UpgradeHandle) -> UpgradeReport:
    """The upgrade's report. On the time-skipping server, time skips while we wait (only
    handles from start_workflow do that by themselves, not those from update-with-start)."""
    unlocked = getattr(env, "time_skipping_unlocked", None)
    if unlocked is None:
        return await final_report(handle)
    async with unlocked():
        return await final_report(handle)


def action(op: FleetOperation, target: ImageReference = V2) -> OperationKind:
    """What an accepted operation was for the upgrade: a reimage to the target, or a restore (an
    OS disk swap on Flexible; on Uniform, which has no restore call, a reimage back to the
    previous version)."""
    if op.kind == OperationKind.REIMAGE and op.image_reference and not op.image_reference.same_image(target):
        return OperationKind.RESTORE
    return op.kind


def count_ops(ops: list[FleetOperation], kind: OperationKind, target: ImageReference = V2) -> dict[str, int]:
    """Accepted operations of one kind per instance (the emulator has no deduplication: every
    action sent and accepted is one)."""
    counts: dict[str, int] = {}
    for op in ops:
        if action(op, target) == kind:
            counts[op.instance_id] = counts.get(op.instance_id, 0) + 1
    return counts


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], object], timeout: float = 30.0
) -> T:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {value!r}")
        await asyncio.sleep(0.1)


async def once_started(handle: WorkflowHandle[Any, Any], timeout: float = 30.0) -> WorkflowHandle[Any, Any]:
    """`handle` once its workflow exists (started by another workflow, say)."""

    async def started() -> bool:
        try:
            await handle.describe()
        except RPCError:
            return False
        return True

    await eventually(started, bool, timeout=timeout)
    return handle


async def unhealthy_on_target(fleet: EmulatorAdmin, azure: FleetBackend, name: str, ids: list[str]) -> None:
    """Instances already on V2 (so not upgraded) that are unhealthy: they use up the budget."""
    for instance_id in ids:
        await azure.begin_reimage(name, instance_id, V2.at_version(V2.version))
    await eventually(
        lambda: fleet.show_scale_set(name),
        lambda view: all(i.image_reference.same_image(V2) for i in view.instances if i.instance_id in ids),
    )
    for instance_id in ids:
        await fleet.set_health(name, instance_id, HealthState.UNHEALTHY)
