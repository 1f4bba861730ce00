"""Extensions through the product's Azure back end (AzureFleet, the Azure SDK over HTTPS) against
the fleet emulator: the model's extensionProfile and each instance's installed versions (Uniform
and Flexible), installs of one version on one instance as long-running operations sent once,
the extension faults (a version that fails to install, one that breaks health) and the
publisher's fix, and the extension image versions per region in numeric order."""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from typing import Any

import httpx
import pytest

from fleet.azure.backend import AzureFleet
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetRequestError, FleetTransientError
from models.fleet import (
    FaultSpec,
    FleetOperation,
    HealthState,
    InstanceView,
    OperationKind,
    OperationStatus,
    ScaleSetSpec,
)
from starter.processes import EmulatorAddress
from tests.helpers.arm import PUBLISHER, agent, unknown_fields

FAST = {
    "reimageSeconds": [0.2, 0.4],
    "restoreSeconds": [0.2, 0.4],
    "bootSeconds": [0.1, 0.2],
    "extensionSeconds": [0.6, 0.8],
}
RG = "fleet-emulator"
SUB = "00000000-0000-0000-0000-000000000000"
PROVIDER = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def publish(fleet: EmulatorAdmin, type_: str, *versions: str, regions: list[str] | None = None) -> None:
    for version in versions:
        await fleet.publish_extension_version(PUBLISHER, type_, version, regions)


async def create(fleet: EmulatorAdmin, name: str, extensions: list[dict[str, Any]], **spec: Any) -> None:
    body = {
        "name": name,
        "location": "westeurope",
        "capacity": 3,
        "timing": FAST,
        "imageReference": {
            "publisher": "Canonical",
            "offer": "ext-tests",
            "sku": "server",
            "version": "1.0.0",
        },
        "extensions": extensions,
        **spec,
    }
    await fleet.create_scale_set(ScaleSetSpec.model_validate(body))


async def until_done(azure: AzureFleet, operation: FleetOperation, timeout: float = 20) -> FleetOperation:
    deadline = time.monotonic() + timeout
    while operation.status == OperationStatus.IN_PROGRESS:
        assert time.monotonic() < deadline, f"operation {operation.operation_id} still in progress"
        await asyncio.sleep(0.2)
        operation = await azure.get_operation(operation)
    return operation


def installed(instance: InstanceView, name: str = "agent") -> tuple[str | None, str]:
    extension = instance.extension(name)
    assert extension is not None, f"{name} is not installed on {instance.instance_id}"
    return extension.type_handler_version, extension.status


# --- reads --------------------------------------------------------------------------------------


