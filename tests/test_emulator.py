"""The fleet emulator over HTTP: the cloud the activities talk to."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from fleet.errors import FleetRequestError, FleetTransientError
from models.fleet import FaultSpec, HealthState, OperationKind, OperationStatus, TimingSpec
from models.image import ImageReference
from models.policy import ApplicationHealthSettings
from tests.helpers import V1, V2, make_scale_set

HEALTH = ApplicationHealthSettings()


async def test_instances_spread_over_zones_update_and_fault_domains(fleet):
    name = await make_scale_set(fleet, 12, zones=["1", "2", "3"], update_domains=2, data_disks_per_instance=2)
    view = await fleet.get_scale_set(name)
    assert [i.zone for i in view.instances[:6]] == ["1", "2", "3", "1", "2", "3"]
    per_zone = [i for i in view.instances if i.zone == "1"]
    assert [i.platform_update_domain for i in per_zone] == [0, 1, 0, 1]
    assert all(len(i.data_disks) == 2 and i.health == HealthState.HEALTHY for i in view.instances)
    assert view.id.endswith(f"/virtualMachineScaleSets/{name}")


async def test_reimage_replaces_the_os_disk_keeps_data_disks_and_is_idempotent(fleet):
    name = await make_scale_set(fleet, 2)
    before = (await fleet.get_scale_set(name)).instances[0]
    first = await fleet.begin_reimage(name, "0", V2, "op-a")
    again = await fleet.begin_reimage(name, "0", V2, "op-a")
    assert first.status == again.status == OperationStatus.SUCCEEDED
    assert again.request_count == 2
    assert again.previous_os_disk == before.os_disk.name
    after = (await fleet.get_scale_set(name)).instances[0]
    assert after.image_reference.same_image(V2)
    assert after.data_disks == before.data_disks
    assert after.os_disk.name == again.os_disk != before.os_disk.name
    ops = await fleet.operations(name)
    assert len(ops) == 1  # one effect, however often it was asked for
    with pytest.raises(FleetRequestError) as conflict:
        await fleet.begin_reimage(name, "1", V2, "op-a")
    assert conflict.value.code == "OperationIdConflict"


async def test_restore_brings_back_the_previous_os_disk(fleet):
    name = await make_scale_set(fleet, 1, faults=FaultSpec(unhealthy_images=[V2.version]))
    operation = await fleet.begin_reimage(name, "0", V2, "op-r1")
    assert (await fleet.probe_health(name, "0", HEALTH)).state == HealthState.UNHEALTHY
    await fleet.begin_restore(name, "0", operation.previous_os_disk, "op-r2")
    instance = (await fleet.get_scale_set(name)).instances[0]
    assert instance.image_reference.same_image(V1)
    assert instance.os_disk.name == operation.previous_os_disk
    assert (await fleet.probe_health(name, "0", HEALTH)).state == HealthState.HEALTHY
    with pytest.raises(FleetRequestError, match="DiskNotFound"):
        await fleet.begin_restore(name, "0", "no-such-disk", "op-r3")


async def test_health_goes_unknown_while_reimaging_then_initializing_while_booting(fleet):
    timing = TimingSpec(reimage_seconds=[0.4, 0.4], restore_seconds=[0, 0], boot_seconds=[0.4, 0.4])
    name = await make_scale_set(fleet, 1, timing=timing)
    operation = await fleet.begin_reimage(name, "0", V2, "op-h")
    assert operation.status == OperationStatus.IN_PROGRESS
    assert 0 < operation.retry_after_seconds <= 0.4
    assert (await fleet.read_health(name)).health["0"] == HealthState.UNKNOWN
    assert (await fleet.probe_health(name, "0", HEALTH)).state == HealthState.UNKNOWN
    # Busy with another operation: Azure's 409, worth trying again later.
    with pytest.raises(FleetTransientError) as busy:
        await fleet.begin_reimage(name, "0", V2, "op-other")
    assert (busy.value.status, busy.value.code) == (409, "AnotherOperationInProgress")
    await asyncio.sleep(0.45)
    assert (await fleet.get_operation(name, "op-h")).status == OperationStatus.SUCCEEDED
    # Booting: the extension says Initializing; the application does not answer yet.
    assert (await fleet.read_health(name)).health["0"] == HealthState.INITIALIZING
    assert (await fleet.probe_health(name, "0", HEALTH)).state == HealthState.UNKNOWN
    await asyncio.sleep(0.45)
    assert (await fleet.read_health(name)).health["0"] == HealthState.HEALTHY
    assert (await fleet.probe_health(name, "0", HEALTH)).state == HealthState.HEALTHY


async def test_an_operation_started_from_outside_keeps_the_instance_busy(fleet):
    name = await make_scale_set(fleet, 2)
    outside = await fleet.start_operation(name, "1", seconds=0.5, operation_id=f"maintenance-{name}")
    assert (outside.kind, outside.status) == (OperationKind.RESTART, OperationStatus.IN_PROGRESS)
    with pytest.raises(FleetTransientError) as busy:
        await fleet.begin_reimage(name, "1", V2, "op-busy")
    assert busy.value.code == "AnotherOperationInProgress"
    await asyncio.sleep(0.55)
    done = await fleet.begin_reimage(name, "1", V2, "op-busy")
    assert done.status == OperationStatus.SUCCEEDED
    ops = await fleet.operations(name)
    assert [(op.kind, op.status) for op in ops] == [
        (OperationKind.RESTART, OperationStatus.SUCCEEDED),
        (OperationKind.REIMAGE, OperationStatus.SUCCEEDED),
    ]
    assert ops[0].os_disk == ops[0].previous_os_disk  # a restart keeps the OS disk


async def test_gallery_resolves_latest_and_checks_regional_replication(fleet):
    # Its own image definition: the gallery is shared by every test of the session.
    latest = ImageReference.parse("Contoso:gallery-test:2024")
    await fleet.publish_image(ImageReference.parse("Contoso:gallery-test:2024:2024.12.01"))
    newer = ImageReference.parse("Contoso:gallery-test:2024:2024.12.15")
    await fleet.publish_image(newer, ["eastus"])
    # Not replicated to westeurope: 'latest' there is still 2024.12.01 ...
    assert (await fleet.resolve_image(latest, "westeurope")).exact_version == "2024.12.01"
    assert (await fleet.resolve_image(latest, "eastus")).exact_version == "2024.12.15"
    # ... and asking for it by version says why not.
    with pytest.raises(FleetRequestError) as refused:
        await fleet.resolve_image(newer, "westeurope")
    assert refused.value.code == "ImageNotReplicatedToRegion"
    with pytest.raises(FleetRequestError, match="ImageNotFound"):
        await fleet.resolve_image(ImageReference.parse("Nobody:none:1:1"), "westeurope")


async def test_latest_of_versions_all_excluded_from_latest_is_not_found_not_unreplicated(fleet):
    sku = f"Contoso:excluded-test:{uuid.uuid4().hex[:8]}"
    await fleet.publish_image(ImageReference.parse(f"{sku}:1.0.0"), exclude_from_latest=True)
    await fleet.publish_image(ImageReference.parse(f"{sku}:1.1.0"), ["eastus"], exclude_from_latest=True)
    with pytest.raises(FleetRequestError) as refused:
        await fleet.resolve_image(ImageReference.parse(sku), "westeurope")
    assert (refused.value.status, refused.value.code) == (404, "ImageNotFound")
    assert refused.value.message.startswith(
        f"every version of {sku}:latest is excluded from latest (versions: 1.0.0, 1.1.0)"
    )
    # An exact version still resolves.
    assert (
        await fleet.resolve_image(ImageReference.parse(f"{sku}:1.0.0"), "westeurope")
    ).exact_version == "1.0.0"
    # A version that may be 'latest' but lives elsewhere: that one is "not replicated".
    await fleet.publish_image(ImageReference.parse(f"{sku}:0.9.0"), ["eastus"])
    with pytest.raises(FleetRequestError) as elsewhere:
        await fleet.resolve_image(ImageReference.parse(sku), "westeurope")
    assert elsewhere.value.code == "ImageNotReplicatedToRegion"
    assert (await fleet.resolve_image(ImageReference.parse(sku), "eastus")).exact_version == "0.9.0"


async def test_scale_out_places_new_instances_like_create_and_continues_the_ids(fleet):
    name = await make_scale_set(fleet, 6, zones=["1", "2", "3"], update_domains=2)
    created = await make_scale_set(fleet, 9, zones=["1", "2", "3"], update_domains=2, name=f"{name}-ref")
    await fleet.delete_instance(name, "5")  # the highest id: never handed out again
    view = await fleet.scale_out(name, 3)
    ids = [i.instance_id for i in view.instances]
    assert ids == ["0", "1", "2", "3", "4", "6", "7", "8"]
    reference = {i.instance_id: i for i in (await fleet.get_scale_set(created)).instances}
    for instance in view.instances[5:]:
        twin = reference[instance.instance_id]
        assert (instance.zone, instance.platform_update_domain, instance.platform_fault_domain) == (
            twin.zone,
            twin.platform_update_domain,
            twin.platform_fault_domain,
        )
        assert instance.image_reference.same_image(V1)  # the scale set model's image
        assert instance.health == HealthState.HEALTHY
        assert len(instance.data_disks) == 1
    reading = await fleet.read_health(name)
    assert sorted(reading.health, key=int) == ids
    assert ids == [i.instance_id for i in (await fleet.get_scale_set(name)).instances]

    on_new = await fleet.scale_out(name, 2, image=V2)
    added = on_new.instances[-2:]
    assert [i.instance_id for i in added] == ["9", "10"]
    assert all(i.image_reference.exact_version == V2.version for i in added)
    assert (await fleet.probe_health(name, "10", HEALTH)).state == HealthState.HEALTHY
    with pytest.raises(FleetRequestError, match="InvalidParameter"):
        await fleet.scale_out(name, 0)
    with pytest.raises(FleetRequestError, match="ImageNotFound"):
        await fleet.scale_out(name, 1, image=ImageReference.parse("Contoso:web-os:2024:9.9.9"))


async def test_operation_failures_and_deleted_instances_are_reported_with_codes(fleet):
    name = await make_scale_set(fleet, 2, faults=FaultSpec(operation_errors={"0": "AllocationFailed"}))
    failed = await fleet.begin_reimage(name, "0", V2, "op-f")
    assert failed.status == OperationStatus.FAILED
    assert failed.error.code == "AllocationFailed"
    assert (await fleet.get_scale_set(name)).instances[0].image_reference.same_image(V1)
    await fleet.delete_instance(name, "1")
    with pytest.raises(FleetRequestError) as gone:
        await fleet.begin_reimage(name, "1", V2, "op-g")
    assert (gone.value.code, gone.value.status) == ("NotFound", 404)
    assert (await fleet.probe_health(name, "1", HEALTH)).state == HealthState.UNKNOWN


async def test_transient_faults_answer_429_or_5xx_on_the_cloud_api_only(fleet):
    name = await make_scale_set(fleet, 1, faults=FaultSpec(transient_error_share=1.0))
    with pytest.raises(FleetTransientError) as err:
        await fleet.get_scale_set(name)
    assert err.value.status in (429, 500, 503)
    # Health endpoints and the admin API are not faulted.
    assert (await fleet.probe_health(name, "0", HEALTH)).state == HealthState.HEALTHY
    assert await fleet.operations(name) == []


async def test_custom_metrics_reach_the_health_endpoint(fleet):
    name = await make_scale_set(
        fleet, 2, custom_metrics={"1": {"PhaseOrderingNumber": 2, "SkipUpgrade": True}}
    )
    probe = await fleet.probe_health(name, "1", HEALTH)
    assert probe.custom_metrics.phase_ordering_number == 2
    assert probe.custom_metrics.skip_upgrade
    view = await fleet.get_scale_set(name)
    assert view.instances[1].custom_metrics.skip_upgrade


def test_a_state_file_from_an_older_emulator_is_brought_up_to_date(tmp_path):
    import sqlite3

    from fleet.emulator.store import SCHEMA, open_database

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(",\n    ready_at REAL\n", "\n"))
    old.close()
    columns = [row["name"] for row in open_database(path).execute("PRAGMA table_info(operations)")]
    assert "ready_at" in columns


async def test_operations_record_when_the_instance_was_ready(fleet):
    timing = TimingSpec(reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0.3, 0.3])
    name = await make_scale_set(fleet, 1, timing=timing)
    operation = await fleet.begin_reimage(name, "0", V2, "op-ready")
    assert (operation.ready_time - operation.end_time).total_seconds() == pytest.approx(0.3, abs=0.01)
