"""ARM JSON (as the REST API spells it) to the fleet's views: scale sets, instances, health.

Uniform instances (virtualMachineScaleSets/{vmss}/virtualMachines) and Flexible ones (plain
virtualMachines) share the VM shape under `properties`, so one mapping serves both.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from fleet.errors import FleetRequestError
from fleet.restore_points import image_restore_point
from models.base import describe_validation_error
from models.fleet import (
    CustomMetrics,
    DataDisk,
    ExtensionView,
    HealthProbe,
    HealthSource,
    HealthState,
    InstanceExtension,
    InstanceView,
    OsDisk,
    ScaleSetView,
)
from models.image import LATEST, ImageReference
from models.maintenance import OS_IMAGE, MaintenanceWindow
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy, UpgradePolicy

Json = dict[str, Any]

_HEALTH = {
    "healthy": HealthState.HEALTHY,
    "unhealthy": HealthState.UNHEALTHY,
    "initializing": HealthState.INITIALIZING,
    "unknown": HealthState.UNKNOWN,
}
CUSTOM_METRICS_STATUS = "ComponentStatus/CustomMetrics/succeeded"
# The Application Health extension: ApplicationHealthLinux or ApplicationHealthWindows.
HEALTH_EXTENSION_PUBLISHER = "microsoft.managedservices"
HEALTH_EXTENSION_TYPE = "applicationhealth"
# The settings the extension probes with, as its model's `settings` spell them.
HEALTH_EXTENSION_SETTINGS = (
    "protocol",
    "port",
    "requestPath",
    "intervalInSeconds",
    "numberOfProbes",
    "gracePeriod",
)
# A load balancer's per-instance answer (LoadBalancerHealthPerRule: Up or Down).
PROBE_STATES = {"up": HealthState.HEALTHY, "down": HealthState.UNHEALTHY}


def dig(document: Any, *path: str) -> Any:
    """document[path[0]][path[1]]...; None where any step is missing."""
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document


def image_of(raw: Json | None) -> ImageReference | None:
    """Azure's imageReference; a gallery id naming a version is split into id and version."""
    if not raw:
        return None
    image_id = raw.get("id") or raw.get("sharedGalleryImageId") or raw.get("communityGalleryImageId")
    fields: Json = {"exact_version": raw.get("exactVersion")}
    if image_id:
        definition, marker, version = image_id.partition("/versions/")
        fields.update(id=definition, version=version if marker else raw.get("version") or LATEST)
    else:
        fields.update(
            publisher=raw.get("publisher"),
            offer=raw.get("offer"),
            sku=raw.get("sku"),
            version=raw.get("version") or LATEST,
        )
    try:
        return ImageReference.model_validate(fields)
    except ValidationError:
        return None


def health_state(instance_view: Json | None) -> HealthState:
    code = dig(instance_view, "vmHealth", "status", "code")
    if not isinstance(code, str):
        return HealthState.UNKNOWN
    return _HEALTH.get(code.removeprefix("HealthState/").lower(), HealthState.UNKNOWN)


def custom_metrics(instance_view: Json | None) -> CustomMetrics:
    """The health extension's `rollingUpgrade` metrics: its CustomMetrics substatus message is a
    JSON string; anything unreadable is no metrics (the health state stands)."""
    for extension in dig(instance_view, "extensions") or []:
        for status in dig(extension, "substatuses") or []:
            if dig(status, "code") != CUSTOM_METRICS_STATUS:
                continue
            try:
                document = json.loads(status.get("message") or "")
                return CustomMetrics.model_validate(document.get("rollingUpgrade") or {})
            except (ValueError, AttributeError, TypeError, ValidationError):
                return CustomMetrics()
    return CustomMetrics()


def instance_extensions(vm: Json) -> list[InstanceExtension]:
    """The extensions installed on a VM: its instance view's `extensions` (name, "publisher.type",
    the exact typeHandlerVersion, the provisioning status); an extension only listed in the VM's
    `resources` (no instance view yet) with its resource's version and provisioning state."""
    found: dict[str, InstanceExtension] = {}
    for entry in dig(vm, "properties", "instanceView", "extensions") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        statuses = [s for s in entry.get("statuses") or [] if isinstance(s, dict)]
        status = next(
            (s for s in statuses if str(s.get("code") or "").startswith("ProvisioningState/")), None
        )
        found[str(entry["name"]).lower()] = InstanceExtension(
            name=str(entry["name"]),
            type_=str(entry.get("type") or ""),
            type_handler_version=entry.get("typeHandlerVersion"),
            status=str(status.get("code")) if status else "ProvisioningState/succeeded",
            message=status.get("message") if status else None,
            time=status.get("time") if status else None,
        )
    for resource in vm.get("resources") or []:
        name = dig(resource, "name")
        properties = dig(resource, "properties") or {}
        if not isinstance(name, str) or not name or name.lower() in found:
            continue
        state = str(properties.get("provisioningState") or "Succeeded").lower()
        found[name.lower()] = InstanceExtension(
            name=name,
            type_=f"{properties.get('publisher') or ''}.{properties.get('type') or ''}",
            type_handler_version=properties.get("typeHandlerVersion"),
            status="ProvisioningState/transitioning"
            if state in ("updating", "creating")
            else f"ProvisioningState/{state}",
        )
    return list(found.values())


