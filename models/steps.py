"""The activities' names, inputs and outputs: the contract between workflows and activities.

Workflows call activities by these names, so they never import the implementations (which do
I/O) into the sandbox. One input model per activity, so fields can be added without breaking
recorded histories.

Every payload ignores fields it does not know, at every depth (models/base.py AzureModel):
during a rolling deploy a newer worker may send a field an older one has never heard of, and
the older one must still run the step.
"""

from __future__ import annotations

from pydantic import Field

from models.base import AzureModel
from models.change import ExtensionRequest, ExtensionTarget
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
RESOLVE_EXTENSIONS = "resolve_extensions"
INSTALL_EXTENSION = "install_extension"


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
    restore_point: str | None = Field(
        default=None,
        description="the instance's restore point as the upgrade last read it: the result's "
        "previousOsDisk when the activity itself finds the instance already reimaged",
    )


class ResolveExtensionsInput(AzureModel):
    extensions: list[ExtensionRequest] = Field(description="[]: every extension of the model")
    scale_set: ScaleSetView = Field(description="its model's extensions and region")


class ResolveExtensionsResult(AzureModel):
    extensions: list[ExtensionTarget]


class InstallExtensionInput(AzureModel):
    """Install one version of one extension on one instance (an upgrade's, or the version it had
    before, which a rollback reinstalls)."""

    scale_set: str
    instance_id: str
    extension: ExtensionTarget
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


# MaxSurge (rollingUpgradePolicy.maxSurge): a batch creates its replacements from the target
# model, and once they are healthy deletes the instances they replace.
SURGE_ROOM = "surge_room"
CREATE_INSTANCES = "create_instances"
DELETE_INSTANCES = "delete_instances"


class SurgeRoomInput(AzureModel):
    scale_set: str
    count: int = Field(description="how many new instances the batch would create")


class SurgeRoomResult(AzureModel):
    """The region's core quota for the set's VM size against what the batch's new instances
    need (the Compute usages API): without room the batch is upgraded in place."""

    room: bool
    vm_size: str | None = None
    needed_cores: int = 0
    available_cores: int | None = Field(
        default=None, description="the tightest of the family's and the region's"
    )
    detail: str | None = Field(default=None, description="why there is no room, naming the quota")


class CreateInstancesInput(AzureModel):
    """Raise the set's capacity by `count`, exactly once: the activity reads the set first and
    counts the instances not in `known` as already created."""

    scale_set: str
    count: int
    known: list[str] = Field(description="every instance id of the set before the batch")
    image: ImageReference = Field(description="the target: the set's model is brought to it first")
    operation_id: str


class CreateInstancesResult(AzureModel):
    """The new instances, provisioned (booting: their health is waited for as a reimage's)."""

    instance_ids: list[str]
    zones: dict[str, str | None] = Field(default_factory=dict, description="by new instance id")


class DeleteInstancesInput(AzureModel):
    """Delete these instances, exactly once: those already gone or deleting are not sent again."""

    scale_set: str
    instance_ids: list[str]
    operation_id: str


class DeleteInstancesResult(AzureModel):
    deleted: list[str]


# Automatic upgrades: what the watcher reads of the enrolled scale sets and of the image sources.
SURVEY_SCALE_SETS = "survey_scale_sets"
LATEST_VERSIONS = "latest_versions"


class SurveyInput(AzureModel):
    scale_sets: list[str]


class ScaleSetSurvey(AzureModel):
    """One scale set's model without its instances (`view.instances` is empty) and the image
    versions its instances run now; `error` when it could not be read (gone)."""

    scale_set: str
    view: ScaleSetView | None = None
    instance_versions: list[str] = Field(default_factory=list)
    instance_count: int | None = Field(
        default=None, description="how many instances it has (None: read by a worker that did not count)"
    )
    error: str | None = None
    extension_versions: dict[str, list[str]] = Field(
        default_factory=dict,
        description="per extension of the model (by name), the versions its instances run "
        "(succeeded installs; '' for an instance where it is not installed and succeeded)",
    )


class SurveyResult(AzureModel):
    sets: list[ScaleSetSurvey]


# A rollout's bake time: how the sets of its earlier phases are doing now.
SUMMARIZE_HEALTH = "summarize_health"
HEALTH_SUMMARY_CHUNK = 100  # sets per call: a small payload, a few hundred ARM reads


class SummarizeHealthInput(AzureModel):
    scale_sets: list[str]


class HealthSummary(AzureModel):
    """One scale set's instances and how many of them are not Healthy now; `gone` if deleted."""

    scale_set: str
    instances: int = 0
    unhealthy: int = 0
    gone: bool = False


class SummarizeHealthResult(AzureModel):
    sets: list[HealthSummary]


class VersionQuery(AzureModel):
    source: ImageReference = Field(description="the image as scale sets reference it ('latest')")
    region: str


class LatestVersion(AzureModel):
    """What 'latest' means for one image source in one region now (excludeFromLatest, end of
    life and replication honoured), or why there is none."""

    source: ImageReference
    region: str
    version: str | None = None
    reason: str | None = None


class LatestVersionsInput(AzureModel):
    queries: list[VersionQuery]


class LatestVersionsResult(AzureModel):
    versions: list[LatestVersion]


# Automatic extension upgrades: the newest published version of one major of an extension.
NEWEST_EXTENSION_VERSIONS = "newest_extension_versions"


class ExtensionVersionQuery(AzureModel):
    publisher: str
    type_: str = Field(alias="type")
    major: str = Field(description="only versions of this major (a new major is never automatic)")
    region: str


class NewestExtensionVersion(AzureModel):
    """The versions of one major of an extension published in one region, and the newest."""

    publisher: str
    type_: str = Field(alias="type")
    major: str
    region: str
    newest: str | None = None
    versions: list[str] = Field(default_factory=list, description="of that major, in numeric order")
    reason: str | None = None


class NewestExtensionVersionsInput(AzureModel):
    queries: list[ExtensionVersionQuery]


class NewestExtensionVersionsResult(AzureModel):
    versions: list[NewestExtensionVersion]
