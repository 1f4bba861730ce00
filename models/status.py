"""Azure's RollingUpgradeStatusInfo (REST: Rolling Upgrades - Get Latest), field for field."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from models.base import AzureModel
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


class RollingUpgradeProgressInfo(AzureModel):
    successful_instance_count: int = 0
    failed_instance_count: int = 0
    in_progress_instance_count: int = 0
    pending_instance_count: int = 0

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


class RollingUpgradeStatusProperties(AzureModel):
    policy: RollingUpgradePolicy
    running_status: RollingUpgradeRunningStatus
    progress: RollingUpgradeProgressInfo
    error: ApiError | None = None


class RollingUpgradeStatusInfo(AzureModel):
    """What `upgradectl status --json` prints and the workflow's `status` query returns."""

    id: str | None = None
    name: str | None = None
    type: str = "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades"
    location: str | None = None
    tags: dict[str, str] | None = None
    properties: RollingUpgradeStatusProperties


class UpgradeOperationHistoryStatus(AzureModel):
    code: RollingUpgradeStatusCode
    start_time: AwareDatetime
    end_time: AwareDatetime | None = None


class RollbackStatusInfo(AzureModel):
    """Azure's rollbackInfo of an upgrade's history entry."""

    successfully_rolledback_instance_count: int = 0
    failed_rolledback_instance_count: int = 0


class UpgradeOperationHistoricalStatusInfoProperties(AzureModel):
    running_status: UpgradeOperationHistoryStatus
    progress: RollingUpgradeProgressInfo
    error: ApiError | None = None
    started_by: str = "Unknown"
    target_image_reference: dict[str, str] | None = None
    rollback_info: RollbackStatusInfo = Field(default_factory=RollbackStatusInfo)


class UpgradeOperationHistoricalStatusInfo(AzureModel):
    """One entry of `upgradectl history` (Azure: Get OS Upgrade History)."""

    properties: UpgradeOperationHistoricalStatusInfoProperties
    type: str = "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades"
    location: str | None = None
