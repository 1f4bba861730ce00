"""Azure's RollingUpgradeStatusInfo (REST: Rolling Upgrades - Get Latest), field for field.

What the workflows produce always has every field; what Azure answers may not (the REST
reference's minimal example has only `id` and `location`), and its `policy` reports whatever the
scale set has, fields and values this product would refuse in a request included (maxSurge,
any pauseTimeBetweenBatches). Such documents parse too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, ConfigDict, Field, ValidatorFunctionWrapHandler, WrapValidator

from models.alarms import AlarmReading
from models.base import AzureModel
from models.fleet import IMAGE_RESTORE_POINT_PREFIX
from models.policy import RollingUpgradePolicy


class RollingUpgradeStatusCode(StrEnum):
    ROLLING_FORWARD = "RollingForward"
    COMPLETED = "Completed"
    FAULTED = "Faulted"
    CANCELLED = "Cancelled"


class RollingUpgradeActionType(StrEnum):
    START = "Start"
    CANCEL = "Cancel"


class RollingUpgradeRunningStatus(AzureModel):
    code: RollingUpgradeStatusCode
    start_time: AwareDatetime
    last_action: RollingUpgradeActionType = RollingUpgradeActionType.START
    last_action_time: AwareDatetime


# The words for the four progress counts, shared by the live view, `status` and the Web UI.
PROGRESS_WORDS = ("succeeded", "failed", "in progress", "pending")


class RollingUpgradeProgressInfo(AzureModel):
    successful_instance_count: int = 0
    failed_instance_count: int = 0
    in_progress_instance_count: int = 0
    pending_instance_count: int = 0

    def labelled(self) -> list[tuple[str, int]]:
        """(word, count) for succeeded, failed, in progress and pending, in that order."""
        counts = (
            self.successful_instance_count,
            self.failed_instance_count,
            self.in_progress_instance_count,
            self.pending_instance_count,
        )
        return list(zip(PROGRESS_WORDS, counts))

    @property
    def total(self) -> int:
        return (
            self.successful_instance_count
            + self.failed_instance_count
            + self.in_progress_instance_count
            + self.pending_instance_count
        )


class ApiErrorBase(AzureModel):
    code: str | None = None
    target: str | None = None
    message: str | None = None


class InnerError(AzureModel):
    exceptiontype: str | None = Field(default=None, alias="exceptiontype")
    errordetail: str | None = Field(default=None, alias="errordetail")


class ApiError(AzureModel):
    code: str | None = None
    target: str | None = None
    message: str | None = None
    details: list[ApiErrorBase] | None = None
    innererror: InnerError | None = Field(default=None, alias="innererror")


class UpgradeWaitKind(StrEnum):
    """What an upgrade is holding back for."""

    PAUSED = "Paused"  # someone paused it (`upgradectl pause`, a rollout's hold)
    PENDING_APPROVAL = "PendingApproval"  # osRollingUpgradeDeferral: the batch awaits approval
    ZONE_WAVE = "ZoneWave"  # a rollout's zone waves: its next zone waits for the region's turn
    MAINTENANCE_WINDOW = "MaintenanceWindow"  # outside the set's maintenance window: until it opens
    CHECKPOINT = "Checkpoint"  # a checkpoint reached: baking, or waiting for `approve`
    ALARM_UNREACHABLE = "AlarmUnreachable"  # an alarm cannot be read: hold, read again, then fault


class UpgradeWait(AzureModel):
    """Why no batch is starting now, since when and until when at the most (not in Azure's
    shape: Azure has no way to say that an upgrade is holding back).

    `kind`, `by` and `instances` came later: a wait without a kind is a health recovery."""

    reason: str
    since: AwareDatetime
    until: AwareDatetime | None = None
    kind: UpgradeWaitKind | None = None
    by: str | None = Field(default=None, description="who paused the upgrade (kind Paused)")
    instances: list[str] | None = Field(
        default=None, description="the instances still awaiting approval (kind PendingApproval)"
    )


class ReportedRollingUpgradePolicy(AzureModel):
    """A rolling upgrade policy as a status reports it: read as it is, never checked, fields
    this product does not know kept."""

    model_config = ConfigDict(extra="allow")

    max_batch_instance_percent: int | None = None
    max_unhealthy_instance_percent: int | None = None
    max_unhealthy_upgraded_instance_percent: int | None = None
    pause_time_between_batches: str | None = None
    enable_cross_zone_upgrade: bool | None = None
    prioritize_unhealthy_instances: bool | None = None
    rollback_failed_instances_on_policy_breach: bool | None = None
    max_surge: bool | None = None
    max_batch_instance_count: int | None = None
    max_unhealthy_instance_count: int | None = None
    max_unhealthy_upgraded_instance_count: int | None = None


def _every_field_known(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # Ours only when this product knows every field: a policy with others is reported as it is
    # (those kept), not stripped of them.
    if isinstance(value, dict):
        return RollingUpgradePolicy.model_validate(value, extra="forbid")
    return handler(value)


# Ours when it is one this product would run with, else as reported.
StatusPolicy = Annotated[
    Annotated[RollingUpgradePolicy, WrapValidator(_every_field_known)] | ReportedRollingUpgradePolicy,
    Field(union_mode="left_to_right"),
]


class ExtensionUpgradeStatus(AzureModel):
    """One extension of an extension upgrade (not in Azure's shape, where each extension is an
    upgrade of its own): how far it moved, in the four progress counts, and why it stopped."""

    name: str
    version: str = Field(description="the version it moves to")
    code: RollingUpgradeStatusCode
    progress: RollingUpgradeProgressInfo = Field(
        description="instances it moved on (successful), failed on (rolled back or left failed), "
        "being installed on, and not tried on yet or any more (pending)"
    )
    error: ApiError | None = None


class RollbackMethod(StrEnum):
    """What rolling an instance back does: what Azure lets an orchestrator do per mode."""

    REIMAGE_TO_PREVIOUS_VERSION = "ReimageToPreviousVersion"
    OS_DISK_SWAP = "OsDiskSwap"
    REINSTALL_PREVIOUS_VERSIONS = "ReinstallPreviousVersions"


# Said where users read about rollback: `status`, the status's and history's rollbackInfo.
ROLLBACK_DESCRIPTIONS = {
    RollbackMethod.REIMAGE_TO_PREVIOUS_VERSION: (
        "Uniform has no call to restore an OS disk: a rolled-back instance is reimaged back to the "
        "image version it had, on a new OS disk; the previous OS disk is not restored and its "
        "contents are lost (data disks are kept)"
    ),
    RollbackMethod.OS_DISK_SWAP: (
        "Flexible: a rolled-back VM is deallocated, its previous OS disk swapped back in and the VM "
        "started; the disk's contents are kept as they were before the upgrade"
    ),
    RollbackMethod.REINSTALL_PREVIOUS_VERSIONS: (
        "a rolled-back instance gets the extension versions it had reinstalled"
    ),
}
# An instance's message once rolled back, per method.
ROLLED_BACK_BY = {
    RollbackMethod.REIMAGE_TO_PREVIOUS_VERSION: (
        "reimaged back to the previous image version (a new OS disk: its contents are lost)"
    ),
    RollbackMethod.OS_DISK_SWAP: "restored to the previous OS disk (swapped back in, its contents kept)",
}


def os_rollback_method(restore_point: str) -> RollbackMethod:
    """How an instance with this restore point (InstanceView.restore_point) is rolled back."""
    if restore_point.startswith(IMAGE_RESTORE_POINT_PREFIX):
        return RollbackMethod.REIMAGE_TO_PREVIOUS_VERSION
    return RollbackMethod.OS_DISK_SWAP


class RollbackStatusInfo(AzureModel):
    """Azure's rollbackInfo of an upgrade's history entry; also in the status (Azure's has none).

    `rollbackMethod` and `rollbackDescription` are not Azure's: what a rollback does on this
    scale set (None before the upgrade has read it)."""

    successfully_rolledback_instance_count: int = 0
    failed_rolledback_instance_count: int = 0
    rollback_method: RollbackMethod | None = None
    rollback_description: str | None = None


class RollingUpgradeStatusProperties(AzureModel):
    policy: StatusPolicy | None = None
    running_status: RollingUpgradeRunningStatus
    progress: RollingUpgradeProgressInfo
    error: ApiError | None = None
    # What holds the next batch back right now: a health recovery, an approval, a pause.
    wait: UpgradeWait | None = None
    # The pause in effect (kind Paused: who, why, since when), from the `pause` signal until
    # `resume`: also while the batch in flight still finishes, before it shows as the wait.
    paused: UpgradeWait | None = None
    # An extension upgrade: each extension's own progress and error.
    extensions: list[ExtensionUpgradeStatus] | None = None
    # Not in Azure's Get Latest: once an instance was rolled back, the rollbacks so far and
    # what a rollback does on this scale set.
    rollback_info: RollbackStatusInfo | None = None
    # Not in Azure's: the alarm gates as last read (name, state, value, readAt; why, if unreachable).
    alarms: list[AlarmReading] | None = None
    # Not in Azure's: the checkpoints passed (rollingUpgradePolicy.checkpoints), each in a line.
    checkpoints: list[str] | None = None
    # Not in Azure's: a rollback (`upgradectl rollback`), the upgrade it undoes.
    rollback_of: str | None = None


class RollingUpgradeStatusInfo(AzureModel):
    """What `upgradectl status --json` prints and the workflow's `status` query returns."""

    id: str | None = None
    name: str | None = None
    type: str = "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades"
    location: str | None = None
    tags: dict[str, str] | None = None
    # Always present in what the workflows report; Azure's minimal answer has none.
    properties: RollingUpgradeStatusProperties | None = None


class UpgradeOperationHistoryStatus(AzureModel):
    code: RollingUpgradeStatusCode
    start_time: AwareDatetime
    end_time: AwareDatetime | None = None


class UpgradeOperationHistoricalStatusInfoProperties(AzureModel):
    running_status: UpgradeOperationHistoryStatus
    progress: RollingUpgradeProgressInfo
    error: ApiError | None = None
    started_by: str = "Unknown"
    target_image_reference: dict[str, str] | None = None
    # Not in Azure's OS upgrade history: an extension upgrade's extensions and versions.
    extensions: list[dict[str, str]] | None = None
    rollback_info: RollbackStatusInfo = Field(default_factory=RollbackStatusInfo)
    # Not in Azure's either: MaxSurge, each old instance and the new one that replaced it.
    replaced_instances: dict[str, str] | None = None
    # Not in Azure's either: a rollback (`upgradectl rollback`), the upgrade it undid.
    rollback_of: str | None = None


class UpgradeOperationHistoricalStatusInfo(AzureModel):
    """One entry of `upgradectl history` (Azure: Get OS Upgrade History)."""

    properties: UpgradeOperationHistoricalStatusInfoProperties
    type: str = "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades"
    location: str | None = None
