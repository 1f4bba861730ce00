"""Scale sets an upgrade of ours must not touch, and why: pure, shared by the upgrade's admission,
the watcher, the automatic upgrades' enrollment and `upgradectl plan`."""

from __future__ import annotations

from models.errors import RefusalCode
from models.fleet import HealthSource, ScaleSetView
from models.policy import RollingUpgradePolicy
from models.status import ApiError


def rolled_by_azure(scale_set: ScaleSetView) -> ApiError | None:
    """A scale set Azure itself rolls when its model or image changes: upgrading it too would
    run two upgrades at once. The refusal names the field and how to change it."""
    change = f"az vmss update --resource-group <group> --name {scale_set.name} --set"
    if scale_set.automatic_os_upgrade:
        return ApiError(
            message=f"scale set {scale_set.name!r} has "
            "upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade on: Azure upgrades its "
            "OS image by itself. Turn it off to upgrade it here "
            f"({change} upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade=false)",
            code=RefusalCode.AUTOMATIC_OS_UPGRADE_ENABLED,
        )
    if scale_set.upgrade_mode != "Manual":
        return ApiError(
            message=f"scale set {scale_set.name!r} has upgradePolicy.mode {scale_set.upgrade_mode}: Azure "
            "rolls its instances by itself whenever its model changes. Set it to Manual to upgrade "
            f"it here ({change} upgradePolicy.mode=Manual)",
            code=RefusalCode.UPGRADE_MODE_NOT_MANUAL,
        )
    return None


def health_source_refusal(scale_set: ScaleSetView) -> ApiError | None:
    """Seed 000: automatic OS image upgrades "must use application health probes or Application
    Health extension", and only one of them. The refusal names the missing (or extra) piece."""
    where = f"scale set {scale_set.name!r}"
    if scale_set.health_source == HealthSource.POWER_STATE:
        return ApiError(
            message=f"{where} has no health source: automatic OS image upgrades need the Application "
            "Health extension (ApplicationHealthLinux or ApplicationHealthWindows in "
            "virtualMachineProfile.extensionProfile) or a load balancer health probe "
            "(virtualMachineProfile.networkProfile.healthProbe.id). Add one, then enable again",
            code=RefusalCode.NO_HEALTH_SOURCE,
        )
    if scale_set.both_health_sources:
        return ApiError(
            message=f"{where} has both the Application Health extension and a load balancer health "
            f"probe ({scale_set.health_probe_id}): only one source of health can be used for automatic "
            "OS image upgrades. Remove one (the extension, or "
            "virtualMachineProfile.networkProfile.healthProbe), then enable again",
            code=RefusalCode.NO_HEALTH_SOURCE,
        )
    return None


def extension_enrollment_refusal(scale_set: ScaleSetView, name: str) -> ApiError | None:
    """Why the extension `name` of the scale set cannot be enrolled in automatic extension
    upgrades: the model lacks it, or its enableAutomaticUpgrade is on (Azure's own Automatic
    Extension Upgrade then upgrades it, at the same time as a rollout would). The refusal names
    the field and the az command that turns it off."""
    extension = next((e for e in scale_set.extensions if e.name.lower() == name.lower()), None)
    if extension is None:
        known = ", ".join(sorted(e.name for e in scale_set.extensions)) or "none"
        return ApiError(
            message=f"--extension: scale set {scale_set.name!r} has no extension {name!r} in its model "
            f"(its extensions: {known})",
            code=RefusalCode.EXTENSION_NOT_FOUND,
        )
    if not extension.enable_automatic_upgrade:
        return None
    return ApiError(
        message=f"extension {extension.name!r} of scale set {scale_set.name!r} has enableAutomaticUpgrade "
        "on: Azure upgrades it by itself. Turn it off to enroll it here (az vmss extension set "
        f"--resource-group <group> --vmss-name {scale_set.name} --name {extension.type_} --publisher "
        f"{extension.publisher} --extension-instance-name {extension.name} --version "
        f"{extension.type_handler_version} --enable-auto-upgrade false)",
        code=RefusalCode.AUTOMATIC_EXTENSION_UPGRADE_ENABLED,
    )


def max_surge_refusal(scale_set: ScaleSetView, policy: RollingUpgradePolicy) -> ApiError | None:
    """Azure: automatic OS upgrades with MaxSurge on Flexible orchestration are "not yet
    supported"; here a Flexible set is upgraded in place only, whoever starts it."""
    if not policy.max_surge or scale_set.orchestration_mode != "Flexible":
        return None
    return ApiError(
        message=f"rollingUpgradePolicy.maxSurge: scale set {scale_set.name!r} has Flexible orchestration, "
        "where MaxSurge is not yet supported (Azure: not with automatic OS upgrades). Upgrade it in place "
        "(maxSurge false)",
        code=RefusalCode.MAX_SURGE_NOT_SUPPORTED,
    )
