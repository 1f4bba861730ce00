"""The Azure back end: FleetBackend on Azure Resource Manager with azure-mgmt-compute."""

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings, AzureSettingsError
from fleet.restore_points import RestorePoint, parse_restore_point, same_restore_point

__all__ = [
    "AzureFleet",
    "AzureSettings",
    "AzureSettingsError",
    "RestorePoint",
    "parse_restore_point",
    "same_restore_point",
]
