"""`upgradectl history`: Azure's OS upgrade history from Temporal visibility."""

from __future__ import annotations

import uuid
from typing import Any

from models.fleet import FaultSpec, ScaleSetSpec
from models.image import ImageReference
from models.status import ROLLBACK_DESCRIPTIONS, RollbackMethod
from tests.helpers.upgrades import INSTANT, eventually

QUICK = ["--health-interval", "1", "--health-wait-timeout", "PT2S"]
# Its own SKU, so the versions it publishes stay out of the gallery other tests read; a reimage
# moves an instance to another version of its own image, so the scale set is on that SKU too.
V1 = ImageReference.parse("Contoso:web-os:history-test:2024.11.01")
V2 = ImageReference.parse("Contoso:web-os:history-test:2024.12.01")
V3 = ImageReference.parse("Contoso:web-os:history-test:2024.12.24")


async def test_history_lists_completed_faulted_and_cancelled_upgrades_in_azures_shape(upgradectl, fleet):
    name = f"ss-{uuid.uuid4().hex[:10]}"
    await fleet.create_scale_set(
        ScaleSetSpec(
            name=name,
            capacity=5,
            image_reference=V1,
            timing=INSTANT,
            faults=FaultSpec(unhealthy_images=[V3.version]),
        )
    )
    for image in (V1, V2, V3):
        await fleet.publish_image(image)

    faulted = await upgradectl("start", "--scale-set", name, "--image", str(V3), "--wait", *QUICK)
    assert faulted.code == 1, faulted.err
    before = len(await fleet.operations(name))  # instance 0 reimaged to V3, then back to V1
    started = await upgradectl(
        "start", "--scale-set", name, "--image", str(V2), "--pause-time-between-batches", "PT1H", *QUICK
    )
    assert started.code == 0
    # The first batch (one instance) is done; the upgrade is in its pause.
    await eventually(lambda: fleet.operations(name), lambda ops: len(ops) > before)
    assert (await upgradectl("cancel", name)).code == 0
    assert (await upgradectl("watch", name)).code == 2
    completed = await upgradectl("start", "--scale-set", name, "--image", str(V2), "--wait", *QUICK)
    assert completed.code == 0
    # Three more (nothing left to upgrade, so they complete at once): six in all.
    for _ in range(3):
        assert (await upgradectl("start", "--scale-set", name, "--image", str(V2), "--wait")).code == 0

    async def listed(*flags: str) -> list[dict[str, Any]]:
        result = await upgradectl("history", name, "--json", *flags)
        assert result.code == 0, result.err
        entries: list[dict[str, Any]] = result.json()["value"]
        return entries

    everything = await eventually(lambda: listed("--all"), lambda entries: len(entries) == 6, timeout=30)
    recent = await listed()
    assert recent == everything[:5]  # newest first, the last five by default

    codes = [entry["properties"]["runningStatus"]["code"] for entry in everything]
    assert codes == ["Completed"] * 4 + ["Cancelled", "Faulted"]
    oldest = everything[-1]
    assert oldest["type"] == "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades"
    properties = oldest["properties"]
    assert set(properties) == {
        "runningStatus",
        "progress",
        "error",
        "startedBy",
        "targetImageReference",
        "rollbackInfo",
    }
    assert set(properties["runningStatus"]) == {"code", "startTime", "endTime"}
    assert properties["rollbackInfo"] == {
        "successfullyRolledbackInstanceCount": 1,
        "failedRolledbackInstanceCount": 0,
        # Not Azure's: what the rollback did on this Uniform set, which has no OS disk restore.
        "rollbackMethod": "ReimageToPreviousVersion",
        "rollbackDescription": ROLLBACK_DESCRIPTIONS[RollbackMethod.REIMAGE_TO_PREVIOUS_VERSION],
    }
    assert properties["error"]["code"] == "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade"
    assert properties["targetImageReference"]["exactVersion"] == V3.version
    assert properties["startedBy"] == "User"
    cancelled = everything[-2]["properties"]
    assert cancelled["progress"]["pendingInstanceCount"] > 0
    assert cancelled["runningStatus"]["endTime"] > cancelled["runningStatus"]["startTime"]

    table = await upgradectl("history", name)
    assert "Cancelled" in table.out and "Faulted" not in table.out and "last five" in table.out
    assert "Faulted" in (await upgradectl("history", name, "--all")).out
