"""The Azure back end (fleet/azure) against the fleet emulator's ARM API over HTTPS. (The pure parts
on their own: tests/fleet/test_azure_backend_parts.py.)"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fleet.azure import AzureFleet, AzureSettings, parse_restore_point, same_restore_point
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetRequestError, FleetTransientError
from models.fleet import FaultSpec, FleetOperation, HealthState, OperationKind, OperationStatus, ScaleSetSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings
from starter.processes import emulator_ca_file, emulator_url, start_emulator, stop
from tests.helpers.arm import GALLERY_IMAGE, MARKET, PROVIDER
from tests.helpers.upgrades import eventually

FAST = {
    "reimageSeconds": [0.2, 0.4],
    "restoreSeconds": [0.2, 0.4],
    "bootSeconds": [0.1, 0.2],
    "powerSeconds": [0.2, 0.4],
}
PROBE = ApplicationHealthSettings(interval_in_seconds=2)


# --- against the emulator -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulator:
    """The emulator's ARM endpoint and its admin API, with scenario shorthands."""

    def __init__(self, url: str, ca_file: Path, admin: EmulatorAdmin) -> None:
        self.url = url
        self.ca_file = ca_file
        self.admin = admin

    def settings(self) -> AzureSettings:
        return AzureSettings(endpoint=self.url, ca_bundle=str(self.ca_file), token="emulator-token")

    async def create(self, name: str, **spec: Any) -> None:
        """A scale set of 4 on MARKET 1.0.0 (create publishes its image) unless told otherwise."""
        body = {"name": name, "location": "westeurope", "capacity": 4, "timing": FAST, **spec}
        body.setdefault("imageReference", {**MARKET, "version": "1.0.0"})
        await self.admin.create_scale_set(ScaleSetSpec.model_validate(body))

    async def publish(self, image: dict[str, Any], regions: list[str] | None = None, **options: Any) -> None:
        await self.admin.publish_image(ImageReference.model_validate(image), regions, **options)

    async def faults(self, name: str, **faults: Any) -> None:
        await self.admin.set_faults(name, FaultSpec.model_validate(faults))


@pytest.fixture(scope="module")
async def emulator(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Emulator]:
    folder = tmp_path_factory.mktemp("azure-emulator")
    port = _free_port()
    db = folder / "fleet.db"
    process = start_emulator(port, db, folder / "emulator.log")
    try:
        async with EmulatorAdmin(emulator_url(port), emulator_ca_file(db)) as admin:
            yield Emulator(emulator_url(port), emulator_ca_file(db), admin)
    finally:
        stop(process)


@pytest.fixture
async def fleet(emulator: Emulator) -> AsyncIterator[AzureFleet]:
    async with AzureFleet(emulator.settings()) as backend:
        yield backend


async def until_done(fleet: AzureFleet, operation: FleetOperation, timeout: float = 20) -> FleetOperation:
    deadline = time.monotonic() + timeout
    while operation.status == OperationStatus.IN_PROGRESS:
        assert time.monotonic() < deadline, f"operation {operation.operation_id} still in progress"
        await asyncio.sleep(0.2)
        operation = await fleet.get_operation(operation)
    return operation


async def test_calls_reuse_pooled_connections_with_a_ca_bundle(emulator: Emulator, fleet: AzureFleet) -> None:
    # With a CA file azure-core made a new SSL context per request, so every ARM call opened
    # a TLS connection of its own (a handshake on both ends): half the CPU of a large upgrade.
    assert fleet.settings.ca_bundle
    await emulator.create("pooled", capacity=3)
    for _ in range(5):
        await fleet.get_scale_set("pooled")
        await fleet.get_instance("pooled", "1")
    assert fleet.calls["reads"] >= 11
    assert fleet.connections_opened == 1
    # Concurrent calls open a connection each at most, and give it back to the pool.
    await asyncio.gather(*(fleet.get_instance("pooled", str(i % 3)) for i in range(6)))
    await asyncio.gather(*(fleet.get_instance("pooled", str(i % 3)) for i in range(6)))
    assert 1 <= fleet.connections_opened <= 7


