"""The activities' names, inputs and outputs: the contract between workflows and activities.

Workflows call activities by these names, so they never import the implementations (which do
I/O) into the sandbox. One input model per activity, so fields can be added without breaking
recorded histories.
"""

from __future__ import annotations

from pydantic import Field

from models.base import AzureModel
from models.fleet import FleetOperation, HealthState, ScaleSetView
from models.image import ImageReference
from models.policy import ApplicationHealthSettings

DESCRIBE_SCALE_SET = "describe_scale_set"
RESOLVE_IMAGE = "resolve_image"
REIMAGE_INSTANCE = "reimage_instance"
RESTORE_OS_DISK = "restore_os_disk"
WAIT_FOR_HEALTH = "wait_for_health"
PROBE_HEALTH = "probe_health"
DELIVER_WEBHOOK = "deliver_webhook"
READ_HEALTH = "read_health"


class DescribeScaleSetInput(AzureModel):
    scale_set: str


class DescribeScaleSetResult(AzureModel):
    scale_set: ScaleSetView


class ReadHealthInput(AzureModel):
    scale_set: str


class ResolveImageInput(AzureModel):
    image: ImageReference
    scale_set: ScaleSetView = Field(description="where the image must be replicated to")


class ResolveImageResult(AzureModel):
    image: ImageReference


class ReimageInput(AzureModel):
    scale_set: str
    instance_id: str
    image: ImageReference
    operation_id: str


class RestoreInput(AzureModel):
    scale_set: str
    instance_id: str
    os_disk: str
    operation_id: str


class OperationResult(AzureModel):
    operation: FleetOperation


class HealthInput(AzureModel):
    scale_set: str
    instance_id: str
    health: ApplicationHealthSettings
    grace_remaining_seconds: float = 0.0


class HealthResult(AzureModel):
    state: HealthState
    probes: int = 1
    detail: str | None = None
