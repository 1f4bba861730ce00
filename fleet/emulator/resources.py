"""The emulator's state as Azure Resource Manager documents (camelCase, `properties` envelopes),
shaped after the Compute REST API and azure-mgmt-compute's models, field for field."""

from __future__ import annotations

import functools
import json
import uuid
from typing import Any

from fleet.emulator.cloud import (
    HEALTH_EXTENSION,
    HEALTH_PUBLISHER,
    HEALTH_TYPE,
    PROVIDER,
    SUBSCRIPTION,
    disk_id,
    iso,
    resource_id,
)
from fleet.emulator.sizes import VmSize, family_display
from models.fleet import (
    ExtensionSpec,
    HealthProbe,
    HealthState,
    InstanceExtension,
    InstanceView,
    ScaleSetSpec,
)
from models.image import ImageReference

__all__ = ["HEALTH_EXTENSION", "HEALTH_PUBLISHER", "HEALTH_TYPE"]
NETWORK = PROVIDER.removesuffix("Microsoft.Compute") + "Microsoft.Network"
HEALTH_PROBE = "health"
HEALTH_RULE = "app"
IP_CONFIGURATION = "/ipConfigurations/ipconfig1"
# Azure's display names of regions, as gallery replication shows them.
REGION_NAMES = {
    "westeurope": "West Europe",
    "northeurope": "North Europe",
    "eastus": "East US",
    "eastus2": "East US 2",
    "westus": "West US",
    "westus2": "West US 2",
    "westus3": "West US 3",
    "centralus": "Central US",
    "uksouth": "UK South",
    "francecentral": "France Central",
    "germanywestcentral": "Germany West Central",
    "swedencentral": "Sweden Central",
    "southeastasia": "Southeast Asia",
    "japaneast": "Japan East",
    "australiaeast": "Australia East",
}


def region_name(location: str) -> str:
    return REGION_NAMES.get(location.lower(), location)


@functools.lru_cache(maxsize=65_536)  # every render of every instance asks for its vmId
def stable_uuid(*keys: object) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(map(str, keys))))


def image_reference(image: ImageReference, *, exact: bool) -> dict[str, Any]:
    """imageReference as Azure shows it: the model's `version`, plus `exactVersion` on a VM."""
    if image.id:
        # A gallery image id names a version only when the model pins one.
        pinned = image.version != "latest"
        document: dict[str, Any] = {"id": f"{image.id}/versions/{image.version}" if pinned else image.id}
    else:
        document = {
            "publisher": image.publisher,
            "offer": image.offer,
            "sku": image.sku,
            "version": image.version,
        }
    if exact:
        document["exactVersion"] = image.resolved_version
    return document


def probe_settings(spec: ScaleSetSpec) -> dict[str, Any]:
    """How the set's application is probed, as the extension's settings and a load balancer's
    probe both spell it."""
    settings = spec.extension
    document: dict[str, Any] = {
        "protocol": settings.protocol,
        "port": settings.port,
        "intervalInSeconds": settings.interval_in_seconds,
        "numberOfProbes": settings.number_of_probes,
    }
    if settings.protocol != "tcp":
        document["requestPath"] = settings.request_path
    return document


def health_extension(spec: ScaleSetSpec) -> dict[str, Any]:
    settings = spec.extension
    document = probe_settings(spec)
    if settings.grace_period is not None:
        document["gracePeriod"] = settings.grace_period
    return {
        "name": HEALTH_EXTENSION,
        "id": f"{resource_id(spec.name)}/extensions/{HEALTH_EXTENSION}",
        "type": "Microsoft.Compute/virtualMachineScaleSets/extensions",
        "properties": {
            "publisher": HEALTH_PUBLISHER,
            "type": HEALTH_TYPE,
            # Rich health states came with version 2.0; 1.0 reads answers as binary.
            "typeHandlerVersion": "2.0" if settings.rich else "1.0",
            "autoUpgradeMinorVersion": True,
            "settings": document,
            "provisioningState": "Succeeded",
        },
    }