async def test_uniform_reads_the_model_and_installed_versions(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_, other = unique("Agent"), unique("Security")
    await publish(fleet, type_, "1.2.0", "1.2.3", "1.3.0", "2.0.0")
    await publish(fleet, other, "3.1.0", "3.4.2", "4.0.0")
    name = unique("ext-uni-")
    await create(
        fleet,
        name,
        [
            agent(type_),  # 1.2: its newest patch
            {
                **agent(other, "3.1"),
                "name": "security",
                "autoUpgradeMinorVersion": True,
                "enableAutomaticUpgrade": False,
            },  # autoUpgradeMinorVersion: the newest minor of 3
        ],
    )
    view = await azure.get_scale_set(name)
    assert [e.name for e in view.extensions] == ["HealthExtension", "agent", "security"]
    model = view.extensions[1]
    assert (model.publisher, model.type_, model.type_handler_version) == (PUBLISHER, type_, "1.2")
    assert (model.auto_upgrade_minor_version, model.enable_automatic_upgrade) == (False, True)
    assert view.extensions[2].auto_upgrade_minor_version and not view.extensions[2].enable_automatic_upgrade
    assert view.extensions[0].type_ == "ApplicationHealthLinux"
    for instance in view.instances:
        assert installed(instance) == ("1.2.3", "ProvisioningState/succeeded")
        assert installed(instance, "security") == ("3.4.2", "ProvisioningState/succeeded")  # newest minor
        agent_view = instance.extension("agent")
        assert agent_view is not None and agent_view.type_ == f"{PUBLISHER}.{type_}" and agent_view.succeeded
        assert instance.extension("HealthExtension") is not None
    one = await azure.get_instance(name, "1")
    assert installed(one) == ("1.2.3", "ProvisioningState/succeeded")
    # The admin view says the same (what `fleet show` prints).
    shown = await fleet.show_scale_set(name)
    assert [e.name for e in shown.extensions] == ["HealthExtension", "agent", "security"]
    assert installed(shown.instances[0]) == ("1.2.3", "ProvisioningState/succeeded")
    # The SDK reads the instance's extension resource as Azure's model.
    resource = await azure.client.virtual_machine_scale_set_vm_extensions.get(
        RG, name, "0", "agent", expand="instanceView"
    )
    assert resource.properties is not None
    assert resource.properties.type_handler_version == "1.2.3"
    assert resource.properties.instance_view is not None
    assert resource.properties.instance_view.statuses[0].code == "ProvisioningState/succeeded"


async def test_flexible_reads_and_scale_out_installs_the_model(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_ = unique("Agent")  # nothing published yet: create publishes 2.0.0 on the way
    name = unique("ext-flex-")
    await create(fleet, name, [agent(type_, "2.0")], orchestrationMode="Flexible", capacity=2)
    view = await azure.get_scale_set(name)
    assert view.orchestration_mode == "Flexible"
    assert [e.name for e in view.extensions] == ["HealthExtension", "agent"]
    assert all(installed(i) == ("2.0.0", "ProvisioningState/succeeded") for i in view.instances)
    vm = view.instances[0].instance_id
    assert installed(await azure.get_instance(name, vm)) == ("2.0.0", "ProvisioningState/succeeded")
    resource = await azure.client.virtual_machine_extensions.get(RG, vm, "agent")
    assert resource.properties is not None and resource.properties.type_handler_version == "2.0.0"
    assert await azure.extension_versions(PUBLISHER, type_, "westeurope") == ["2.0.0"]

    await publish(fleet, type_, "2.0.4")
    grown = await fleet.scale_out(name, 1)
    assert installed(grown.instances[-1]) == ("2.0.4", "ProvisioningState/succeeded")
    assert installed(grown.instances[0]) == ("2.0.0", "ProvisioningState/succeeded")


async def raw(emulator: EmulatorAddress, path: str, **params: str) -> Any:
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(emulator.ca_file))) as http:
        answer = await http.get(
            emulator.url + path,
            params={"api-version": "2024-07-01", **params},
            headers={"Authorization": "Bearer x"},
        )
        return answer.json()


async def test_extension_documents_lose_no_field_to_the_sdk(
    fleet: EmulatorAdmin, azure: AzureFleet, emulator: EmulatorAddress
) -> None:
    """Every key the emulator writes about extensions is one azure-mgmt-compute's models know."""
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3")
    uni, flex = unique("ext-shape-"), unique("ext-shape-")
    await create(fleet, uni, [agent(type_)], capacity=1)
    await create(fleet, flex, [agent(type_)], capacity=1, orchestrationMode="Flexible")
    sdk = azure.client
    vmss = await sdk.virtual_machine_scale_sets.get(RG, uni)
    assert unknown_fields(vmss, await raw(emulator, f"{PROVIDER}/virtualMachineScaleSets/{uni}")) == []
    vms = [vm async for vm in sdk.virtual_machine_scale_set_vms.list(RG, uni, expand="instanceView")]
    page = await raw(
        emulator, f"{PROVIDER}/virtualMachineScaleSets/{uni}/virtualMachines", **{"$expand": "instanceView"}
    )
    assert page["value"][0]["resources"][0]["name"] == "agent"
    assert unknown_fields(vms[0], page["value"][0]) == []
    extension = await sdk.virtual_machine_scale_set_vm_extensions.get(
        RG, uni, "0", "agent", expand="instanceView"
    )
    document = await raw(
        emulator,
        f"{PROVIDER}/virtualMachineScaleSets/{uni}/virtualMachines/0/extensions/agent",
        **{"$expand": "instanceView"},
    )
    assert unknown_fields(extension, document) == []
    vm_name = (await azure.get_scale_set(flex)).instances[0].instance_id
    vm = await sdk.virtual_machines.get(RG, vm_name, expand="instanceView")
    document = await raw(emulator, f"{PROVIDER}/virtualMachines/{vm_name}", **{"$expand": "instanceView"})
    assert unknown_fields(vm, document) == []
    listed = await sdk.virtual_machine_extensions.list(RG, vm_name)
    assert listed.value is not None and [e.name for e in listed.value] == ["HealthExtension", "agent"]


