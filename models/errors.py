"""Error codes a user sees: Azure's for the upgrade, ours for refusals and instance failures."""

from __future__ import annotations

from enum import StrEnum


class UpgradeErrorCode(StrEnum):
    """Azure's rolling upgrade error codes (the `error.code` of the status)."""

    IN_PROGRESS_WITH_FAILED_VMS = "RollingUpgradeInProgressWithFailedUpgradedVMs"
    UPGRADED_UNHEALTHY_EXCEEDED = "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade"
    UNHEALTHY_EXCEEDED_IN_UPGRADE = "MaxUnhealthyInstancePercentExceededInRollingUpgrade"
    UNHEALTHY_EXCEEDED_BEFORE_UPGRADE = "MaxUnhealthyInstancePercentExceededBeforeRollingUpgrade"
    INTERNAL_EXECUTION_ERROR = "InternalExecutionError"
    TIMEOUT = "RollingUpgradeTimeoutError"


class RefusalCode(StrEnum):
    """Why an upgrade was refused before it touched anything."""

    SCALE_SET_NOT_FOUND = "ScaleSetNotFound"
    IMAGE_NOT_FOUND = "ImageNotFound"
    IMAGE_NOT_REPLICATED = "ImageNotReplicatedToRegion"
    IMAGE_DEFINITION_CHANGED = "ImageDefinitionChangeNotAllowed"
    UPGRADE_IN_PROGRESS = "RollingUpgradeInProgress"
    # Azure would roll the scale set itself, at the same time as us.
    UPGRADE_MODE_NOT_MANUAL = "UpgradePolicyModeNotManual"
    AUTOMATIC_OS_UPGRADE_ENABLED = "AutomaticOSUpgradeEnabled"


class FailureCause(StrEnum):
    """Whether an instance failed its health probe or the back end failed an operation."""

    HEALTH = "Health"
    INFRASTRUCTURE = "Infrastructure"


# Error types the fleet activities raise; the workflows match on them by name.
TRANSIENT_FLEET_ERROR = "FleetTransientError"
FLEET_OPERATION_FAILED = "FleetOperationFailed"
# Anything an activity did not expect (a malformed answer, a bug): not retried, and it stops
# the upgrade with InternalExecutionError rather than being taken for an instance failure.
UNEXPECTED_ERROR = "UnexpectedError"