def load_balancer_id(name: str) -> str:
    return f"{NETWORK}/loadBalancers/{name}-lb"


def health_probe_id(name: str) -> str:
    return f"{load_balancer_id(name)}/probes/{HEALTH_PROBE}"


def nic_id(spec: ScaleSetSpec, instance_id: str) -> str:
    """The instance's network interface (Uniform: under the scale set VM; Flexible: its own)."""
    if spec.orchestration_mode == "Flexible":
        return f"{NETWORK}/networkInterfaces/{instance_id}-nic"
    return f"{resource_id(spec.name)}/virtualMachines/{instance_id}/networkInterfaces/{spec.name}-nic"


def network_profile(spec: ScaleSetSpec) -> dict[str, Any]:
    """The model's networkProfile: a NIC in the load balancer's pool; healthProbe when the set
    uses the load balancer's probe as its health source."""
    pool = f"{load_balancer_id(spec.name)}/backendAddressPools/pool"
    profile: dict[str, Any] = {
        "networkInterfaceConfigurations": [
            {
                "name": f"{spec.name}-nic",
                "properties": {
                    "primary": True,
                    "ipConfigurations": [
                        {
                            "name": "ipconfig1",
                            "properties": {"loadBalancerBackendAddressPools": [{"id": pool}]},
                        }
                    ],
                },
            }
        ]
    }
    if spec.has_health_probe:
        profile["healthProbe"] = {"id": health_probe_id(spec.name)}
    return profile


def load_balancer(spec: ScaleSetSpec) -> dict[str, Any]:
    """The set's load balancer: one probe of the application (its settings are the health
    extension's: healthExtension) and the rule that uses it."""
    settings = spec.extension
    lb_id = load_balancer_id(spec.name)
    probe = probe_settings(spec)
    probe.update(protocol=settings.protocol.capitalize(), probeThreshold=settings.number_of_probes)
    return {
        "name": f"{spec.name}-lb",
        "id": lb_id,
        "type": "Microsoft.Network/loadBalancers",
        "location": spec.location,
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {
            "provisioningState": "Succeeded",
            "backendAddressPools": [{"name": "pool", "id": f"{lb_id}/backendAddressPools/pool"}],
            "probes": [{"name": HEALTH_PROBE, "id": health_probe_id(spec.name), "properties": probe}],
            "loadBalancingRules": [
                {
                    "name": HEALTH_RULE,
                    "id": f"{lb_id}/loadBalancingRules/{HEALTH_RULE}",
                    "properties": {
                        "protocol": "Tcp",
                        "frontendPort": settings.port,
                        "backendPort": settings.port,
                        "probe": {"id": health_probe_id(spec.name)},
                        "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/pool"},
                    },
                }
            ],
        },
    }


def rule_health(spec: ScaleSetSpec, answers: list[tuple[InstanceView, HealthProbe]]) -> dict[str, Any]:
    """LoadBalancerHealthPerRule: each backend address Up or Down, as the probe sees it."""
    addresses = []
    for ordinal, (instance, probe) in enumerate(answers):
        up = probe.state == HealthState.HEALTHY
        address: dict[str, Any] = {
            "ipAddress": f"10.{ordinal // 65536 % 256}.{ordinal // 256 % 256}.{ordinal % 256 + 4}",
            "networkInterfaceIPConfigurationId": nic_id(spec, instance.instance_id) + IP_CONFIGURATION,
            "state": "Up" if up else "Down",
        }
        if not up:
            address["reason"] = f"probe failed: {probe.detail or probe.state.value}"
        addresses.append(address)
    count = sum(1 for a in addresses if a["state"] == "Up")
    return {"up": count, "down": len(addresses) - count, "loadBalancerBackendAddresses": addresses}