def model_extensions(vmss: Json) -> list[ExtensionView]:
    """The scale set model's extensionProfile.extensions, `properties` flattened."""
    views = []
    for entry in dig(vmss, "properties", "virtualMachineProfile", "extensionProfile", "extensions") or []:
        if not isinstance(entry, dict) or not entry.get("name"):
            continue
        properties = entry.get("properties") or {}
        views.append(
            ExtensionView(
                name=str(entry["name"]),
                publisher=str(properties.get("publisher") or ""),
                type_=str(properties.get("type") or ""),
                type_handler_version=str(properties.get("typeHandlerVersion") or ""),
                auto_upgrade_minor_version=bool(properties.get("autoUpgradeMinorVersion")),
                enable_automatic_upgrade=bool(properties.get("enableAutomaticUpgrade")),
            )
        )
    return views


def _statuses(instance_view: Json | None) -> list[Json]:
    return [s for s in dig(instance_view, "statuses") or [] if isinstance(s, dict)]


def power_state(instance_view: Json | None) -> str | None:
    for status in _statuses(instance_view):
        code = status.get("code") or ""
        if code.startswith("PowerState/"):
            return str(code.removeprefix("PowerState/"))
    return None


def error_code(instance_view: Json | None) -> str | None:
    """The error of the last operation: `ProvisioningState/failed/<code>` in the statuses."""
    for status in _statuses(instance_view):
        code = status.get("code") or ""
        if code.lower().startswith("provisioningstate/failed"):
            return code.split("/", 2)[2] if code.count("/") >= 2 else "ProvisioningFailed"
    return None


def _provisioning_state(vm: Json, instance_view: Json | None) -> str:
    state = dig(vm, "properties", "provisioningState")
    if isinstance(state, str) and state:
        return state
    for status in _statuses(instance_view):
        code = status.get("code") or ""
        if code.startswith("ProvisioningState/"):
            return code.split("/")[1].capitalize()
    return "Succeeded"


def instance_id_of(vm: Json, *, flexible: bool) -> str:
    """Uniform: the instance id ("0", "1", ...); Flexible: the VM's name."""
    name = str(vm.get("name") or "")
    return name if flexible else str(vm.get("instanceId") or name.rsplit("_", 1)[-1])


def instance_of(vm: Json, *, flexible: bool) -> InstanceView:
    """One VM of a scale set, with its instance view."""
    name = vm.get("name") or ""
    instance_id = instance_id_of(vm, flexible=flexible)
    view = dig(vm, "properties", "instanceView")
    storage = dig(vm, "properties", "storageProfile") or {}
    image = image_of(storage.get("imageReference"))
    if image is None:
        raise FleetRequestError("InvalidInstance", f"instance {name!r} has no readable imageReference")
    os_disk = storage.get("osDisk") or {}
    zones = vm.get("zones") or []
    fault_domain = dig(view, "platformFaultDomain")
    if fault_domain is None:
        fault_domain = dig(vm, "properties", "platformFaultDomain")
    return InstanceView(
        instance_id=instance_id,
        vm_name=name or None,
        zone=zones[0] if zones else None,
        platform_update_domain=dig(view, "platformUpdateDomain") or 0,
        platform_fault_domain=fault_domain or 0,
        image_reference=image,
        os_disk=OsDisk(name=os_disk.get("name") or "", image_reference=image),
        data_disks=[
            DataDisk(
                lun=disk.get("lun", 0), name=disk.get("name") or "", disk_size_gb=disk.get("diskSizeGB") or 0
            )
            for disk in storage.get("dataDisks") or []
        ],
        provisioning_state=_provisioning_state(vm, view),
        power_state=power_state(view) or "unknown",
        health=health_state(view),
        custom_metrics=custom_metrics(view),
        error_code=error_code(view),
        restore_point=dig(os_disk, "managedDisk", "id") if flexible else _image_point(image),
        extensions=instance_extensions(vm),
    )


def _image_point(image: ImageReference) -> str | None:
    # Without an exact version there is nothing to reimage back to.
    return image_restore_point(image) if image.resolved_version != LATEST else None


