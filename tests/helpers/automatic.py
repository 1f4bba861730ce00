"""Building blocks of the automatic OS image upgrade tests: gallery images of a test's own, scale sets
in the emulator, the watcher and its enrollments, rollouts and their windows in flight."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from fleet.emulator.admin import EmulatorAdmin
from models.automatic import (
    AUTOMATIC_UPGRADES_WORKFLOW,
    ENROLL_UPDATE,
    ROLLOUT_QUERY,
    WITHDRAW_UPDATE,
    AutomaticSettings,
    AutomaticState,
    Enrollment,
    EnrollRequest,
    RolloutStatus,
    WithdrawRequest,
    rollout_workflow_id,
    watcher_workflow_id,
)
from models.fleet import FaultSpec, FleetOperation, ScaleSetSpec, TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings, UpgradePolicy
from starter.automatic import with_cohorts
from tests.helpers.upgrades import INSTANT, once_started

QUICK = ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout=timedelta(seconds=5))
POLICY = UpgradePolicy.model_validate({"applicationHealth": QUICK.to_json()})


GALLERY = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/fleet-emulator"
    "/providers/Microsoft.Compute/galleries/fleet/images"
)


class Images:
    """A gallery image of the test's own (the emulator's gallery is shared by the session)."""

    def __init__(self) -> None:
        self.latest = ImageReference(id=f"{GALLERY}/auto-{uuid.uuid4().hex[:8]}")

    def at(self, version: str) -> ImageReference:
        return self.latest.model_copy(update={"version": version})


async def make_set(
    fleet: EmulatorAdmin,
    image: ImageReference,
    location: str,
    capacity: int = 3,
    *,
    zones: list[str] | None = None,
    faults: FaultSpec | None = None,
    timing: TimingSpec = INSTANT,
) -> str:
    name = f"auto-{uuid.uuid4().hex[:8]}"
    await fleet.create_scale_set(
        ScaleSetSpec(
            name=name,
            location=location,
            capacity=capacity,
            zones=zones or [],
            update_domain_count=1,
            image_reference=image,
            timing=timing,
            faults=faults or FaultSpec(),
        )
    )
    return name


async def watcher(client: Client, task_queue: str, **settings: object) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        AUTOMATIC_UPGRADES_WORKFLOW,
        AutomaticState(settings=AutomaticSettings.model_validate(settings)),
        id=watcher_workflow_id(task_queue),
        task_queue=task_queue,
    )


async def enroll(
    handle: WorkflowHandle[Any, Any], scale_set: str, policy: UpgradePolicy = POLICY, **fields: Any
) -> Enrollment:
    """Enroll through the watcher's update; `fields`: more of EnrollRequest (os_image, extensions)."""
    request = EnrollRequest(scale_set=scale_set, policy=policy, by="test", **fields)
    enrollment: Enrollment = await handle.execute_update(ENROLL_UPDATE, request, result_type=Enrollment)
    return enrollment


async def withdraw(handle: WorkflowHandle[Any, Any], request: WithdrawRequest) -> Enrollment:
    enrollment: Enrollment = await handle.execute_update(WITHDRAW_UPDATE, request, result_type=Enrollment)
    return enrollment


async def rollout_of(client: Client, images: Images, version: str) -> WorkflowHandle[Any, Any]:
    return await once_started(
        client.get_workflow_handle(rollout_workflow_id(images.latest, version), result_type=RolloutStatus)
    )


async def rollout_status(handle: WorkflowHandle[Any, Any]) -> RolloutStatus:
    """The rollout as `rollout show` reads it: with its cohorts' sets in flight."""
    return await with_cohorts(handle._client, await handle.query(ROLLOUT_QUERY, result_type=RolloutStatus))


async def finished(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]) -> RolloutStatus:
    """The rollout's end, time skipping meanwhile (the environment skips time by itself only
    while awaiting a workflow the test started, and the watcher started this one)."""
    async with env.time_skipping_unlocked():  # type: ignore[attr-defined]
        while True:
            try:
                status: RolloutStatus = await handle.result()
                return status
            except RuntimeError as err:  # the test server's long poll ended first: wait on
                if "No completion event found" not in str(err):
                    raise


def reimages(ops: list[FleetOperation]) -> list[FleetOperation]:
    return [op for op in ops if op.kind.value == "reimage"]


def in_flight(ops: list[FleetOperation]) -> tuple[float, float]:
    """When a scale set's upgrade touched its instances: first reimage sent to last instance up."""
    start = min(op.start_time for op in ops)
    end = max(op.ready_time or op.end_time or op.start_time for op in ops)
    return start.timestamp(), end.timestamp()


def overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


async def assert_availability_first(
    fleet: EmulatorAdmin, ops: dict[str, list[FleetOperation]], region: tuple[str, ...], pair: str
) -> list[tuple[str | None, tuple[float, float]]]:
    """From the emulator's own timestamps: the sets of `region` never in flight together with
    `pair` (its geo-pair), and never two zones of the region in flight at once across its sets.
    Returns each operation's zone and window in the region."""
    pair_window = in_flight(ops[pair])
    for name in region:
        assert not overlap(pair_window, in_flight(ops[name]))
    zone_of = {}
    for name in region:
        for instance in (await fleet.show_scale_set(name)).instances:
            zone_of[(name, instance.instance_id)] = instance.zone
    windows = [(zone_of[(name, op.instance_id)], in_flight([op])) for name in region for op in ops[name]]
    assert_one_zone_in_flight(windows)
    return windows


def assert_one_zone_in_flight(windows: list[tuple[str | None, tuple[float, float]]], where: str = "") -> None:
    """Never two zones (None: regional instances) in flight at once among one region's
    operations, each given as its instance's zone and its window."""
    for (zone_a, a), (zone_b, b) in itertools.combinations(windows, 2):
        assert zone_a == zone_b or not overlap(a, b), f"{where}zones {zone_a} and {zone_b} in flight together"