def model_extension(spec: ScaleSetSpec, extension: ExtensionSpec) -> dict[str, Any]:
    """One extension of the scale set's model (VirtualMachineScaleSetExtension)."""
    return {
        "name": extension.name,
        "id": f"{resource_id(spec.name)}/extensions/{extension.name}",
        "type": "Microsoft.Compute/virtualMachineScaleSets/extensions",
        "properties": {
            "publisher": extension.publisher,
            "type": extension.type_,
            "typeHandlerVersion": extension.type_handler_version,
            "autoUpgradeMinorVersion": extension.auto_upgrade_minor_version,
            "enableAutomaticUpgrade": extension.enable_automatic_upgrade,
            "provisioningState": "Succeeded",
        },
    }


def _provisioning(extension: InstanceExtension) -> str:
    if extension.failed:
        return "Failed"
    return "Updating" if extension.transitioning else "Succeeded"


def _extension_status(extension: InstanceExtension) -> dict[str, Any]:
    code = extension.status
    if extension.failed:
        status = _status(code, "Provisioning failed", "Error", extension.message)
    elif extension.transitioning:
        status = _status(code, "Transitioning", message=extension.message)
    else:
        status = _status(code, "Provisioning succeeded", message=extension.message or "Enable succeeded")
    if extension.time is not None:
        status["time"] = extension.time.isoformat().replace("+00:00", "Z")
    return status


def extension_instance_view(extension: InstanceExtension) -> dict[str, Any]:
    """instanceView.extensions[] of an extension other than the Application Health one."""
    return {
        "name": extension.name,
        "type": extension.type_,
        "typeHandlerVersion": extension.type_handler_version,
        "statuses": [_extension_status(extension)],
    }


def instance_extension(
    spec: ScaleSetSpec, instance: InstanceView, extension: InstanceExtension, expand: bool
) -> dict[str, Any]:
    """An instance's extension as a resource (VirtualMachineScaleSetVMExtension on Uniform,
    VirtualMachineExtension on Flexible): the VM's `resources` and the extension routes."""
    publisher, _, type_ = extension.type_.rpartition(".")
    model = next((e for e in spec.extensions if e.name == extension.name), None)
    properties: dict[str, Any] = {
        "publisher": publisher,
        "type": type_,
        "typeHandlerVersion": extension.type_handler_version,
        "autoUpgradeMinorVersion": model.auto_upgrade_minor_version if model else False,
        "enableAutomaticUpgrade": model.enable_automatic_upgrade if model else False,
        "provisioningState": _provisioning(extension),
    }
    if expand:
        properties["instanceView"] = extension_instance_view(extension)
    if spec.orchestration_mode == "Flexible":
        return {
            "name": extension.name,
            "id": f"{PROVIDER}/virtualMachines/{instance.instance_id}/extensions/{extension.name}",
            "type": "Microsoft.Compute/virtualMachines/extensions",
            "location": spec.location,
            "properties": properties,
        }
    return {
        "name": extension.name,
        "id": f"{resource_id(spec.name)}/virtualMachines/{instance.instance_id}/extensions/{extension.name}",
        "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/extensions",
        "properties": properties,
    }


def _vm_resources(spec: ScaleSetSpec, instance: InstanceView) -> list[dict[str, Any]]:
    """The VM's extension resources (besides the Application Health extension)."""
    documents = []
    for extension in instance.extensions:
        if extension.name == HEALTH_EXTENSION:
            continue
        document = instance_extension(spec, instance, extension, False)
        if spec.orchestration_mode != "Flexible":  # `resources` are VirtualMachineExtensions
            document = {**document, "type": "Microsoft.Compute/virtualMachines/extensions"}
        documents.append({**document, "location": spec.location})
    return documents