def probe_of(vm: Json) -> HealthProbe:
    """An instance's health as its Application Health extension reports it (vmHealth)."""
    view = dig(vm, "properties", "instanceView")
    status = dig(view, "vmHealth", "status")
    if not isinstance(status, dict):
        detail = "no vmHealth in the instance view (no Application Health extension reporting)"
    else:
        said = status.get("message") or status.get("displayStatus")
        detail = f"vmHealth {status.get('code')}" + (f": {said}" if said else "")
    return HealthProbe(state=health_state(view), custom_metrics=custom_metrics(view), detail=detail)


def health_extension_of(vmss: Json) -> ApplicationHealthSettings | None:
    """The settings of the model's Application Health extension (None: it has none). Its major
    version 1 reads answers as binary, 2 as rich states; settings it cannot have are the defaults."""
    for entry in dig(vmss, "properties", "virtualMachineProfile", "extensionProfile", "extensions") or []:
        properties = dig(entry, "properties") or {}
        publisher, type_ = (str(properties.get(key) or "").lower() for key in ("publisher", "type"))
        if publisher != HEALTH_EXTENSION_PUBLISHER or not type_.startswith(HEALTH_EXTENSION_TYPE):
            continue
        given = properties.get("settings")
        given = given if isinstance(given, dict) else {}
        fields: Json = {key: given[key] for key in HEALTH_EXTENSION_SETTINGS if given.get(key) is not None}
        if isinstance(fields.get("protocol"), str):
            fields["protocol"] = fields["protocol"].lower()
        binary = str(properties.get("typeHandlerVersion") or "").startswith("1")
        fields["healthStates"] = "binary" if binary else "rich"
        # healthWaitTimeout is this service's, not the extension's: long enough for its grace.
        grace = fields.get("gracePeriod")
        fields["healthWaitTimeout"] = f"PT{max(300, grace if isinstance(grace, int) else 0)}S"
        try:
            return ApplicationHealthSettings.model_validate(fields)
        except ValidationError:
            return ApplicationHealthSettings(health_states="binary" if binary else "rich")
    return None


def health_source_of(vmss: Json) -> tuple[HealthSource, str | None, ApplicationHealthSettings | None]:
    """Where the set's health is read, its load balancer probe's id and its extension's settings.
    With both, the extension's vmHealth is read (automatic upgrades refuse such a set)."""
    probe_id = dig(vmss, "properties", "virtualMachineProfile", "networkProfile", "healthProbe", "id")
    probe_id = probe_id if isinstance(probe_id, str) and probe_id else None
    extension = health_extension_of(vmss)
    if extension is not None:
        return HealthSource.EXTENSION, probe_id, extension
    if probe_id is not None:
        return HealthSource.LOAD_BALANCER_PROBE, probe_id, None
    return HealthSource.POWER_STATE, None, None


def nic_ids(vm: Json) -> list[str]:
    """The ids of the VM's network interfaces (lower case, as the load balancer's answers are
    matched against them)."""
    found = dig(vm, "properties", "networkProfile", "networkInterfaces") or []
    return [str(nic["id"]).lower() for nic in found if isinstance(nic, dict) and nic.get("id")]


def probe_answers(document: Json) -> dict[str, HealthProbe]:
    """A load balancing rule's health (LoadBalancerHealthPerRule) by network interface id."""
    answers: dict[str, HealthProbe] = {}
    for address in document.get("loadBalancerBackendAddresses") or []:
        config = dig(address, "networkInterfaceIPConfigurationId")
        if not isinstance(config, str):
            continue
        state = str(address.get("state") or "")
        said = address.get("reason")
        answers[config.lower().split("/ipconfigurations/")[0]] = HealthProbe(
            state=PROBE_STATES.get(state.lower(), HealthState.UNKNOWN),
            detail=f"load balancer probe: {state or 'no state'}" + (f" ({said})" if said else ""),
        )
    return answers


def platform_health(vm: Json) -> HealthProbe:
    """Health without a probe (seed 000): the VM provisioned and running, every extension
    provisioned. An operation under way or an extension still installing is Initializing."""
    view = dig(vm, "properties", "instanceView")
    provisioning = _provisioning_state(vm, view)
    power = power_state(view) or "unknown"
    extensions = instance_extensions(vm)
    failed = [e.name for e in extensions if e.status.lower().startswith("provisioningstate/failed")]
    if provisioning == "Failed" or failed:
        why = f"extension {', '.join(failed)} failed" if failed else "provisioning failed"
        return HealthProbe(state=HealthState.UNHEALTHY, detail=f"{why} (power state {power})")
    settling = [e.name for e in extensions if not e.status.lower().startswith("provisioningstate/succeeded")]
    if provisioning != "Succeeded" or power == "starting" or settling:
        return HealthProbe(
            state=HealthState.INITIALIZING, detail=f"provisioning {provisioning.lower()}, power state {power}"
        )
    if power != "running":
        return HealthProbe(state=HealthState.UNHEALTHY, detail=f"power state {power}")
    return HealthProbe(state=HealthState.HEALTHY, detail="running, every extension provisioned")