# --- installs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["Uniform", "Flexible"])
async def test_an_install_changes_the_version_once(
    fleet: EmulatorAdmin, azure: AzureFleet, mode: str
) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    name = unique("ext-install-")
    await create(fleet, name, [agent(type_)], orchestrationMode=mode, capacity=2)
    first, second = (await azure.get_scale_set(name)).instances
    azure.calls.clear()
    operation = await azure.begin_install_extension(name, first.instance_id, "agent", "1.3.0")
    assert azure.calls["actions"] == 1
    assert (
        operation.kind == OperationKind.INSTALL_EXTENSION and operation.status == OperationStatus.IN_PROGRESS
    )
    assert (operation.extension_name, operation.extension_version) == ("agent", "1.3.0")
    assert operation.status_url and operation.operation_id in operation.status_url
    assert operation.retry_after_seconds == 1
    # While it installs, the VM runs on (Updating, not stopped) and the extension is transitioning.
    during = await azure.get_instance(name, first.instance_id)
    assert (during.provisioning_state, during.power_state) == ("Updating", "running")
    version, status = installed(during)
    assert version == "1.2.3" and status == "ProvisioningState/transitioning"
    assert during.health == HealthState.HEALTHY
    done = await until_done(azure, operation)
    assert done.status == OperationStatus.SUCCEEDED and done.end_time is not None
    after = await azure.get_instance(name, first.instance_id)
    assert installed(after) == ("1.3.0", "ProvisioningState/succeeded")
    assert after.provisioning_state == "Succeeded"
    assert installed(await azure.get_instance(name, second.instance_id))[0] == "1.2.3"
    log = await fleet.operations(name)
    assert [(o.kind, o.instance_id, o.extension_name, o.extension_version, o.status) for o in log] == [
        (OperationKind.INSTALL_EXTENSION, first.instance_id, "agent", "1.3.0", OperationStatus.SUCCEEDED)
    ]
    counts = await fleet.calls(name)
    shape = (
        "virtualMachines/*/extensions/*"
        if mode == "Flexible"
        else ("virtualMachineScaleSets/*/virtualMachines/*/extensions/*")
    )
    assert counts.requests.get(f"PATCH {shape}") == 1


async def test_a_resent_install_is_a_second_install(fleet: EmulatorAdmin, azure: AzureFleet) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    name = unique("ext-resend-")
    await create(fleet, name, [agent(type_)], capacity=1)
    operation = await azure.begin_install_extension(name, "0", "agent", "1.3.0")
    with pytest.raises(FleetTransientError) as busy:  # the instance is busy with the first
        await azure.begin_install_extension(name, "0", "agent", "1.3.0")
    assert busy.value.status == 409 and busy.value.code == "AnotherOperationInProgress"
    assert not busy.value.maybe_accepted
    await until_done(azure, operation)
    again = await azure.begin_install_extension(name, "0", "agent", "1.3.0")  # same version, resent
    assert again.operation_id != operation.operation_id
    assert (await until_done(azure, again)).status == OperationStatus.SUCCEEDED
    log = await fleet.operations(name)
    assert [(o.kind, o.extension_version) for o in log] == [(OperationKind.INSTALL_EXTENSION, "1.3.0")] * 2


async def test_unknown_versions_and_extensions_are_refused(fleet: EmulatorAdmin, azure: AzureFleet) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3")
    await publish(fleet, type_, "1.4.0", regions=["eastus"])
    name = unique("ext-refuse-")
    await create(fleet, name, [agent(type_)], capacity=1)
    with pytest.raises(FleetRequestError) as elsewhere:  # published, but not in westeurope
        await azure.begin_install_extension(name, "0", "agent", "1.4.0")
    assert (elsewhere.value.status, elsewhere.value.code) == (404, "ArtifactNotFound")
    assert "1.2.3" in elsewhere.value.message
    with pytest.raises(FleetRequestError) as missing:
        await azure.begin_install_extension(name, "0", "no-such-extension", "1.2.3")
    assert missing.value.status == 404
    with pytest.raises(FleetRequestError) as health:
        await azure.begin_install_extension(name, "0", "HealthExtension", "2.0.12")
    assert health.value.code == "OperationNotAllowed"
    assert await fleet.operations(name) == []


# --- faults -------------------------------------------------------------------------------------


