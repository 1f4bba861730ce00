"""Scale sets an upgrade of ours must not touch, and why: pure, shared by the upgrade's admission,
the watcher and `upgradectl plan`."""

from __future__ import annotations

from models.errors import RefusalCode
from models.fleet import ScaleSetView
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
