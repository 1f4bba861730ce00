"""The emulator speaks Azure Resource Manager as the real azure-mgmt-compute SDK expects: its
async client, used directly over HTTPS with the emulator's CA, reads, deserializes every field,
and drives the long-running actions to the end with its own poller."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import AsyncHttpResponse
from azure.mgmt.compute.aio import ComputeManagementClient

from fleet.azure.credentials import StaticTokenCredential
from fleet.emulator.admin import EmulatorAdmin
from fleet.emulator.cloud import PROVIDER, RESOURCE_GROUP, SUBSCRIPTION
from models.fleet import FaultSpec, ScaleSetSpec
from models.image import ImageReference
from starter import processes
from tests.helpers.arm import unknown_fields

RG = RESOURCE_GROUP
UBUNTU = ImageReference.parse("Canonical:ubuntu-24_04-lts:server:1.0.0")
GALLERY_IMAGE = f"{PROVIDER}/galleries/fleet/images/app"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    workdir = tmp_path_factory.mktemp("arm")
    port = processes.free_port()
    db = workdir / "fleet.db"
    process = processes.start_emulator(port, db, workdir / "emulator.log")
    yield processes.emulator_url(port), processes.emulator_ca_file(db)
    processes.stop(process)


@pytest.fixture
async def admin(emulator: tuple[str, Path]) -> AsyncIterator[EmulatorAdmin]:
    async with EmulatorAdmin(*emulator) as client:
        yield client


@pytest.fixture
async def compute(emulator: tuple[str, Path]) -> AsyncIterator[ComputeManagementClient]:
    url, ca = emulator
    async with ComputeManagementClient(
        StaticTokenCredential("emulator-token"),
        SUBSCRIPTION,
        base_url=url,
        connection_verify=str(ca),
        polling_interval=0.2,
    ) as client:
        yield client


async def raw(emulator: tuple[str, Path], path: str, **params: str) -> Any:
    url, ca = emulator
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca))) as http:
        answer = await http.get(
            url + path, params={"api-version": "2024-07-01", **params}, headers={"Authorization": "Bearer x"}
        )
        return answer.json()


async def new_set(admin: EmulatorAdmin, **fields: Any) -> str:
    name = f"arm-{uuid.uuid4().hex[:8]}"
    fields.setdefault("image_reference", UBUNTU)
    spec = ScaleSetSpec.model_validate(
        {
            "name": name,
            "capacity": 3,
            "timing": {
                "reimageSeconds": [0.3, 0.5],
                "restoreSeconds": [0.3, 0.5],
                "bootSeconds": [0.2, 0.3],
                "powerSeconds": [0.2, 0.3],
            },
            **fields,
        }
    )
    await admin.create_scale_set(spec)
    return name


async def test_reads_uniform_without_losing_fields(
    admin: EmulatorAdmin, compute: ComputeManagementClient, emulator: tuple[str, Path]
) -> None:
    name = await new_set(
        admin, capacity=5, page_size=2, zones=["1", "2"], custom_metrics={"1": {"PhaseOrderingNumber": 2}}
    )
    scale_set = await compute.virtual_machine_scale_sets.get(RG, name)
    assert scale_set.properties.orchestration_mode == "Uniform"
    assert scale_set.properties.upgrade_policy.mode == "Manual"
    extension = scale_set.properties.virtual_machine_profile.extension_profile.extensions[0]
    assert extension.properties.type == "ApplicationHealthLinux"
    assert extension.properties.type_handler_version == "2.0"
    assert extension.properties.settings["requestPath"] == "/health"
    document = await raw(
        emulator,
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}",
    )
    assert unknown_fields(scale_set, document) == []

    vms = [vm async for vm in compute.virtual_machine_scale_set_vms.list(RG, name, expand="instanceView")]
    assert [vm.instance_id for vm in vms] == ["0", "1", "2", "3", "4"]  # three pages of two
    assert {vm.zones[0] for vm in vms} == {"1", "2"}
    for vm in vms:
        assert vm.storage_profile.image_reference.exact_version == "1.0.0"
        assert vm.latest_model_applied
        assert vm.instance_view.vm_health.status.code == "HealthState/healthy"
        assert vm.storage_profile.os_disk.managed_disk.id.startswith(f"{PROVIDER}/disks/")
    metrics = [s for s in vms[1].instance_view.extensions[0].substatuses if "CustomMetrics" in s.code]
    assert metrics[0].message == '{"rollingUpgrade": {"PhaseOrderingNumber": 2, "SkipUpgrade": false}}'
    page = await raw(
        emulator,
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}/virtualMachines",
        **{"$expand": "instanceView"},
    )
    assert "nextLink" in page and "api-version" in page["nextLink"]
    assert unknown_fields(vms[0], page["value"][0]) == []


async def test_reimage_to_an_exact_version_through_the_sdk_poller(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    name = await new_set(admin)
    await admin.publish_image(UBUNTU.model_copy(update={"version": "1.0.1"}))
    poller = await compute.virtual_machine_scale_set_vms.begin_reimage(  # type: ignore[call-overload]  # a raw JSON body
        RG, name, "2", {"exactVersion": "1.0.1"}
    )
    await poller.result()
    vm = await compute.virtual_machine_scale_set_vms.get(RG, name, "2")
    assert vm.storage_profile.image_reference.exact_version == "1.0.1"
    # Two POSTs are two reimages: there is no idempotency key.
    await (await compute.virtual_machine_scale_set_vms.begin_reimage(RG, name, "2")).result()
    reimages = [op for op in await admin.operations(name) if op.instance_id == "2"]
    assert len(reimages) == 2 and len({op.operation_id for op in reimages}) == 2


async def test_flexible_reimage_and_os_disk_swap(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    name = await new_set(admin, orchestration_mode="Flexible")
    await admin.publish_image(UBUNTU.model_copy(update={"version": "1.0.2"}))
    scale_set = await compute.virtual_machine_scale_sets.get(RG, name)
    assert scale_set.properties.orchestration_mode == "Flexible"
    vms = [
        vm
        async for vm in compute.virtual_machines.list(
            RG, filter=f"'virtualMachineScaleSet/id' eq '{scale_set.id}'", expand="instanceView"
        )
    ]
    assert len(vms) == 3 and all(
        vm.name.startswith(f"{name}_") and len(vm.name) == len(name) + 9 for vm in vms
    )
    assert vms[0].virtual_machine_scale_set.id == scale_set.id
    vm_name, old_disk = vms[0].name, vms[0].storage_profile.os_disk.managed_disk.id
    await (await compute.virtual_machines.begin_reimage(RG, vm_name, {"exactVersion": "1.0.2"})).result()
    reimaged = await compute.virtual_machines.get(RG, vm_name)
    assert reimaged.storage_profile.image_reference.exact_version == "1.0.2"
    assert reimaged.storage_profile.os_disk.managed_disk.id != old_disk
    swap = {"properties": {"storageProfile": {"osDisk": {"managedDisk": {"id": old_disk}}}}}
    # As Azure: an OS disk is swapped only while the VM is deallocated.
    with pytest.raises(HttpResponseError) as running:
        await compute.virtual_machines.begin_update(RG, vm_name, swap, retry_total=0)  # type: ignore[call-overload]  # a raw JSON body
    assert running.value.status_code == 409 and running.value.error.code == "OperationNotAllowed"
    await (await compute.virtual_machines.begin_deallocate(RG, vm_name)).result()
    view = await compute.virtual_machines.instance_view(RG, vm_name)
    assert "PowerState/deallocated" in [status.code for status in view.statuses]
    restored = await (await compute.virtual_machines.begin_update(RG, vm_name, swap)).result()  # type: ignore[call-overload]  # a raw JSON body
    assert restored.storage_profile.os_disk.managed_disk.id == old_disk
    assert restored.storage_profile.image_reference.exact_version == "1.0.0"
    await (await compute.virtual_machines.begin_start(RG, vm_name)).result()
    view = await compute.virtual_machines.instance_view(RG, vm_name)
    assert {"PowerState/starting", "PowerState/running"} & {status.code for status in view.statuses}
    kinds = [op.kind.value for op in await admin.operations(name)]
    assert kinds == ["reimage", "deallocate", "restoreOsDisk", "start"]


async def test_model_update_and_manual_upgrade(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    name = await new_set(admin)
    await admin.publish_image(UBUNTU.model_copy(update={"version": "1.1.0"}))
    scale_set = await compute.virtual_machine_scale_sets.get(RG, name)
    patch = {
        "properties": {
            "virtualMachineProfile": {
                "storageProfile": {
                    "imageReference": {
                        "publisher": UBUNTU.publisher,
                        "offer": UBUNTU.offer,
                        "sku": UBUNTU.sku,
                        "version": "1.1.0",
                    }
                }
            }
        }
    }
    with pytest.raises(HttpResponseError) as stale:
        await compute.virtual_machine_scale_sets.begin_update(  # type: ignore[call-overload]  # a raw JSON body
            RG, name, patch, etag='"999"', match_condition=MatchConditions.IfNotModified
        )
    assert stale.value.status_code == 412
    await (
        await compute.virtual_machine_scale_sets.begin_update(  # type: ignore[call-overload]  # a raw JSON body
            RG, name, patch, etag=scale_set.etag, match_condition=MatchConditions.IfNotModified
        )
    ).result()
    vm = await compute.virtual_machine_scale_set_vms.get(RG, name, "0")
    assert not vm.latest_model_applied
    await (
        await compute.virtual_machine_scale_sets.begin_update_instances(RG, name, {"instanceIds": ["0"]})
    ).result()
    vm = await compute.virtual_machine_scale_set_vms.get(RG, name, "0")
    assert vm.latest_model_applied and vm.storage_profile.image_reference.exact_version == "1.1.0"


async def test_images_and_extension_versions(
    admin: EmulatorAdmin, compute: ComputeManagementClient, emulator: tuple[str, Path]
) -> None:
    gallery = ImageReference.parse(f"{GALLERY_IMAGE}/versions/2.0.0")
    await admin.publish_image(
        gallery,
        ["westeurope", "northeurope"],
        excluded_from_latest_in=["northeurope"],
        end_of_life_date="2030-01-01T00:00:00Z",
    )
    await admin.publish_image(gallery.model_copy(update={"version": "2.1.0"}), exclude_from_latest=True)
    versions = [v async for v in compute.gallery_image_versions.list_by_gallery_image(RG, "fleet", "app")]
    assert [v.name for v in versions] == ["2.0.0", "2.1.0"]
    version = await compute.gallery_image_versions.get(
        RG, "fleet", "app", "2.0.0", expand="ReplicationStatus"
    )
    profile = version.properties.publishing_profile
    assert [(r.name, r.exclude_from_latest) for r in profile.target_regions] == [
        ("West Europe", False),
        ("North Europe", True),
    ]
    assert profile.end_of_life_date is not None and profile.published_date is not None
    assert [s.region for s in version.properties.replication_status.summary] == [
        "West Europe",
        "North Europe",
    ]
    document = await raw(
        emulator,
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute/galleries/fleet/images/app/versions/2.0.0",
        **{"$expand": "ReplicationStatus"},
    )
    assert unknown_fields(version, document) == []

    for text in ("8.9", "8.10"):
        await admin.publish_image(ImageReference.parse(f"Canonical:market:server:{text}"))
    listed = await compute.virtual_machine_images.list(
        "westeurope", "Canonical", "market", "server", orderby="name"
    )
    assert [v.name for v in listed] == ["8.10", "8.9"]  # strings, as Azure sorts them

    await admin.publish_extension_version("Microsoft.ManagedServices", "ApplicationHealthLinux", "2.0.12")
    await admin.publish_extension_version("Microsoft.ManagedServices", "ApplicationHealthLinux", "1.0.6")
    extensions = await compute.virtual_machine_extension_images.list_versions(
        "westeurope", "Microsoft.ManagedServices", "ApplicationHealthLinux"
    )
    assert [e.name for e in extensions] == ["1.0.6", "2.0.12"]


async def test_errors_after_accept_leave_the_reimage_accepted(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    name = await new_set(admin)
    await admin.set_faults(
        name, FaultSpec(transient_error_share=1, transient_status_codes=[500], after_accept_share=1)
    )
    with pytest.raises(HttpResponseError) as failed:
        await compute.virtual_machine_scale_set_vms.begin_reimage(RG, name, "0", retry_total=0)
    assert failed.value.status_code == 500
    await admin.set_faults(name, FaultSpec(dropped_connection_share=1))
    with pytest.raises((IncompleteReadError, ServiceResponseError, ServiceRequestError)):  # no status
        await compute.virtual_machine_scale_set_vms.begin_reimage(RG, name, "1", retry_total=0)
    await admin.set_faults(name, FaultSpec())
    assert sorted(op.instance_id for op in await admin.operations(name)) == ["0", "1"]
    assert await admin.injected_faults(name) == 2


async def test_throttling_and_authentication(
    admin: EmulatorAdmin, compute: ComputeManagementClient, emulator: tuple[str, Path]
) -> None:
    name = await new_set(admin)
    await admin.set_faults(name, FaultSpec(throttle_calls=2, retry_after_seconds=7))
    for _ in range(2):
        with pytest.raises(HttpResponseError) as throttled:
            await compute.virtual_machine_scale_sets.get(RG, name, retry_total=0)
        assert throttled.value.status_code == 429
        response = throttled.value.response
        assert isinstance(response, AsyncHttpResponse)  # what the SDK's operations raise with
        assert response.headers["Retry-After"] == "7"
        assert "x-ms-ratelimit-remaining-resource" in response.headers
    assert (await compute.virtual_machine_scale_sets.get(RG, name)).name == name
    url, ca = emulator
    path = f"{url}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Compute"
    path += f"/virtualMachineScaleSets/{name}"
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca))) as http:
        anonymous = await http.get(path, params={"api-version": "2024-07-01"})
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "AuthenticationFailed"
        unversioned = await http.get(path, headers={"Authorization": "Bearer x"})
        assert unversioned.json()["error"]["code"] == "MissingApiVersionParameter"
    assert "2024-07-01" in await admin.api_versions()
