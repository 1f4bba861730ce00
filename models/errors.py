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


class AlarmErrorCode(StrEnum):
    """Ours, beside Azure's: an alarm gate stopped the upgrade (models/alarms.py)."""

    FIRED = "AlarmFired"  # an alarm fired: named, with its value
    UNREACHABLE = "AlarmUnreachable"  # alarms could not be read for alarmUnreachableTimeout


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
    # An extension with enableAutomaticUpgrade: Azure upgrades it itself (not enrolled here).
    AUTOMATIC_EXTENSION_UPGRADE_ENABLED = "AutomaticExtensionUpgradeEnabled"
    # Extension upgrades: an extension the model does not have, or no version of its major.
    EXTENSION_NOT_FOUND = "ExtensionNotFound"
    EXTENSION_VERSION_NOT_FOUND = "ExtensionVersionNotFound"
    # Automatic OS upgrades need one health source: the extension or a load balancer probe.
    NO_HEALTH_SOURCE = "HealthSourceRequired"
    # maxSurge on a Flexible set (Azure: not yet supported with automatic OS upgrades).
    MAX_SURGE_NOT_SUPPORTED = "MaxSurgeNotSupported"


class FailureCause(StrEnum):
    """Whether an instance failed its health probe or the back end failed an operation."""

    HEALTH = "Health"
    INFRASTRUCTURE = "Infrastructure"
    # An extension version failed to install or enable on the instance (the change's fault, not
    # the fleet's): rolled back like a health failure.
    INSTALL = "Install"
    # An alarm fired while the instance's batch was in flight (rollbackOnAlarm rolls it back).
    ALARM = "Alarm"


# The causes a rollback answers: the change broke the instance.
ROLLED_BACK_CAUSES = (FailureCause.HEALTH, FailureCause.INSTALL)


# Error types the fleet activities raise; the workflows match on them by name.
TRANSIENT_FLEET_ERROR = "FleetTransientError"
FLEET_OPERATION_FAILED = "FleetOperationFailed"
# An extension's handler failed to install or enable (Azure's code): the instance failed the
# upgrade, and a rollback reinstalls the version it had.
EXTENSION_PROVISIONING_ERROR = "VMExtensionProvisioningError"
# Anything an activity did not expect (a bug): retried until the activity's schedule-to-close,
# so a fixed worker can take over; then it stops the upgrade with InternalExecutionError rather
# than being taken for an instance failure.
UNEXPECTED_ERROR = "UnexpectedError"