def scale_set(spec: ScaleSetSpec, etag: int, created_at: float, capacity: int) -> dict[str, Any]:
    flexible = spec.orchestration_mode == "Flexible"
    storage: dict[str, Any] = {
        "imageReference": image_reference(spec.image_reference, exact=False),
        "osDisk": {
            "createOption": "FromImage",
            "caching": "ReadWrite",
            "osType": "Linux",
            "diskSizeGB": 30,
            "managedDisk": {"storageAccountType": "Premium_LRS"},
        },
        "dataDisks": [
            {
                "lun": lun,
                "createOption": "Empty",
                "caching": "None",
                "diskSizeGB": 128,
                "managedDisk": {"storageAccountType": "Premium_LRS"},
            }
            for lun in range(spec.data_disks_per_instance)
        ],
    }
    upgrade_policy: dict[str, Any] = {
        "mode": spec.upgrade_mode,
        "automaticOSUpgradePolicy": {
            "enableAutomaticOSUpgrade": spec.automatic_os_upgrade,
            "disableAutomaticRollback": False,
        },
    }
    if spec.rolling_upgrade_policy is not None:
        upgrade_policy["rollingUpgradePolicy"] = spec.rolling_upgrade_policy.to_json()
    properties: dict[str, Any] = {
        "orchestrationMode": spec.orchestration_mode,
        "upgradePolicy": upgrade_policy,
        "virtualMachineProfile": {
            "osProfile": {"computerNamePrefix": spec.name[:9], "adminUsername": "azureuser"},
            "storageProfile": storage,
            "extensionProfile": {
                "extensions": [
                    *([health_extension(spec)] if spec.has_health_extension else []),
                    *(model_extension(spec, e) for e in spec.extensions),
                ]
            },
            "networkProfile": network_profile(spec),
        },
        "provisioningState": "Succeeded",
        "overprovision": False,
        "singlePlacementGroup": False,
        "uniqueId": stable_uuid(spec.name, created_at),
        "timeCreated": iso(created_at),
    }
    if flexible:
        properties["platformFaultDomainCount"] = 1
    document: dict[str, Any] = {
        "name": spec.name,
        "id": resource_id(spec.name),
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": spec.location,
        "sku": {"name": spec.vm_size, "tier": "Standard", "capacity": capacity},
        "etag": f'"{etag}"',
        "properties": properties,
    }
    if spec.zones:
        document["zones"] = spec.zones
    return document


def _status(code: str, display: str, level: str = "Info", message: str | None = None) -> dict[str, Any]:
    document = {"code": code, "level": level, "displayStatus": display}
    if message is not None:
        document["message"] = message
    return document


def instance_view(spec: ScaleSetSpec, instance: InstanceView, since: float) -> dict[str, Any]:
    """The VM's instanceView: provisioning and power states, the health extension, vmHealth."""
    provisioning = instance.provisioning_state
    if provisioning == "Failed":
        message = f"the last operation failed with {instance.error_code}"
        first = _status(
            f"ProvisioningState/failed/{instance.error_code}", "Provisioning failed", "Error", message
        )
    else:
        first = _status(f"ProvisioningState/{provisioning.lower()}", f"Provisioning {provisioning.lower()}")
    first["time"] = iso(since)
    power = instance.power_state
    statuses = [first, _status(f"PowerState/{power}", f"VM {power}")]
    health = instance.health
    substatuses = [
        _status(
            f"ComponentStatus/ApplicationHealthState/{health.value.lower()}",
            "Provisioning succeeded",
            "Info" if health == HealthState.HEALTHY else "Warning",
            f"Application health: {health.value}",
        )
    ]
    metrics = instance.custom_metrics
    if metrics.phase_ordering_number is not None or metrics.skip_upgrade:
        # A JSON string, as the extension passes the application's customMetrics on.
        text = json.dumps({"rollingUpgrade": metrics.to_json()})
        substatuses.append(
            _status("ComponentStatus/CustomMetrics/succeeded", "Provisioning succeeded", message=text)
        )
    extension = {
        "name": HEALTH_EXTENSION,
        "type": f"{HEALTH_PUBLISHER}.{HEALTH_TYPE}",
        "typeHandlerVersion": "2.0.12" if spec.extension.rich else "1.0.6",
        "statuses": [_status("ProvisioningState/succeeded", "Provisioning succeeded")],
        "substatuses": substatuses,
    }
    others = [extension_instance_view(e) for e in instance.extensions if e.name != HEALTH_EXTENSION]
    document = {
        "platformUpdateDomain": instance.platform_update_domain,
        "platformFaultDomain": instance.platform_fault_domain,
        "computerName": computer_name(spec, instance),
        "osName": "ubuntu",
        "osVersion": "22.04",
        "vmAgent": {
            "vmAgentVersion": "2.9.1.1",
            "statuses": [_status("ProvisioningState/succeeded", "Ready", message="Guest Agent is running")],
        },
        "disks": [
            {"name": disk, "statuses": [_status("ProvisioningState/succeeded", "Provisioning succeeded")]}
            for disk in [instance.os_disk.name, *(d.name for d in instance.data_disks)]
        ],
        "extensions": [extension, *others],
        "vmHealth": {
            "status": _status(f"HealthState/{health.value.lower()}", f"The VM is {health.value.lower()}")
        },
        "statuses": statuses,
        "hyperVGeneration": "V2",
    }
    if not spec.has_health_extension:  # vmHealth is the extension's report
        del document["vmHealth"]
        document["extensions"] = others
    return document


