"""The pure parts of the Azure back end (fleet/azure) on their own: settings, image version choice,
restore points, custom metrics, coalesced health reads, the credential chain, the maintenance
window of a set's assigned configurations. (Against the
emulator's ARM API: tests/fleet/test_azure_backend.py.)"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet.azure import AzureSettings, AzureSettingsError, parse_restore_point, same_restore_point
from fleet.azure.images import pick_gallery_version, pick_marketplace_version
from fleet.azure.set_reads import CoalescingReader
from fleet.azure.views import custom_metrics, maintenance_window_of
from fleet.errors import FleetRequestError
from fleet.restore_points import image_restore_point
from models.fleet import HealthProbe, HealthState
from models.image import ImageReference
from tests.helpers.arm import GALLERY_IMAGE, MARKET, PROVIDER, RG, SUB

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process

# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_are_the_emulators() -> None:
    settings = AzureSettings.from_env({})
    assert settings.subscription_id == SUB
    assert settings.resource_group == RG
    assert settings.endpoint == "https://management.azure.com"
    assert settings.ca_bundle is None and settings.token is None


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("AZURE_SUBSCRIPTION_ID", "my-subscription", "GUID"),
        ("AZURE_RESOURCE_GROUP", "bad/group", "resource group name"),
        ("AZURE_RESOURCE_GROUP", "ends-with-a-period.", "not ending in a period"),
        ("AZURE_ARM_ENDPOINT", "http://127.0.0.1:8780", "https://"),
        ("AZURE_CA_BUNDLE", "/nonexistent/ca.pem", "existing PEM file"),
    ],
)
def test_settings_errors_name_the_variable(variable: str, value: str, says: str) -> None:
    with pytest.raises(AzureSettingsError) as caught:
        AzureSettings.from_env({variable: value})
    assert variable in str(caught.value)
    assert says in str(caught.value)
    assert value in str(caught.value)


# --- image versions -----------------------------------------------------------------------------


def gallery_version(
    name: str,
    regions: tuple[str, ...] = ("West Europe",),
    *,
    exclude: bool = False,
    excluded_in: tuple[str, ...] = (),
    end_of_life: str | None = None,
) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "excludeFromLatest": exclude,
        "targetRegions": [{"name": r, "excludeFromLatest": r in excluded_in} for r in regions],
    }
    if end_of_life:
        profile["endOfLifeDate"] = end_of_life
    return {"name": name, "properties": {"publishingProfile": profile, "provisioningState": "Succeeded"}}


LATEST_GALLERY = ImageReference(id=GALLERY_IMAGE)


def test_gallery_latest_is_the_numerically_highest() -> None:
    versions = [gallery_version(v) for v in ("1.9.0", "1.10.0", "1.2.0")]
    assert pick_gallery_version(LATEST_GALLERY, versions, "westeurope") == "1.10.0"


def test_gallery_latest_skips_excluded_end_of_life_and_unreplicated_versions() -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    versions = [
        gallery_version("1.1.0", end_of_life=future),
        gallery_version("1.2.0", ("West Europe", "North Europe"), excluded_in=("North Europe",)),
        gallery_version("1.3.0", exclude=True),
        gallery_version("1.4.0", excluded_in=("West Europe",)),
        gallery_version("1.5.0", end_of_life=past),
        gallery_version("1.6.0", ("East US",)),
    ]
    # Region names compare case- and space-insensitively.
    assert pick_gallery_version(LATEST_GALLERY, versions, "westeurope") == "1.2.0"
    assert pick_gallery_version(LATEST_GALLERY, versions, "West europe") == "1.2.0"
    with pytest.raises(FleetRequestError, match="ImageNotFound"):  # its one version is excluded there
        pick_gallery_version(LATEST_GALLERY, versions, "northeurope")
    assert pick_gallery_version(LATEST_GALLERY, versions, "eastus") == "1.6.0"


def test_gallery_exact_version_must_exist_and_be_replicated() -> None:
    versions = [gallery_version("1.0.0"), gallery_version("2.0.0", ("East US",))]
    with pytest.raises(FleetRequestError) as missing:
        pick_gallery_version(LATEST_GALLERY.model_copy(update={"version": "3.0.0"}), versions, "westeurope")
    assert missing.value.code == "ImageNotFound"
    assert "1.0.0, 2.0.0" in missing.value.message
    with pytest.raises(FleetRequestError) as elsewhere:
        pick_gallery_version(LATEST_GALLERY.model_copy(update={"version": "2.0.0"}), versions, "westeurope")
    assert elsewhere.value.code == "ImageNotReplicatedToRegion"
    exact = LATEST_GALLERY.model_copy(update={"version": "2.0.0"})
    assert pick_gallery_version(exact, versions, "East US") == "2.0.0"


def test_marketplace_versions_sort_numerically() -> None:
    image = ImageReference(**MARKET)
    assert pick_marketplace_version(image, ["8.10.0", "8.9.0", "8.2.1"], "westeurope") == "8.10.0"
    with pytest.raises(FleetRequestError, match="ImageNotFound"):
        pick_marketplace_version(image.model_copy(update={"version": "9.0"}), ["8.9.0"], "westeurope")


# --- restore points and custom metrics ----------------------------------------------------------


def test_restore_points_parse_and_compare() -> None:
    disk = f"{PROVIDER}/disks/web-0_osdisk_1"
    assert parse_restore_point(disk).os_disk_id == disk
    assert same_restore_point(disk, disk.upper())
    before = ImageReference(**MARKET, version="latest", exact_version="1.2.0")
    after_restore = ImageReference(**MARKET, version="1.2.0", exact_version="1.2.0")
    point = image_restore_point(before)
    parsed = parse_restore_point(point).image
    assert parsed is not None and parsed.exact_version == "1.2.0"
    assert same_restore_point(point, image_restore_point(after_restore))
    assert not same_restore_point(point, image_restore_point(before.at_version("1.3.0")))
    with pytest.raises(ValueError):
        parse_restore_point("yesterday's disk")


@pytest.mark.parametrize(
    ("message", "phase", "skip"),
    [
        ('{"rollingUpgrade": {"PhaseOrderingNumber": 2, "SkipUpgrade": true}}', 2, True),
        ("not json", None, False),
        ('["a list"]', None, False),
        ('{"rollingUpgrade": {"PhaseOrderingNumber": "first"}}', None, False),
        (None, None, False),
    ],
)
def test_custom_metrics_tolerate_garbage(message: str | None, phase: int | None, skip: bool) -> None:
    status = {"code": "ComponentStatus/CustomMetrics/succeeded", "message": message}
    metrics = custom_metrics({"extensions": [{"substatuses": [status]}]})
    assert (metrics.phase_ordering_number, metrics.skip_upgrade) == (phase, skip)


# --- coalesced health reads ---------------------------------------------------------------------


async def test_coalescing_reader_shares_one_read_but_never_one_begun_before_the_caller_asked() -> None:
    reads: list[int] = []
    state = [HealthState.HEALTHY]

    async def read(scale_set: str) -> dict[str, HealthProbe]:
        reads.append(len(reads))
        seen = state[0]  # what the fleet shows when the read starts
        await asyncio.sleep(0.05)
        return {"0": HealthProbe(state=seen)}

    reader = CoalescingReader(read)
    results = await asyncio.gather(*(reader.get("web") for _ in range(50)))
    assert len(reads) == 1 and all(r["0"].state == HealthState.HEALTHY for r in results)

    # A caller arriving while a read is under way waits for the next one: it sees the change.
    first = asyncio.create_task(reader.get("web"))
    await asyncio.sleep(0.07)  # the first read has started (after the gathering window)
    state[0] = HealthState.INITIALIZING
    late = await reader.get("web")
    assert (await first)["0"].state == HealthState.HEALTHY
    assert late["0"].state == HealthState.INITIALIZING
    assert len(reads) == 3


async def test_coalescing_reader_starts_reads_of_one_set_at_least_min_gap_apart() -> None:
    # Waiters that started at different moments do not each bring a read of their own.
    starts: list[float] = []

    async def read(scale_set: str) -> dict[str, HealthProbe]:
        starts.append(asyncio.get_running_loop().time())
        return {}

    reader = CoalescingReader(read)
    for _ in range(3):
        await reader.get("web", min_gap=0.3)
        await asyncio.sleep(0.1)  # the next waiter asks 0.1 s after the last read
    assert len(starts) == 3
    assert all(later - earlier >= 0.29 for earlier, later in itertools.pairwise(starts))
    asked = asyncio.get_running_loop().time()
    await reader.get("other", min_gap=0.3)  # another set is not held back
    assert starts[-1] - asked < 0.2


async def test_coalescing_reader_survives_a_cancelled_caller() -> None:
    async def read(scale_set: str) -> dict[str, HealthProbe]:
        await asyncio.sleep(0.05)
        return {}

    reader = CoalescingReader(read)
    first = asyncio.create_task(reader.get("web"))
    second = asyncio.create_task(reader.get("web"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == {}


async def test_without_a_token_the_credential_is_azures_chain() -> None:
    from azure.identity.aio import DefaultAzureCredential

    from fleet.azure.credentials import StaticTokenCredential, credential_for

    chain = credential_for(AzureSettings())
    assert isinstance(chain, DefaultAzureCredential)
    await chain.close()
    static = credential_for(AzureSettings(token="abc"))
    assert isinstance(static, StaticTokenCredential)
    assert (await static.get_token("https://management.azure.com/.default")).token == "abc"


# --- maintenance configurations -----------------------------------------------------------------

NIGHTLY = {"startDateTime": "2025-01-01 22:00", "duration": "05:00", "timeZone": "UTC", "recurEvery": "Day"}


def configuration(scope: str, window: dict[str, Any], name: str = "c") -> dict[str, Any]:
    return {"id": f"/x/{name}", "properties": {"maintenanceScope": scope, "maintenanceWindow": window}}


def test_the_os_image_configuration_is_the_window_other_scopes_are_not() -> None:
    assert maintenance_window_of("web", []) is None
    assert maintenance_window_of("web", [configuration("InGuestPatch", {"duration": "03:00"})]) is None
    found = maintenance_window_of(
        "web", [configuration("InGuestPatch", {}), configuration("osimage", NIGHTLY)]
    )
    assert found is not None and found.to_json() == NIGHTLY


def test_an_os_image_window_that_breaks_azure_s_rules_is_refused_naming_the_field() -> None:
    # Azure's own example has an OSImage configuration recurring weekly: not one an upgrade keeps to.
    weekly = configuration("OSImage", {**NIGHTLY, "recurEvery": "Week Saturday,Sunday"}, name="weekends")
    with pytest.raises(FleetRequestError) as refused:
        maintenance_window_of("web", [weekly])
    assert refused.value.code == "InvalidMaintenanceConfiguration"
    assert "scale set web (/x/weekends): properties.maintenanceWindow.recurEvery: must be Day" in (
        refused.value.message
    )