async def test_uniform_scale_set_reads(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create(
        "uni-read",
        capacity=6,
        zones=["1", "2", "3"],
        dataDisksPerInstance=2,
        customMetrics={"1": {"PhaseOrderingNumber": 1}, "2": {"PhaseOrderingNumber": 0, "SkipUpgrade": True}},
    )
    view = await fleet.get_scale_set("uni-read")
    assert (view.orchestration_mode, view.upgrade_mode, view.automatic_os_upgrade) == (
        "Uniform",
        "Manual",
        False,
    )
    assert view.location == "westeurope" and view.zones == ["1", "2", "3"]
    assert view.id.lower() == f"{PROVIDER}/virtualMachineScaleSets/uni-read".lower()
    assert view.image_reference.version == "1.0.0"
    ids = [i.instance_id for i in view.instances]
    assert ids == [str(n) for n in range(6)]
    assert {i.zone for i in view.instances} == {"1", "2", "3"}
    assert len({(i.platform_update_domain, i.platform_fault_domain) for i in view.instances}) > 1
    first = view.instances[0]
    assert first.vm_name == "uni-read_0"
    assert first.image_reference.exact_version and first.image_reference.exact_version != "latest"
    assert first.os_disk.name and first.os_disk.image_reference.same_image(first.image_reference)
    assert [d.lun for d in first.data_disks] == [0, 1] and all(d.disk_size_gb > 0 for d in first.data_disks)
    assert (first.provisioning_state, first.power_state) == ("Succeeded", "running")
    assert first.health in (HealthState.HEALTHY, HealthState.INITIALIZING)
    assert view.instances[1].custom_metrics.phase_ordering_number == 1
    assert view.instances[2].custom_metrics.skip_upgrade
    point = parse_restore_point(first.restore_point or "")
    assert point.image is not None and point.image.exact_version == first.image_reference.exact_version
    reading = await fleet.read_health("uni-read")
    assert set(reading.health) == set(ids) and reading.phases == {"1": 1, "2": 0}
    one = await fleet.get_instance("uni-read", "3")
    assert one.instance_id == "3" and one.os_disk == view.instances[3].os_disk


async def test_flexible_scale_set_reads(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("flex-read", orchestrationMode="Flexible", capacity=3, zones=["1", "2"])
    view = await fleet.get_scale_set("flex-read")
    assert view.orchestration_mode == "Flexible" and len(view.instances) == 3
    for instance in view.instances:
        assert instance.vm_name == instance.instance_id
        assert instance.restore_point and instance.restore_point.lower().endswith(
            f"/disks/{instance.os_disk.name}".lower()
        )
        assert instance.zone in ("1", "2")
    again = await fleet.get_instance("flex-read", view.instances[0].instance_id)
    assert again.restore_point == view.instances[0].restore_point
    # A VM of another scale set, or none at all, is not an instance of this one.
    with pytest.raises(FleetRequestError) as gone:
        await fleet.get_instance("flex-read", "no-such-vm")
    assert gone.value.code == "NotFound"


async def test_missing_instance_and_scale_set(fleet: AzureFleet, emulator: Emulator) -> None:
    await emulator.create("uni-missing", capacity=1)
    with pytest.raises(FleetRequestError) as gone:
        await fleet.get_instance("uni-missing", "99")
    assert gone.value.code == "NotFound"
    with pytest.raises(FleetRequestError) as no_set:
        await fleet.get_scale_set("no-such-set")
    assert no_set.value.status == 404 and no_set.value.code in ("ResourceNotFound", "NotFound")


async def test_instance_lists_follow_next_link(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("uni-paged", capacity=7, pageSize=3)
    await emulator.create("flex-paged", capacity=5, pageSize=2, orchestrationMode="Flexible")
    await fleet.get_scale_set("uni-paged")  # the mode, once
    fleet.calls.clear()
    assert len((await fleet.read_health("uni-paged")).health) == 7
    assert fleet.calls["reads"] == 3  # pages of 3, 3, 1
    assert len((await fleet.get_scale_set("flex-paged")).instances) == 5


async def test_resolve_gallery_image(emulator: Emulator, fleet: AzureFleet) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await emulator.publish({"id": GALLERY_IMAGE, "version": "1.9.0"}, ["westeurope"])
    await emulator.publish({"id": GALLERY_IMAGE, "version": "1.10.0"}, ["westeurope", "northeurope"])
    await emulator.publish(
        {"id": GALLERY_IMAGE, "version": "1.11.0"}, ["westeurope"], exclude_from_latest=True
    )
    await emulator.publish({"id": GALLERY_IMAGE, "version": "1.12.0"}, ["westeurope"], end_of_life_date=past)
    await emulator.publish({"id": GALLERY_IMAGE, "version": "1.13.0"}, ["eastus"])
    await emulator.publish(
        {"id": GALLERY_IMAGE, "version": "1.14.0"},
        ["westeurope", "northeurope"],
        excluded_from_latest_in=["westeurope"],
    )
    latest = ImageReference(id=GALLERY_IMAGE)
    assert (await fleet.resolve_image(latest, "westeurope")).exact_version == "1.10.0"
    assert (await fleet.resolve_image(latest, "northeurope")).exact_version == "1.14.0"
    exact = await fleet.resolve_image(latest.model_copy(update={"version": "1.11.0"}), "westeurope")
    assert exact.exact_version == "1.11.0"
    with pytest.raises(FleetRequestError) as elsewhere:
        await fleet.resolve_image(latest.model_copy(update={"version": "1.13.0"}), "westeurope")
    assert elsewhere.value.code == "ImageNotReplicatedToRegion"
    with pytest.raises(FleetRequestError) as missing:
        await fleet.resolve_image(latest.model_copy(update={"version": "7.0.0"}), "westeurope")
    assert missing.value.code == "ImageNotFound" and "1.9.0" in missing.value.message
    with pytest.raises(FleetRequestError) as no_image:
        await fleet.resolve_image(ImageReference(id=f"{PROVIDER}/galleries/fleet/images/nope"), "westeurope")
    assert no_image.value.code == "ImageNotFound"


async def test_resolve_marketplace_image(emulator: Emulator, fleet: AzureFleet) -> None:
    offer = {**MARKET, "sku": "numeric"}
    for version in ("8.2.0", "8.9.0", "8.10.0"):
        await emulator.publish({**offer, "version": version}, ["westeurope"])
    await emulator.publish({**offer, "version": "8.11.0"}, ["eastus"])
    latest = ImageReference(**offer)
    assert (await fleet.resolve_image(latest, "westeurope")).exact_version == "8.10.0"
    assert (await fleet.resolve_image(latest, "eastus")).exact_version == "8.11.0"
    with pytest.raises(FleetRequestError) as missing:
        await fleet.resolve_image(latest.model_copy(update={"version": "8.11.0"}), "westeurope")
    assert missing.value.code == "ImageNotFound"
    # Excluded from latest is a gallery version's property: the Marketplace lists every version,
    # so the emulator refuses it there rather than keep a flag its listing would not honour.
    with pytest.raises(FleetRequestError) as refused:
        await emulator.publish({**offer, "version": "8.12.0"}, ["westeurope"], exclude_from_latest=True)
    assert (refused.value.status, refused.value.code) == (400, "InvalidParameter")
    assert "gallery image versions" in refused.value.message
    assert (await fleet.resolve_image(latest, "westeurope")).exact_version == "8.10.0"


async def test_uniform_reimage_and_restore(emulator: Emulator, fleet: AzureFleet) -> None:
    offer = {**MARKET, "sku": "uniform-actions"}
    await emulator.create("uni-act", capacity=2, imageReference={**offer, "version": "1.0.0"})
    before = await fleet.get_instance("uni-act", "0")
    await emulator.publish({**offer, "version": "1.1.0"})
    target = await fleet.resolve_image(ImageReference(**offer), "westeurope")
    assert target.exact_version == "1.1.0"
    fleet.calls.clear()
    operation = await fleet.begin_reimage("uni-act", "0", target)
    assert fleet.calls["actions"] == 1
    assert operation.status == OperationStatus.IN_PROGRESS and operation.status_url
    assert operation.operation_id in operation.status_url and operation.retry_after_seconds == 1
    assert operation.image_reference is not None and operation.image_reference.exact_version == "1.1.0"
    done = await until_done(fleet, operation)
    assert done.status == OperationStatus.SUCCEEDED and done.end_time is not None
    after = await fleet.get_instance("uni-act", "0")
    assert after.image_reference.exact_version == "1.1.0"
    assert not same_restore_point(after.restore_point, before.restore_point)
    restore = await fleet.begin_restore("uni-act", "0", before.restore_point or "")
    assert (await until_done(fleet, restore)).status == OperationStatus.SUCCEEDED
    restored = await fleet.get_instance("uni-act", "0")
    assert restored.image_reference.exact_version == "1.0.0"
    assert same_restore_point(restored.restore_point, before.restore_point)
    assert len(await emulator.admin.operations("uni-act")) == 2


async def test_flexible_reimage_and_os_disk_swap(emulator: Emulator, fleet: AzureFleet) -> None:
    offer = {**MARKET, "sku": "flexible-actions"}
    await emulator.create(
        "flex-act", capacity=2, orchestrationMode="Flexible", imageReference={**offer, "version": "2.0.0"}
    )
    vm = (await fleet.get_scale_set("flex-act")).instances[0]
    await emulator.publish({**offer, "version": "2.1.0"})
    operation = await fleet.begin_reimage(
        "flex-act", vm.instance_id, ImageReference(**offer).at_version("2.1.0")
    )
    assert (await until_done(fleet, operation)).status == OperationStatus.SUCCEEDED
    after = await fleet.get_instance("flex-act", vm.instance_id)
    assert after.image_reference.exact_version == "2.1.0" and after.os_disk.name != vm.os_disk.name
    # Azure swaps an OS disk only on a deallocated VM: a running one is refused, as 409.
    with pytest.raises(FleetRequestError) as running:
        await fleet.begin_restore("flex-act", vm.instance_id, vm.restore_point or "")
    assert (running.value.status, running.value.code) == (409, "OperationNotAllowed")
    assert "deallocate it first" in running.value.message
    assert (await fleet.get_instance("flex-act", vm.instance_id)).os_disk.name == after.os_disk.name

    deallocate = await fleet.begin_power("flex-act", vm.instance_id, OperationKind.DEALLOCATE)
    assert deallocate.kind == OperationKind.DEALLOCATE and deallocate.status_url
    assert (await until_done(fleet, deallocate)).status == OperationStatus.SUCCEEDED
    stopped = await fleet.get_instance("flex-act", vm.instance_id)
    assert (stopped.power_state, stopped.health) == ("deallocated", HealthState.UNKNOWN)
    restore = await fleet.begin_restore("flex-act", vm.instance_id, vm.restore_point or "")
    assert (await until_done(fleet, restore)).status == OperationStatus.SUCCEEDED
    restored = await fleet.get_instance("flex-act", vm.instance_id)
    assert restored.os_disk.name == vm.os_disk.name and restored.image_reference.exact_version == "2.0.0"
    assert same_restore_point(restored.restore_point, vm.restore_point)
    assert restored.power_state == "deallocated"  # until started
    start = await fleet.begin_power("flex-act", vm.instance_id, OperationKind.START)
    assert (await until_done(fleet, start)).status == OperationStatus.SUCCEEDED
    up = await eventually(
        lambda: fleet.get_instance("flex-act", vm.instance_id), lambda i: i.power_state == "running"
    )
    assert up.os_disk.name == vm.os_disk.name and up.health == HealthState.HEALTHY
    kinds = [op.kind for op in await emulator.admin.operations("flex-act")]
    assert kinds == [
        OperationKind.REIMAGE,
        OperationKind.DEALLOCATE,
        OperationKind.RESTORE,
        OperationKind.START,
    ]


async def test_an_action_answered_500_after_acceptance_is_not_resent(
    emulator: Emulator, fleet: AzureFleet
) -> None:
    await emulator.create("uni-500", capacity=1)
    image = (await fleet.get_instance("uni-500", "0")).image_reference  # the mode read, before faults
    await emulator.faults(
        "uni-500", transientErrorShare=1.0, transientStatusCodes=[500], afterAcceptShare=1.0
    )
    with pytest.raises(FleetTransientError) as caught:
        await fleet.begin_reimage("uni-500", "0", image)
    assert caught.value.status == 500 and caught.value.maybe_accepted
    await emulator.faults("uni-500")
    assert len(await emulator.admin.operations("uni-500")) == 1  # accepted once, never resent


async def test_an_action_whose_connection_drops_is_not_resent(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("uni-drop", capacity=1)
    image = (await fleet.get_instance("uni-drop", "0")).image_reference
    await emulator.faults("uni-drop", droppedConnectionShare=1.0)
    with pytest.raises(FleetTransientError) as caught:
        await fleet.begin_reimage("uni-drop", "0", image)
    assert caught.value.code == "ConnectionDropped" and caught.value.maybe_accepted
    await emulator.faults("uni-drop")
    assert len(await emulator.admin.operations("uni-drop")) == 1


async def test_throttled_action_carries_retry_after(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("uni-429", capacity=1)
    image = (await fleet.get_instance("uni-429", "0")).image_reference
    await emulator.faults("uni-429", throttleCalls=1, retryAfterSeconds=7)
    with pytest.raises(FleetTransientError) as caught:
        await fleet.begin_reimage("uni-429", "0", image)
    assert caught.value.status == 429 and caught.value.retry_after == 7
    assert not caught.value.maybe_accepted
    await emulator.faults("uni-429")
    assert await emulator.admin.operations("uni-429") == []


async def test_busy_instance_conflict_is_transient(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("uni-busy", capacity=1)
    image = (await fleet.get_instance("uni-busy", "0")).image_reference
    await emulator.admin.start_operation("uni-busy", "0", 30)
    with pytest.raises(FleetTransientError) as caught:
        await fleet.begin_reimage("uni-busy", "0", image)
    assert caught.value.status == 409 and caught.value.code == "AnotherOperationInProgress"
    assert not caught.value.maybe_accepted


async def test_connection_refused_was_never_sent(emulator: Emulator) -> None:
    settings = AzureSettings(
        endpoint=f"https://127.0.0.1:{_free_port()}", ca_bundle=str(emulator.ca_file), token="t"
    )
    async with AzureFleet(settings, retry_total=0) as fleet:
        with pytest.raises(FleetTransientError) as caught:
            await fleet.get_scale_set("anything")
    assert caught.value.code == "ConnectionError" and not caught.value.maybe_accepted


async def test_health_probes_coalesce_into_one_list(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("uni-health", capacity=20)
    await emulator.admin.set_health("uni-health", "4", HealthState.UNHEALTHY)
    await fleet.get_scale_set("uni-health")
    fleet.calls.clear()
    probes = await asyncio.gather(
        *(fleet.probe_health("uni-health", str(n), PROBE) for n in range(20)),
        fleet.probe_health("uni-health", "gone", PROBE),
    )
    assert fleet.calls["reads"] == 1
    assert probes[4].state == HealthState.UNHEALTHY and "HealthState/unhealthy" in (probes[4].detail or "")
    assert probes[-1].state == HealthState.UNKNOWN and "gone" in (probes[-1].detail or "")
    await fleet.probe_health("uni-health", "0", PROBE)  # asked later: a read of its own
    assert fleet.calls["reads"] == 2


async def test_a_failed_operation_reports_azures_error(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("uni-fail", capacity=1, faults={"operationErrors": {"0": "AllocationFailed"}})
    image = (await fleet.get_instance("uni-fail", "0")).image_reference
    done = await until_done(fleet, await fleet.begin_reimage("uni-fail", "0", image))
    assert done.status == OperationStatus.FAILED
    assert done.error is not None and done.error.code == "AllocationFailed"
    failed = await fleet.get_instance("uni-fail", "0")
    assert (failed.provisioning_state, failed.error_code) == ("Failed", "AllocationFailed")


async def test_status_urls_are_polled_only_on_the_arm_endpoint(emulator: Emulator, fleet: AzureFleet) -> None:
    await emulator.create("uni-status", capacity=1)
    image = (await fleet.get_instance("uni-status", "0")).image_reference
    operation = await fleet.begin_reimage("uni-status", "0", image)
    assert operation.status_url is not None
    unknown = operation.model_copy(
        update={"status_url": operation.status_url.replace(operation.operation_id, "nope")}
    )
    with pytest.raises(FleetRequestError) as gone:
        await fleet.get_operation(unknown)
    assert gone.value.status == 404
    elsewhere = operation.model_copy(update={"status_url": "https://example.com/operations/1"})
    with pytest.raises(FleetRequestError, match="InvalidStatusUrl"):
        await fleet.get_operation(elsewhere)
    await until_done(fleet, operation)


async def test_reads_ride_out_a_short_throttle_with_sdk_retries(
    emulator: Emulator, fleet: AzureFleet
) -> None:
    await emulator.create("uni-read-429", capacity=1)
    await fleet.get_instance("uni-read-429", "0")
    await emulator.faults("uni-read-429", throttleCalls=1, retryAfterSeconds=1)
    fleet.calls.clear()
    assert (await fleet.get_instance("uni-read-429", "0")).instance_id == "0"
    assert fleet.calls["reads"] == 1  # one call; the retry under it is the SDK's