def computer_name(spec: ScaleSetSpec, instance: InstanceView) -> str:
    if spec.orchestration_mode == "Flexible":
        return instance.instance_id.replace("_", "")[:15]
    return f"{spec.name[:9]}{int(instance.instance_id):06X}"


def _storage(instance: InstanceView) -> dict[str, Any]:
    return {
        "imageReference": image_reference(instance.image_reference, exact=True),
        "osDisk": {
            "osType": "Linux",
            "name": instance.os_disk.name,
            "createOption": "FromImage",
            "caching": "ReadWrite",
            "diskSizeGB": 30,
            "deleteOption": "Detach",
            "managedDisk": {"storageAccountType": "Premium_LRS", "id": disk_id(instance.os_disk.name)},
        },
        "dataDisks": [
            {
                "lun": disk.lun,
                "name": disk.name,
                "createOption": "Empty",
                "caching": "None",
                "diskSizeGB": disk.disk_size_gb,
                "managedDisk": {"storageAccountType": "Premium_LRS", "id": disk_id(disk.name)},
            }
            for disk in instance.data_disks
        ],
    }


def scale_set_vm(
    spec: ScaleSetSpec, instance: InstanceView, on_model: bool, since: float, expand: bool
) -> dict[str, Any]:
    """A Uniform instance (VirtualMachineScaleSetVM)."""
    properties: dict[str, Any] = {
        "latestModelApplied": on_model,
        "vmId": stable_uuid(spec.name, instance.instance_id),
        "hardwareProfile": {"vmSize": spec.vm_size},
        "storageProfile": _storage(instance),
        "osProfile": {"computerName": computer_name(spec, instance), "adminUsername": "azureuser"},
        "provisioningState": instance.provisioning_state,
        "networkProfile": {"networkInterfaces": [{"id": nic_id(spec, instance.instance_id)}]},
    }
    if expand:
        properties["instanceView"] = instance_view(spec, instance, since)
    document: dict[str, Any] = {
        "name": f"{spec.name}_{instance.instance_id}",
        "id": f"{resource_id(spec.name)}/virtualMachines/{instance.instance_id}",
        "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
        "location": spec.location,
        "instanceId": instance.instance_id,
        "sku": {"name": spec.vm_size, "tier": "Standard"},
        "properties": properties,
    }
    if resources := _vm_resources(spec, instance):
        document["resources"] = resources
    if instance.zone:
        document["zones"] = [instance.zone]
    return document