def health_of(vm: Json, source: HealthSource, probes: dict[str, HealthProbe] | None = None) -> HealthProbe:
    """An instance's health from the set's source (`probes`: the load balancer's answers)."""
    if source == HealthSource.LOAD_BALANCER_PROBE:
        answer = next((probes[nic] for nic in nic_ids(vm) if probes and nic in probes), None)
        if answer is None:
            answer = HealthProbe(
                state=HealthState.UNKNOWN, detail="not among the load balancer probe's backend addresses"
            )
        metrics = custom_metrics(dig(vm, "properties", "instanceView"))
        return answer.model_copy(update={"custom_metrics": metrics})
    if source == HealthSource.POWER_STATE:
        return platform_health(vm)
    return probe_of(vm)


def rolling_policy_of(section: Any) -> RollingUpgradePolicy | None:
    """A set's own rollingUpgradePolicy, its fields this product knows (a newer API's others
    left out); None when it has none or it cannot be read."""
    if not isinstance(section, dict):
        return None
    named = UpgradePolicy.normalize({"rollingUpgradePolicy": section})["rollingUpgradePolicy"]
    known = set(RollingUpgradePolicy.model_json_schema()["properties"])
    try:
        return RollingUpgradePolicy.model_validate({k: v for k, v in named.items() if k in known})
    except ValidationError:
        return None


def scale_set_of(vmss: Json, instances: list[InstanceView]) -> ScaleSetView:
    properties = vmss.get("properties") or {}
    upgrade_policy = properties.get("upgradePolicy") or {}
    image = image_of(dig(properties, "virtualMachineProfile", "storageProfile", "imageReference"))
    if image is None and instances:  # a Flexible set without a VM profile
        image = instances[0].image_reference
    if image is None:
        raise FleetRequestError("InvalidScaleSet", f"scale set {vmss.get('name')!r} has no imageReference")
    source, probe_id, extension = health_source_of(vmss)
    return ScaleSetView(
        name=vmss.get("name") or "",
        id=vmss.get("id") or "",
        location=vmss.get("location") or "",
        zones=vmss.get("zones") or [],
        image_reference=image,
        orchestration_mode=properties.get("orchestrationMode") or "Uniform",
        upgrade_mode=upgrade_policy.get("mode") or "Manual",
        automatic_os_upgrade=bool(
            dig(upgrade_policy, "automaticOSUpgradePolicy", "enableAutomaticOSUpgrade")
        ),
        rolling_upgrade_policy=rolling_policy_of(upgrade_policy.get("rollingUpgradePolicy")),
        instances=instances,
        extensions=model_extensions(vmss),
        health_source=source,
        health_probe_id=probe_id,
        health_extension=extension,
        vm_size=dig(vmss, "sku", "name"),
        capacity=dig(vmss, "sku", "capacity"),
    )


def arm_time(value: Any) -> datetime | None:
    """An ARM timestamp ("...Z", or with no zone: UTC), or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def maintenance_window_of(scale_set: str, configurations: list[Json]) -> MaintenanceWindow | None:
    """The window of the OSImage maintenance configuration among those assigned to a scale set
    (configurations of other scopes, such as guest patching, do not govern OS image upgrades).
    One that breaks Azure's rules for the scope, or two of them, are refused: the set's upgrades
    cannot keep to a window that cannot be read."""
    chosen = [c for c in configurations if str(dig(c, "properties", "maintenanceScope")).lower() == "osimage"]
    if len(chosen) > 1:
        names = ", ".join(str(c.get("id") or c.get("name")) for c in chosen)
        raise FleetRequestError(
            "InvalidMaintenanceConfiguration",
            f"scale set {scale_set} has {len(chosen)} {OS_IMAGE} maintenance configurations assigned "
            f"({names}); assign one",
        )
    if not chosen:
        return None
    try:
        return MaintenanceWindow.model_validate(dig(chosen[0], "properties", "maintenanceWindow"))
    except ValidationError as err:
        problems = "; ".join(describe_validation_error(err, "properties.maintenanceWindow").splitlines())
        raise FleetRequestError(
            "InvalidMaintenanceConfiguration",
            f"the {OS_IMAGE} maintenance configuration assigned to scale set {scale_set} "
            f"({chosen[0].get('id')}): {problems}",
        ) from None
