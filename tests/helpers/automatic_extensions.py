"""Building blocks of the automatic extension upgrade tests: extension types of a test's own, published
in the emulator's catalogue, scale sets whose model carries them, and the watcher's rollouts of them."""

from __future__ import annotations

import collections
import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from fleet.emulator.admin import EmulatorAdmin
from models.automatic import (
    ENROLLMENTS_QUERY,
    ROLLOUTS_QUERY,
    Enrollment,
    RolloutStatus,
    RolloutSummary,
    extension_rollout_id,
)
from models.fleet import FaultSpec, FleetOperation, OperationKind, ScaleSetSpec, TimingSpec
from models.image import ImageReference
from tests.helpers.upgrades import V1, once_started

PUBLISHER = "Contoso.Monitoring"
INSTANT = TimingSpec(
    reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0, 0], extension_seconds=[0, 0]
)


def unique_type(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def extension(name: str, type_: str, *, automatic: bool = False) -> dict[str, Any]:
    """An extension of the model; `automatic`: enableAutomaticUpgrade (Azure upgrades it itself)."""
    return {
        "name": name,
        "publisher": PUBLISHER,
        "type": type_,
        "typeHandlerVersion": "1.2",
        "autoUpgradeMinorVersion": False,
        "enableAutomaticUpgrade": automatic,
    }


async def make_set(
    fleet: EmulatorAdmin,
    location: str,
    extensions: list[dict[str, Any]],
    capacity: int = 3,
    *,
    zones: list[str] | None = None,
    faults: FaultSpec | None = None,
    timing: TimingSpec = INSTANT,
    image: ImageReference = V1,
) -> str:
    """A scale set whose image is pinned (its OS left alone) unless `image` says otherwise."""
    name = f"autox-{uuid.uuid4().hex[:8]}"
    await fleet.create_scale_set(
        ScaleSetSpec.model_validate(
            {
                "name": name,
                "location": location,
                "capacity": capacity,
                "zones": zones or [],
                "updateDomainCount": 1,
                "imageReference": image.to_json(),
                "timing": timing.to_json(),
                "faults": (faults or FaultSpec()).to_json(),
                "extensions": extensions,
            }
        )
    )
    return name


async def publish(fleet: EmulatorAdmin, type_: str, *versions: str, regions: list[str] | None = None) -> None:
    for version in versions:
        await fleet.publish_extension_version(PUBLISHER, type_, version, regions)


async def installs(fleet: EmulatorAdmin, name: str) -> list[FleetOperation]:
    ops = [op for op in await fleet.operations(name) if op.kind == OperationKind.INSTALL_EXTENSION]
    return sorted(ops, key=lambda op: op.start_time)


async def installed(fleet: EmulatorAdmin, name: str) -> dict[tuple[str, str], list[str]]:
    """Per (instance, extension), the versions installed, in order."""
    done: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for op in await installs(fleet, name):
        done[(op.instance_id, op.extension_name or "?")].append(op.extension_version or "?")
    return dict(done)


async def versions_now(fleet: EmulatorAdmin, name: str, extension_name: str) -> dict[str, str | None]:
    view = await fleet.show_scale_set(name)
    return {
        i.instance_id: (e.type_handler_version if (e := i.extension(extension_name)) else None)
        for i in view.instances
    }


async def rollout(client: Client, type_: str, version: str, retry: int = 0) -> WorkflowHandle[Any, Any]:
    """The rollout of an extension version, once the watcher started it."""
    return await once_started(
        client.get_workflow_handle(
            extension_rollout_id(f"{PUBLISHER}.{type_}", version, retry), result_type=RolloutStatus
        )
    )


async def enrolled(handle: WorkflowHandle[Any, Any]) -> dict[str, Enrollment]:
    enrollments: list[Enrollment] = await handle.query(ENROLLMENTS_QUERY, result_type=list[Enrollment])
    return {e.scale_set: e for e in enrollments}


async def rollouts(handle: WorkflowHandle[Any, Any]) -> list[RolloutSummary]:
    summaries: list[RolloutSummary] = await handle.query(ROLLOUTS_QUERY, result_type=list[RolloutSummary])
    return summaries