def virtual_machine(spec: ScaleSetSpec, instance: InstanceView, since: float, expand: bool) -> dict[str, Any]:
    """A Flexible instance: a plain VirtualMachine belonging to the scale set."""
    properties: dict[str, Any] = {
        "vmId": stable_uuid(spec.name, instance.instance_id),
        "hardwareProfile": {"vmSize": spec.vm_size},
        "storageProfile": _storage(instance),
        "osProfile": {"computerName": computer_name(spec, instance), "adminUsername": "azureuser"},
        "virtualMachineScaleSet": {"id": resource_id(spec.name)},
        "provisioningState": instance.provisioning_state,
        "networkProfile": {"networkInterfaces": [{"id": nic_id(spec, instance.instance_id)}]},
    }
    if expand:
        properties["instanceView"] = instance_view(spec, instance, since)
    document: dict[str, Any] = {
        "name": instance.instance_id,
        "id": f"{PROVIDER}/virtualMachines/{instance.instance_id}",
        "type": "Microsoft.Compute/virtualMachines",
        "location": spec.location,
        "properties": properties,
    }
    if resources := _vm_resources(spec, instance):
        document["resources"] = resources
    if instance.zone:
        document["zones"] = [instance.zone]
    return document


def gallery_version(
    image_id: str,
    version: str,
    location: str,
    regions: list[str],
    excluded_regions: list[str],
    exclude: bool,
    published: float,
    end_of_life: str | None,
    replication: bool,
) -> dict[str, Any]:
    """A GalleryImageVersion; replicationStatus only with $expand=ReplicationStatus."""
    targets = list(REGION_NAMES) if "*" in regions else regions
    profile: dict[str, Any] = {
        "targetRegions": [
            {
                "name": region_name(region),
                "regionalReplicaCount": 1,
                "storageAccountType": "Standard_LRS",
                "excludeFromLatest": exclude or region in excluded_regions,
            }
            for region in targets
        ],
        "replicaCount": 1,
        "excludeFromLatest": exclude,
        "publishedDate": iso(published),
        "storageAccountType": "Standard_LRS",
    }
    if end_of_life:
        profile["endOfLifeDate"] = end_of_life
    properties: dict[str, Any] = {
        "publishingProfile": profile,
        "storageProfile": {"osDiskImage": {"sizeInGB": 30, "hostCaching": "ReadWrite"}},
        "provisioningState": "Succeeded",
    }
    if replication:
        properties["replicationStatus"] = {
            "aggregatedState": "Completed",
            "summary": [
                {"region": region_name(region), "state": "Completed", "details": "", "progress": 100}
                for region in targets
            ],
        }
    return {
        "name": version,
        "id": f"{image_id}/versions/{version}",
        "type": "Microsoft.Compute/galleries/images/versions",
        "location": location,
        "properties": properties,
    }


def usage(name: str, current: int, limit: int) -> dict[str, Any]:
    """One entry of the Compute usages API (Usage)."""
    return {
        "unit": "Count",
        "currentValue": current,
        "limit": limit,
        "name": {"value": name, "localizedValue": family_display(name)},
    }


def resource_sku(name: str, size: VmSize, locations: list[str]) -> dict[str, Any]:
    """A VM size as the resource SKUs API lists it (ResourceSku): its family and vCPUs."""
    return {
        "resourceType": "virtualMachines",
        "name": name,
        "tier": "Standard",
        "size": name.removeprefix("Standard_"),
        "family": size.family,
        "locations": locations,
        "locationInfo": [{"location": location, "zones": ["1", "2", "3"]} for location in locations],
        "capabilities": [
            {"name": "vCPUs", "value": str(size.cores)},
            {"name": "MemoryGB", "value": str(size.memory_gb)},
        ],
        "restrictions": [],
    }


def marketplace_version(location: str, publisher: str, offer: str, sku: str, version: str) -> dict[str, Any]:
    return {
        "name": version,
        "location": location,
        "id": f"/Subscriptions/{SUBSCRIPTION}/Providers/Microsoft.Compute/Locations/{location}/Publishers/"
        f"{publisher}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions/{version}",
    }


def extension_version(location: str, publisher: str, type_: str, version: str) -> dict[str, Any]:
    return {
        "name": version,
        "location": location,
        "id": f"/Subscriptions/{SUBSCRIPTION}/Providers/Microsoft.Compute/Locations/{location}/Publishers/"
        f"{publisher}/ArtifactTypes/VMExtension/Types/{type_}/Versions/{version}",
    }
