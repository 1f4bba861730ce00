"""Maintenance configurations (Microsoft.Maintenance) through the real path: made on the emulator
as `az maintenance` makes them, read by the Azure back end (fleet/azure) over HTTPS as the
scale set's `maintenance_window`. The pure reading of the configurations:
tests/fleet/test_azure_backend_parts.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from fleet.azure import AzureFleet, AzureSettings
from fleet.azure.read_pacing import ReadPacers
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetRequestError
from models.fleet import ScaleSetSpec
from models.image import ImageReference
from models.maintenance import MaintenanceWindow
from starter.processes import EmulatorAddress
from tests.helpers.maintenance import NIGHTLY, MaintenanceArm, assignments_path, configuration_id

IMAGE = ImageReference.parse("Canonical:ubuntu-24_04-lts:server:1.0.0")


@pytest.fixture
async def arm(emulator: EmulatorAddress) -> AsyncIterator[MaintenanceArm]:
    async with MaintenanceArm(emulator) as client:
        yield client


async def new_set(fleet: EmulatorAdmin) -> str:
    name = f"mw-{uuid.uuid4().hex[:8]}"
    await fleet.create_scale_set(ScaleSetSpec(name=name, capacity=1, image_reference=IMAGE))
    return name


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_a_set_without_an_assignment_has_no_window(fleet: EmulatorAdmin, azure: AzureFleet) -> None:
    name = await new_set(fleet)
    assert (await azure.get_scale_set(name)).maintenance_window is None


async def test_the_assigned_os_image_configuration_is_the_set_s_window(
    emulator: EmulatorAddress, fleet: EmulatorAdmin, arm: MaintenanceArm
) -> None:
    name = await new_set(fleet)
    # Guest patching governs something else: assigned alone, no window for OS image upgrades.
    patching = unique("patching")
    await arm.configure(name, patching, {**NIGHTLY, "duration": "03:00"}, scope="InGuestPatch")
    settings = AzureSettings.from_env(emulator.env())
    async with AzureFleet(settings, pacers=ReadPacers()) as azure:
        assert (await azure.get_scale_set(name)).maintenance_window is None
        nightly = unique("nightly")
        await arm.configure(name, nightly, {**NIGHTLY, "recurEvery": "1Day", "duration": "5:00"})
        azure.read_pacer.reads = 0
        view = await azure.get_scale_set(name)
        # The set, its instances, its assignments and the two configurations: every read paced.
        assert azure.read_pacer.reads == 5
    assert view.maintenance_window == MaintenanceWindow.model_validate(NIGHTLY)
    assert view.maintenance_window.recur_every == "Day"
    assert "2023-04-01" in await fleet.api_versions()


async def test_an_assignment_left_behind_by_a_deleted_configuration_is_no_window(
    fleet: EmulatorAdmin, azure: AzureFleet, arm: MaintenanceArm
) -> None:
    name = await new_set(fleet)
    configuration = unique("gone")
    await arm.configure(name, configuration, NIGHTLY)
    assert (await azure.get_scale_set(name)).maintenance_window is not None
    deleted = await arm.request("DELETE", configuration_id(configuration))
    assert deleted.status_code == 200
    assert (await azure.get_scale_set(name)).maintenance_window is None


async def test_two_os_image_configurations_are_refused_naming_both(
    fleet: EmulatorAdmin, azure: AzureFleet, arm: MaintenanceArm
) -> None:
    name = await new_set(fleet)
    first, second = unique("first"), unique("second")
    await arm.configure(name, first, NIGHTLY)
    await arm.configure(name, second, {**NIGHTLY, "timeZone": "UTC"})
    with pytest.raises(FleetRequestError) as refused:
        await azure.get_scale_set(name)
    assert refused.value.code == "InvalidMaintenanceConfiguration"
    assert first in refused.value.message and second in refused.value.message


@pytest.mark.parametrize(
    ("window", "field"),
    [
        pytest.param(
            {**NIGHTLY, "duration": "04:00"}, "properties.maintenanceWindow.duration", id="duration"
        ),
        pytest.param(
            {**NIGHTLY, "recurEvery": "Week Saturday"}, "properties.maintenanceWindow.recurEvery", id="weekly"
        ),
        pytest.param({**NIGHTLY, "timeZone": "Nowhere"}, "properties.maintenanceWindow.timeZone", id="zone"),
        pytest.param(
            {**NIGHTLY, "startDateTime": "01/01/2025 22:00"},
            "properties.maintenanceWindow.startDateTime",
            id="date",
        ),
    ],
)
async def test_the_emulator_refuses_an_os_image_window_as_azure_does(
    arm: MaintenanceArm, window: dict[str, str], field: str
) -> None:
    answer = await arm.put_configuration(unique("bad"), window)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "InvalidParameter" and error["message"].startswith(f"{field}: must be")


async def test_the_emulator_answers_as_arm_does(fleet: EmulatorAdmin, arm: MaintenanceArm) -> None:
    name = await new_set(fleet)
    configuration = unique("Nightly")
    answer = await arm.put_configuration(configuration, {**NIGHTLY, "duration": "5:00"})
    assert answer.status_code == 200
    document = answer.json()
    assert document["id"] == configuration_id(configuration)
    assert document["type"] == "Microsoft.Maintenance/maintenanceConfigurations"
    assert document["properties"]["maintenanceWindow"] == {**NIGHTLY, "recurEvery": "Day"}
    # Names are case-insensitive.
    assert (await arm.request("GET", configuration_id(configuration.upper()))).json() == document
    assert (await arm.put_configuration(unique("x"), NIGHTLY, location=None)).json()["error"]["code"] == (
        "LocationRequired"
    )
    missing = await arm.assign(name, "no-such-configuration")
    assert missing.status_code == 404
    assigned = await arm.assign(name, configuration, name="mine")
    assert assigned.json()["properties"]["resourceId"].endswith(f"/virtualMachineScaleSets/{name}")
    listed = (await arm.request("GET", assignments_path(name))).json()["value"]
    assert [a["name"] for a in listed] == ["mine"]
    assert (await arm.request("GET", assignments_path("no-such-set"))).status_code == 404
    # A scale set deleted takes its assignments with it.
    await fleet.delete_scale_set(name)
    await fleet.create_scale_set(ScaleSetSpec(name=name, capacity=1, image_reference=IMAGE))
    assert (await arm.request("GET", assignments_path(name))).json()["value"] == []