async def test_a_failing_version_fails_until_the_publisher_fixes_it(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    name = unique("ext-fail-")
    await create(
        fleet, name, [agent(type_)], capacity=2, faults={"failingExtensionVersions": [f"{type_}:1.3"]}
    )
    failed = await until_done(azure, await azure.begin_install_extension(name, "0", "agent", "1.3.0"))
    assert failed.status == OperationStatus.FAILED
    assert failed.error is not None and failed.error.code == "VMExtensionProvisioningError"
    assert "agent" in failed.error.message and type_ in failed.error.message
    instance = await azure.get_instance(name, "0")
    assert (instance.provisioning_state, instance.error_code) == ("Failed", "VMExtensionProvisioningError")
    version, status = installed(instance)
    assert version == "1.3.0" and status.startswith("ProvisioningState/failed")
    extension = instance.extension("agent")
    assert extension is not None and extension.failed and extension.message

    # Back to the previous version: that one installs.
    back = await until_done(azure, await azure.begin_install_extension(name, "0", "agent", "1.2.3"))
    assert back.status == OperationStatus.SUCCEEDED
    restored = await azure.get_instance(name, "0")
    assert installed(restored) == ("1.2.3", "ProvisioningState/succeeded")
    assert (restored.provisioning_state, restored.error_code) == ("Succeeded", None)

    assert await fleet.fix_extension_version(PUBLISHER, type_, "1.3.0") == [name]
    fixed = await until_done(azure, await azure.begin_install_extension(name, "0", "agent", "1.3.0"))
    assert fixed.status == OperationStatus.SUCCEEDED
    assert installed(await azure.get_instance(name, "0")) == ("1.3.0", "ProvisioningState/succeeded")
    assert [o.status for o in await fleet.operations(name)] == [
        OperationStatus.FAILED,
        OperationStatus.SUCCEEDED,
        OperationStatus.SUCCEEDED,
    ]


async def test_an_unhealthy_version_breaks_health_until_another_is_installed(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    name = unique("ext-sick-")
    faults = {"unhealthyExtensionVersions": [f"{PUBLISHER}.{type_}:1.3.0"]}
    await create(fleet, name, [agent(type_)], capacity=2, faults=faults)
    assert set((await azure.read_health(name)).health.values()) == {HealthState.HEALTHY}
    done = await until_done(azure, await azure.begin_install_extension(name, "0", "agent", "1.3.0"))
    assert done.status == OperationStatus.SUCCEEDED  # it installs well; the application suffers
    reading = await azure.read_health(name)
    assert reading.health == {"0": HealthState.UNHEALTHY, "1": HealthState.HEALTHY}
    assert (await fleet.show_scale_set(name)).instances[0].health == HealthState.UNHEALTHY
    back = await until_done(azure, await azure.begin_install_extension(name, "0", "agent", "1.2.3"))
    assert back.status == OperationStatus.SUCCEEDED
    assert (await azure.read_health(name)).health == {"0": HealthState.HEALTHY, "1": HealthState.HEALTHY}


async def test_an_install_answered_500_after_acceptance_is_not_resent(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    name = unique("ext-500-")
    await create(fleet, name, [agent(type_)], capacity=1)
    await azure.get_instance(name, "0")  # the mode read, before the faults
    await fleet.set_faults(
        name, FaultSpec(transient_error_share=1.0, transient_status_codes=[500], after_accept_share=1.0)
    )
    with pytest.raises(FleetTransientError) as caught:
        await azure.begin_install_extension(name, "0", "agent", "1.3.0")
    assert caught.value.status == 500 and caught.value.maybe_accepted
    await fleet.set_faults(name, FaultSpec())
    log = await fleet.operations(name)
    assert [(o.kind, o.extension_version) for o in log] == [(OperationKind.INSTALL_EXTENSION, "1.3.0")]


async def test_an_install_whose_connection_drops_is_not_resent(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    name = unique("ext-drop-")
    await create(fleet, name, [agent(type_)], capacity=1)
    await azure.get_instance(name, "0")
    await fleet.set_faults(name, FaultSpec(dropped_connection_share=1.0))
    with pytest.raises(FleetTransientError) as caught:
        await azure.begin_install_extension(name, "0", "agent", "1.3.0")
    assert caught.value.code == "ConnectionDropped" and caught.value.maybe_accepted
    await fleet.set_faults(name, FaultSpec())
    assert len(await fleet.operations(name)) == 1


async def test_a_throttled_install_carries_retry_after_and_was_never_accepted(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    name = unique("ext-429-")
    await create(fleet, name, [agent(type_)], capacity=1)
    await azure.get_instance(name, "0")
    await fleet.set_faults(name, FaultSpec(throttle_calls=1, retry_after_seconds=7))
    with pytest.raises(FleetTransientError) as caught:
        await azure.begin_install_extension(name, "0", "agent", "1.3.0")
    assert caught.value.status == 429 and caught.value.retry_after == 7
    assert not caught.value.maybe_accepted
    await fleet.set_faults(name, FaultSpec())
    assert await fleet.operations(name) == []


# --- versions -----------------------------------------------------------------------------------


async def test_extension_versions_per_region_in_numeric_order(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    type_ = unique("Agent")
    await publish(fleet, type_, "1.9.0", "1.10.0", "1.2.0", regions=["westeurope"])
    await publish(fleet, type_, "1.11.0", regions=["eastus", "northeurope"])
    await publish(fleet, type_, "2.0.0")  # everywhere
    assert await azure.extension_versions(PUBLISHER, type_, "westeurope") == [
        "1.2.0",
        "1.9.0",
        "1.10.0",
        "2.0.0",
    ]
    assert await azure.extension_versions(PUBLISHER, type_, "eastus") == ["1.11.0", "2.0.0"]
    assert await azure.extension_versions(PUBLISHER, type_, "NorthEurope") == ["1.11.0", "2.0.0"]
    assert await azure.extension_versions(PUBLISHER, unique("Nothing"), "westeurope") == []
    # Azure's own $orderby=name sorts as strings; the back end never relies on it.
    listed = await azure.client.virtual_machine_extension_images.list_versions(
        "westeurope", PUBLISHER, type_, orderby="name"
    )
    assert [image.name for image in listed] == ["1.10.0", "1.2.0", "1.9.0", "2.0.0"]
    assert all(image.location == "westeurope" and image.id for image in listed)
    published = [v for v in await fleet.extension_versions() if v["type"] == type_]
    assert [(v["version"], v["regions"]) for v in published] == [
        ("1.2.0", ["westeurope"]),
        ("1.9.0", ["westeurope"]),
        ("1.10.0", ["westeurope"]),
        ("1.11.0", ["eastus", "northeurope"]),
        ("2.0.0", ["*"]),
    ]


@pytest.mark.parametrize("mode", ["Uniform", "Flexible"])
async def test_the_sdks_own_put_and_poller_install_and_add_extensions(
    fleet: EmulatorAdmin, azure: AzureFleet, mode: str
) -> None:
    """PUT (create_or_update) as another Azure client sends it, followed by azure-core's ARM
    poller to the end: an update of an installed extension (200) and a new one (201)."""
    type_, other = unique("Agent"), unique("Backup")
    await publish(fleet, type_, "1.2.3", "1.3.0")
    await publish(fleet, other, "5.0.1")
    name = unique("ext-put-")
    await create(fleet, name, [agent(type_)], orchestrationMode=mode, capacity=1)
    instance = (await azure.get_scale_set(name)).instances[0].instance_id
    sdk = azure.client

    async def put(extension: str, properties: dict[str, Any]) -> Any:
        body: dict[str, Any] = {"properties": properties}
        if mode == "Flexible":
            body["location"] = "westeurope"
            poller = await sdk.virtual_machine_extensions.begin_create_or_update(  # type: ignore[call-overload]  # a raw JSON body
                RG, instance, extension, body, polling_interval=0.1
            )
        else:
            poller = await sdk.virtual_machine_scale_set_vm_extensions.begin_create_or_update(  # type: ignore[call-overload]  # a raw JSON body
                RG, name, instance, extension, body, polling_interval=0.1
            )
        return await poller.result()

    updated = await put("agent", {"publisher": PUBLISHER, "type": type_, "typeHandlerVersion": "1.3.0"})
    assert updated.properties.type_handler_version == "1.3.0"
    added = await put("backup", {"publisher": PUBLISHER, "type": other, "typeHandlerVersion": "5.0"})
    assert added.properties.type_handler_version == "5.0.1"  # major.minor: its newest patch
    after = await azure.get_instance(name, instance)
    assert installed(after) == ("1.3.0", "ProvisioningState/succeeded")
    assert installed(after, "backup") == ("5.0.1", "ProvisioningState/succeeded")
    log = await fleet.operations(name)
    assert [(o.kind, o.extension_name, o.extension_version) for o in log] == [
        (OperationKind.INSTALL_EXTENSION, "agent", "1.3.0"),
        (OperationKind.INSTALL_EXTENSION, "backup", "5.0.1"),
    ]
