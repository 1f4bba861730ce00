"""The fleet emulator through ARM (the raw azure-mgmt-compute SDK) and its admin API: health from
the emulated Application Health extension, failed and busy instances, scale-out, faults, and a
restart that keeps state and certificates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.compute.models import Sku, VirtualMachineScaleSet, VirtualMachineScaleSetUpdate

from fleet.azure.credentials import StaticTokenCredential
from fleet.emulator.admin import EmulatorAdmin
from fleet.emulator.cloud import RESOURCE_GROUP, SUBSCRIPTION
from fleet.errors import FleetRequestError
from models.fleet import FaultSpec, HealthState, ScaleSetSpec
from models.image import ImageReference
from starter import processes

RG = RESOURCE_GROUP
UBUNTU = ImageReference.parse("Canonical:ubuntu-24_04-lts:server:1.0.0")
FAST = {"reimageSeconds": [0.3, 0.4], "restoreSeconds": [0.3, 0.4], "bootSeconds": [0.2, 0.3]}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, list[Any]]]:
    workdir = tmp_path_factory.mktemp("emulator")
    port = processes.free_port()
    db = workdir / "fleet.db"
    running = [processes.start_emulator(port, db, workdir / "emulator.log")]
    yield port, db, running
    processes.stop(running[-1])


@pytest.fixture
async def admin(emulator: tuple[int, Path, list[Any]]) -> AsyncIterator[EmulatorAdmin]:
    port, db, _ = emulator
    async with EmulatorAdmin(processes.emulator_url(port), processes.emulator_ca_file(db)) as client:
        yield client


@pytest.fixture
async def compute(emulator: tuple[int, Path, list[Any]]) -> AsyncIterator[ComputeManagementClient]:
    port, db, _ = emulator
    async with ComputeManagementClient(
        StaticTokenCredential("emulator-token"),
        SUBSCRIPTION,
        base_url=processes.emulator_url(port),
        connection_verify=str(processes.emulator_ca_file(db)),
        polling_interval=0.2,
    ) as client:
        yield client


async def new_set(admin: EmulatorAdmin, **fields: Any) -> str:
    name = f"emu-{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "capacity": 2, "imageReference": UBUNTU.to_json(), "timing": FAST, **fields}
    await admin.create_scale_set(ScaleSetSpec.model_validate(spec))
    return name


async def health(compute: ComputeManagementClient, name: str, instance_id: str) -> str:
    view = await compute.virtual_machine_scale_set_vms.get_instance_view(RG, name, instance_id)
    return view.vm_health.status.code


async def test_the_admin_api_refuses_an_unknown_field_by_its_path(admin: EmulatorAdmin) -> None:
    # Its bodies are what users write (`upgradectl fleet create --file`, a scenario's faults):
    # an unknown field is a typo, refused at any depth, not ignored as payloads ignore it.
    name = await new_set(admin)
    image = {**UBUNTU.to_json(), "someNewField": 1}
    fault = {"afterReimages": 1, "instances": ["0"], "someNewField": 1}
    for path, body, where in [
        (f"/admin/scaleSets/{name}", {"imageReference": image}, "imageReference"),
        (f"/admin/scaleSets/{name}/faults", {"goUnhealthy": [fault]}, "goUnhealthy.0"),
        ("/admin/images", {"imageReference": image}, ""),
    ]:
        with pytest.raises(FleetRequestError) as refused:
            await admin._call("PUT" if "scaleSets" in path else "POST", path, body)
        assert refused.value.status == 400
        assert refused.value.message == f"{where}{'.' if where else ''}someNewField: is not a known field"


async def test_probe_answers_are_consumed_by_arm_reads_only(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    name = await new_set(admin)
    await admin.set_probe_answers(name, "0", ["Unhealthy", "Unknown", "Down"])
    assert (await admin.show_scale_set(name)).instances[0].health == HealthState.UNHEALTHY  # not consumed
    assert await health(compute, name, "0") == "HealthState/unhealthy"
    assert await health(compute, name, "0") == "HealthState/unknown"  # a 500 answer, read rich
    vms = [vm async for vm in compute.virtual_machine_scale_set_vms.list(RG, name, expand="instanceView")]
    assert vms[0].instance_view.vm_health.status.code == "HealthState/unknown"  # no connection
    assert await health(compute, name, "0") == "HealthState/healthy"


async def test_binary_and_tcp_extensions(admin: EmulatorAdmin, compute: ComputeManagementClient) -> None:
    binary = await new_set(admin, healthExtension={"rich": False, "port": 8080, "requestPath": "/ready"})
    await admin.set_probe_answers(binary, "0", ["Unknown"])
    assert await health(compute, binary, "0") == "HealthState/unhealthy"  # binary: a 500 is unhealthy
    scale_set = await compute.virtual_machine_scale_sets.get(RG, binary)
    extension = scale_set.properties.virtual_machine_profile.extension_profile.extensions[0].properties
    assert extension.type_handler_version == "1.0"
    assert extension.settings == {
        "protocol": "http",
        "port": 8080,
        "requestPath": "/ready",
        "intervalInSeconds": 5,
        "numberOfProbes": 1,
    }
    old_binary = await new_set(admin, appEndpoint="binary")  # old specs keep their meaning
    ext = (await compute.virtual_machine_scale_sets.get(RG, old_binary)).properties.virtual_machine_profile
    assert ext.extension_profile.extensions[0].properties.type_handler_version == "1.0"
    tcp = await new_set(admin, healthExtension={"protocol": "tcp", "port": 22})
    await admin.set_health(tcp, "1", HealthState.UNHEALTHY)
    assert await health(compute, tcp, "1") == "HealthState/unhealthy"
    assert await health(compute, tcp, "0") == "HealthState/healthy"


async def test_operation_states_busy_and_failed(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    timing = {**FAST, "bootSeconds": [5, 5]}
    name = await new_set(admin, timing=timing, faults={"operationErrors": {"1": "AllocationFailed"}})
    poller = await compute.virtual_machine_scale_set_vms.begin_reimage(RG, name, "0")
    view = await compute.virtual_machine_scale_set_vms.get_instance_view(RG, name, "0")
    assert [s.code for s in view.statuses] == ["ProvisioningState/updating", "PowerState/stopped"]
    assert view.vm_health.status.code == "HealthState/unknown"
    with pytest.raises(HttpResponseError) as busy:
        await compute.virtual_machine_scale_set_vms.begin_reimage(RG, name, "0", retry_total=0)
    assert busy.value.status_code == 409 and busy.value.error.code == "AnotherOperationInProgress"
    await poller.result()
    view = await compute.virtual_machine_scale_set_vms.get_instance_view(RG, name, "0")
    assert view.vm_health.status.code == "HealthState/initializing"  # booting

    with pytest.raises(HttpResponseError) as failed:
        await (await compute.virtual_machine_scale_set_vms.begin_reimage(RG, name, "1")).result()
    assert "AllocationFailed" in str(failed.value)
    vm = await compute.virtual_machine_scale_set_vms.get(RG, name, "1", expand="instanceView")
    assert vm.provisioning_state == "Failed"
    assert vm.instance_view.statuses[0].code == "ProvisioningState/failed/AllocationFailed"
    assert (await admin.show_scale_set(name)).instances[1].error_code == "AllocationFailed"
    kinds = [(op.instance_id, op.status.value) for op in await admin.operations(name)]
    assert kinds == [("0", "Succeeded"), ("1", "Failed")]


async def test_scale_out_and_delete(admin: EmulatorAdmin, compute: ComputeManagementClient) -> None:
    name = await new_set(admin, orchestrationMode="Flexible")
    await admin.delete_instance(name, (await admin.show_scale_set(name)).instances[0].instance_id)
    view = await admin.scale_out(name, 2)
    assert len(view.instances) == 3 and len({i.instance_id for i in view.instances}) == 3
    vms = [
        vm
        async for vm in compute.virtual_machines.list(
            RG, filter=f"'virtualMachineScaleSet/id' eq '{view.id}'"
        )
    ]
    assert sorted(vm.name for vm in vms) == sorted(i.instance_id for i in view.instances)
    with pytest.raises(HttpResponseError) as gone:
        await compute.virtual_machine_scale_sets.get(RG, "no-such-set")
    assert gone.value.status_code == 404


def capacity(count: int) -> VirtualMachineScaleSetUpdate:
    return VirtualMachineScaleSetUpdate(sku=Sku(capacity=count))


async def test_capacity_changes_and_deletes_are_long_running_and_ids_never_come_back(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    # Zones 1, 2, 1; booting long enough to be seen.
    name = await new_set(admin, capacity=3, zones=["1", "2"], timing={**FAST, "bootSeconds": [5, 5]})
    sets = compute.virtual_machine_scale_sets

    async def states() -> dict[str, str]:
        vms = [vm async for vm in compute.virtual_machine_scale_set_vms.list(RG, name)]
        return {vm.instance_id: vm.provisioning_state for vm in vms}

    # Raised: the model's capacity at once, the new instances Creating until the LRO is done.
    raised = await sets.begin_update(RG, name, capacity(5))
    assert (await sets.get(RG, name)).sku.capacity == 5
    assert await states() == {
        "0": "Succeeded",
        "1": "Succeeded",
        "2": "Succeeded",
        "3": "Creating",
        "4": "Creating",
    }
    await raised.result()
    vm = await compute.virtual_machine_scale_set_vms.get(RG, name, "3", expand="instanceView")
    assert (vm.provisioning_state, vm.zones) == ("Succeeded", ["2"])  # the emptier zone
    assert vm.instance_view.vm_health.status.code == "HealthState/initializing"  # booting

    # Deleted by id: Deleting until gone, the capacity down at once; a PUT lowers it too (the
    # highest ids go). No id is used again.
    deleted = await sets.begin_delete_instances(RG, name, {"instanceIds": ["0", "3"]})
    assert (await sets.get(RG, name)).sku.capacity == 3
    assert (await states())["0"] == "Deleting"
    await deleted.result()
    await (await compute.virtual_machine_scale_set_vms.begin_delete(RG, name, "1")).result()
    lowered = VirtualMachineScaleSet(location="westeurope", sku=Sku(capacity=1))
    await (await sets.begin_create_or_update(RG, name, lowered)).result()
    assert await states() == {"2": "Succeeded"}
    await (await sets.begin_update(RG, name, capacity(2))).result()
    assert await states() == {"2": "Succeeded", "5": "Succeeded"}
    kinds = [(op.kind.value, op.instance_id) for op in await admin.operations(name)]
    assert kinds == [
        ("create", "3"),
        ("create", "4"),
        ("delete", "0"),
        ("delete", "3"),
        ("delete", "1"),
        ("delete", "4"),
        ("create", "5"),
    ]
    with pytest.raises(HttpResponseError) as gone:  # a deleted id: refused, nothing deleted
        await sets.begin_delete_instances(RG, name, {"instanceIds": ["0", "2"]}, retry_total=0)
    assert gone.value.status_code == 404 and (await sets.get(RG, name)).sku.capacity == 2


async def test_usages_resource_skus_and_a_raise_beyond_the_quota(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    region = f"quota{uuid.uuid4().hex[:8]}"
    name = await new_set(admin, capacity=2, location=region, vmSize="Standard_F2s_v2")
    usages = {u.name.value: (u.current_value, u.limit) async for u in compute.usage.list(region)}
    assert usages["cores"] == (4, 100_000) and usages["standardFSv2Family"] == (4, 100_000)
    assert usages["standardDSv3Family"] == (0, 100_000)
    skus = {s.name: s async for s in compute.resource_skus.list(filter=f"location eq '{region}'")}
    assert skus["Standard_F2s_v2"].family == "standardFSv2Family"
    assert {c.name: c.value for c in skus["Standard_F2s_v2"].capabilities}["vCPUs"] == "2"

    await admin.set_core_quota(region, "cores", 7)
    with pytest.raises(HttpResponseError) as refused:
        await compute.virtual_machine_scale_sets.begin_update(RG, name, capacity(4), retry_total=0)
    assert (refused.value.status_code, refused.value.error.code) == (409, "OperationNotAllowed")
    assert "exceeding approved Total Regional Cores quota" in refused.value.error.message
    assert (await compute.virtual_machine_scale_sets.get(RG, name)).sku.capacity == 2
    await (await compute.virtual_machine_scale_sets.begin_update(RG, name, capacity(3))).result()
    assert [u.limit for u in await admin.core_usage(region) if u.name == "cores"] == [7]
    await admin.set_core_quota(region, "cores", None)
    with pytest.raises(FleetRequestError) as unknown:
        await admin.set_core_quota(region, "standardXYZFamily", 1)
    assert unknown.value.message.startswith("family: must be one of cores, standardBSFamily")


async def test_a_429_storm_by_time_and_polls_throttled(
    admin: EmulatorAdmin, compute: ComputeManagementClient
) -> None:
    name = await new_set(admin)
    await admin.set_faults(name, FaultSpec(throttle_seconds=0.5, retry_after_seconds=0))
    with pytest.raises(HttpResponseError) as throttled:
        await compute.virtual_machine_scale_set_vms.get(RG, name, "0", retry_total=0)
    assert throttled.value.status_code == 429
    await asyncio.sleep(0.6)
    assert (await compute.virtual_machine_scale_set_vms.get(RG, name, "0")).instance_id == "0"
    # The SDK's own retries ride out throttled polls; the reimage still finishes once.
    await admin.set_faults(
        name, FaultSpec(transient_error_share=0.3, transient_status_codes=[429], retry_after_seconds=0)
    )
    await (
        await compute.virtual_machine_scale_set_vms.begin_reimage(RG, name, "1", retry_backoff_factor=0)
    ).result()
    await admin.set_faults(name, FaultSpec())
    assert len(await admin.operations(name)) == 1


async def test_restart_keeps_state_and_certificate(
    admin: EmulatorAdmin, emulator: tuple[int, Path, list[Any]]
) -> None:
    port, db, running = emulator
    name = await new_set(admin)
    ca_before = processes.emulator_ca_file(db).read_bytes()
    processes.stop(running[-1])
    running.append(processes.start_emulator(port, db, db.parent / "emulator-2.log"))
    assert processes.emulator_ca_file(db).read_bytes() == ca_before
    async with EmulatorAdmin(processes.emulator_url(port), processes.emulator_ca_file(db)) as again:
        assert name in await again.list_scale_sets()
