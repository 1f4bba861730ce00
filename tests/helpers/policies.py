"""Upgrade policy documents as Azure writes them, for the tests that read them."""

SEED_POLICY = {
    # The ARM template block of Azure's automatic OS image upgrade page (seed 000), as written
    # there, with the automaticOSUpgradePolicy fields of the REST schema added.
    "upgradePolicy": {
        "mode": "Automatic",
        "RollingUpgradePolicy": {
            "BatchInstancePercent": 20,
            "MaxUnhealthyInstancePercent": 25,
            "MaxUnhealthyUpgradedInstancePercent": 25,
            "PauseTimeBetweenBatches": "PT0S",
        },
        "automaticOSUpgradePolicy": {
            "enableAutomaticOSUpgrade": True,
            "disableAutomaticRollback": False,
            "useRollingUpgradePolicy": True,
            "osRollingUpgradeDeferral": False,
        },
    }
}
