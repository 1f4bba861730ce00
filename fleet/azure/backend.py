"""AzureFleet: the FleetBackend on Azure Resource Manager (azure-mgmt-compute's async client).

Reads use the SDK as it is (paging, retries). Actions (reimage, restore, a Flexible VM's
deallocate and start, extension installs, MaxSurge's capacity raises and deletes) are sent
exactly once:
retries off for the call and no SDK poller; the accepted answer's status URL goes into the
FleetOperation, and `get_operation` polls it through the client's pipeline (auth, TLS).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.compute.models import (
    VirtualMachineExtensionUpdate,
    VirtualMachineExtensionUpdateProperties,
    VirtualMachineReimageParameters,
    VirtualMachineScaleSetVMExtensionUpdate,
    VirtualMachineScaleSetVMReimageParameters,
)

from fleet.azure.calls import CallCounter
from fleet.azure.credentials import credential_for
from fleet.azure.errors import arm_errors, error_of_body, from_status
from fleet.azure.images import parse_gallery_image_id, pick_gallery_version, pick_marketplace_version
from fleet.azure.operations import accepted, polled
from fleet.azure.read_pacing import PACERS, ReadPacer, ReadPacers, ReadPacingPolicy, watching
from fleet.azure.set_reads import CoalescingReader
from fleet.azure.settings import AzureSettings
from fleet.azure.transport import PooledTransport
from fleet.azure.views import (
    Json,
    dig,
    health_of,
    health_source_of,
    instance_id_of,
    instance_of,
    maintenance_window_of,
    probe_answers,
    scale_set_of,
)
from fleet.errors import FleetError, FleetRequestError, FleetTransientError
from fleet.restore_points import RestorePoint, parse_restore_point, same_restore_point
from models.alarms import MetricAlertSeries
from models.fleet import (
    CoreQuota,
    FleetOperation,
    HealthProbe,
    HealthReading,
    HealthSource,
    HealthState,
    InstanceView,
    OperationKind,
    OrchestrationMode,
    QuotaUsage,
    ScaleSetView,
)
from models.image import LATEST, ImageReference
from models.maintenance import MaintenanceWindow
from models.policy import ApplicationHealthSettings
from models.sorting import natural_key

__all__ = ["AzureFleet", "RestorePoint", "parse_restore_point", "same_restore_point"]

# Flexible instances are plain VMs, found by the scale set they belong to.
FLEXIBLE_FILTER = "'virtualMachineScaleSet/id' eq '{}'"
# The Compute API version of the raw instance lists (vmHealth and exactVersion are in it).
LIST_API_VERSION = "2024-07-01"
# Reads of a set's instances for callers watching one of them until it shows an action done
# start at least this far apart. Each watcher looks once per Retry-After (about a second), and
# a batch's watchers, served by one read, look again together: this only keeps stragglers from
# bringing reads of their own.
INSTANCE_READ_GAP = 0.25
# name.value of the usages API's entry counting every vCPU of the region.
REGIONAL_CORES = "cores"
# Microsoft.Network's API version of a load balancing rule's per-instance health.
NETWORK_API_VERSION = "2024-05-01"
# Microsoft.Maintenance's: a scale set's configuration assignments and their configurations.
MAINTENANCE_API_VERSION = "2023-04-01"
# Microsoft.Insights's Metric Alerts Status (alarm gates: models/alarms.py).
INSIGHTS_API_VERSION = "2018-03-01"


@dataclass(frozen=True)
class SetInstances:
    """One read of a scale set's instances, each as ARM answered it (JSON), by instance id."""

    flexible: bool
    vms: dict[str, Json]


class AzureFleet:
    """`async with AzureFleet(AzureSettings.from_env()) as fleet: ...`

    `calls` counts ARM requests by kind ("reads", "actions"), one per SDK call or page.
    Every read (each attempt of it) first waits for its subscription's pacer (`read_pacer`;
    fleet/azure/read_pacing.py), shared by every AzureFleet of the process unless `pacers`
    says otherwise. Extra keyword arguments go to ComputeManagementClient (e.g. retry_total for
    reads, connection_timeout, transport).
    """

    def __init__(
        self,
        settings: AzureSettings | None = None,
        *,
        credential: AsyncTokenCredential | None = None,
        pacers: ReadPacers | None = None,
        **client_kwargs: Any,
    ) -> None:
        self.settings = settings or AzureSettings.from_env()
        self.settings.check()
        self._owns_credential = credential is None
        self._credential = credential or credential_for(self.settings)
        self._client_kwargs = client_kwargs
        self._pacers = PACERS if pacers is None else pacers
        self.calls: Counter[str] = Counter()
        self._counter = CallCounter(self.calls)
        self._clients: dict[str, ComputeManagementClient] = {}
        self._transports: list[PooledTransport] = []
        self.client = self._client_for(self.settings.subscription_id)
        # Orchestration mode and id of each scale set seen: immutable for a scale set's life.
        self._sets: dict[str, tuple[OrchestrationMode, str]] = {}
        # Every look at an instance (its health, its state around an action) of concurrent
        # callers shares one read of the set's instances (fleet/azure/set_reads.py).
        self._instances = CoalescingReader(self._read_instances, turn=self.read_pacer.acquire_ahead)
        # Each set's health source and load balancer probe, as its model said when last read.
        self._health_sources: dict[str, tuple[HealthSource, str | None]] = {}
        # The load balancer's answers for a set with a health probe, shared the same way.
        self._probe_answers = CoalescingReader(self._read_probe_answers, turn=self.read_pacer.acquire_ahead)
        # The health URL of the load balancing rule that uses each probe.
        self._rule_health_urls: dict[str, str] = {}
        # Each region's VM sizes: quota family and vCPUs, by lower-case size name.
        self._vm_skus: dict[str, dict[str, tuple[str, int]]] = {}

    def _client_for(self, subscription_id: str) -> ComputeManagementClient:
        """One client per subscription (a gallery may live in another), one call counter; its
        reads paced by the subscription's pacer."""
        client = self._clients.get(subscription_id.lower())
        if client is None:
            options = dict(self._client_kwargs)
            if "transport" not in options:
                transport = PooledTransport(self.settings.ca_bundle, **options)
                self._transports.append(transport)
                options["transport"] = transport
            client = ComputeManagementClient(
                self._credential,
                subscription_id,
                base_url=self.settings.endpoint,
                credential_scopes=[f"{self.settings.endpoint}/.default"],
                per_call_policies=[self._counter],
                per_retry_policies=[ReadPacingPolicy(self.pacer_of(subscription_id))],
                **options,
            )
            self._clients[subscription_id.lower()] = client
        return client

    def pacer_of(self, subscription_id: str) -> ReadPacer:
        """The read pacer of a subscription (this process's, on this ARM endpoint)."""
        settings = self.settings
        return self._pacers.of(
            settings.endpoint, subscription_id, settings.reads_per_minute, settings.read_burst
        )

    @property
    def read_pacer(self) -> ReadPacer:
        """The read pacer of the fleet's subscription."""
        return self.pacer_of(self.settings.subscription_id)

    async def __aenter__(self) -> AzureFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        if self._owns_credential:
            await self._credential.close()

    @property
    def connections_opened(self) -> int:
        """TCP connections opened to ARM so far (the benchmark sets them against the calls)."""
        return sum(transport.connections_opened for transport in self._transports)

    @property
    def _rg(self) -> str:
        return self.settings.resource_group

    @property
    def _provider(self) -> str:
        """The URL of the resource group's Microsoft.Compute provider."""
        subscription = self.settings.subscription_id
        return (
            f"{self.settings.endpoint}/subscriptions/{subscription}/resourceGroups/{quote(self._rg, safe='')}"
            "/providers/Microsoft.Compute"
        )

    # --- reads --------------------------------------------------------------------------------

    async def _get_set(self, name: str) -> Json:
        with arm_errors():
            vmss = (await self.client.virtual_machine_scale_sets.get(self._rg, name)).as_dict()
        mode: OrchestrationMode = (
            "Flexible" if dig(vmss, "properties", "orchestrationMode") == "Flexible" else "Uniform"
        )
        self._sets[name] = (mode, vmss.get("id") or "")
        source, probe_id, _ = health_source_of(vmss)
        self._health_sources[name] = (source, probe_id)
        return vmss

    async def _mode(self, name: str) -> tuple[OrchestrationMode, str]:
        if name not in self._sets:
            await self._get_set(name)
        return self._sets[name]

    async def _list_vms(self, name: str) -> tuple[bool, list[Json]]:
        """(flexible, every VM of the set with its instance view): one paged list, read as JSON.

        The hottest read of an upgrade (every health poll of a batch): the SDK's list would build
        a model of every VM only for us to turn it back into JSON (0.9 s of CPU for 300 VMs), so
        it goes through the client's pipeline (auth, TLS, retries, the call counter) as a raw
        request, following nextLink."""
        mode, vmss_id = await self._mode(name)
        query = {"$expand": "instanceView", "api-version": LIST_API_VERSION}
        if mode == "Flexible":
            path = "virtualMachines"
            query["$filter"] = FLEXIBLE_FILTER.format(vmss_id)
        else:
            path = f"virtualMachineScaleSets/{quote(name, safe='')}/virtualMachines"
        url: str | None = f"{self._provider}/{path}?{urlencode(query)}"
        vms: list[Json] = []
        try:
            while url:
                page = await self._get_json(url)
                vms += page.get("value") or []
                url = page.get("nextLink")
        except FleetError as err:
            if err.status == 404:
                self._sets.pop(name, None)  # deleted, perhaps re-created in another mode
            raise
        return mode == "Flexible", vms

    async def _read(self, url: str, off_endpoint: str) -> tuple[bytes, AsyncHttpResponse]:
        """GET an ARM URL through the client's pipeline (auth, retries, the call counter): the
        body of a successful answer; an error answer raises as a fleet error. A URL the service
        handed us (`off_endpoint` names which) must be on the ARM endpoint: the bearer token
        goes nowhere else.

        stream=True, then read: otherwise azure-core's ContentDecodePolicy parses every body
        too, and an instance list page is the largest body an upgrade reads, several a second.
        The response is closed whatever happens, so a body cut short frees its connection."""
        ours, theirs = urlsplit(self.settings.endpoint), urlsplit(url)
        if (theirs.scheme, theirs.netloc.lower()) != (ours.scheme, ours.netloc.lower()):
            raise FleetRequestError(off_endpoint, f"{url} is not on {self.settings.endpoint}")
        with arm_errors():
            response = await self.client.send_request(HttpRequest("GET", url), stream=True)
            try:
                body = await response.read()
            finally:
                await response.close()
        if response.status_code >= 400:
            code, message = error_of_body(body.decode("utf-8", "replace"))
            raise from_status(response.status_code, code, message, response.headers, action=False)
        return body, response

    async def _get_json(self, url: str) -> Json:
        """GET an ARM URL (ours, or a nextLink) as a JSON object."""
        body, response = await self._read(url, "InvalidNextLink")
        try:
            document = json.loads(body)
        except ValueError as err:
            raise FleetTransientError("MalformedAnswer", f"GET {url}: {err}", response.status_code) from err
        if not isinstance(document, dict):
            raise FleetTransientError(
                "MalformedAnswer", f"GET {url}: not a JSON object", response.status_code
            )
        return document

    async def get_scale_set(self, name: str) -> ScaleSetView:
        vmss = await self._get_set(name)
        flexible, vms = await self._list_vms(name)
        health = await self._health(name, {instance_id_of(vm, flexible=flexible): vm for vm in vms})
        instances = sorted(
            (
                instance_of(vm, flexible=flexible).model_copy(
                    update={"health": health[instance_id_of(vm, flexible=flexible)].state}
                )
                for vm in vms
            ),
            key=lambda i: natural_key(i.instance_id),
        )
        view = scale_set_of(vmss, instances)
        return view.model_copy(update={"maintenance_window": await self._maintenance_window(name)})

    async def _maintenance_window(self, name: str) -> MaintenanceWindow | None:
        """The window of the OSImage maintenance configuration assigned to the set: its
        configuration assignments (one paced read), then each configuration they name."""
        assignments = f"{self._provider}/virtualMachineScaleSets/{quote(name, safe='')}"
        url: str | None = (
            f"{assignments}/providers/Microsoft.Maintenance/configurationAssignments"
            f"?api-version={MAINTENANCE_API_VERSION}"
        )
        configurations: list[Json] = []
        try:
            while url:
                page = await self._get_json(url)
                for assignment in page.get("value") or []:
                    chosen = dig(assignment, "properties", "maintenanceConfigurationId")
                    if isinstance(chosen, str) and chosen.startswith("/"):
                        configurations += await self._maintenance_configuration(chosen)
                url = page.get("nextLink")
        except FleetError as err:
            if err.code == "MissingSubscriptionRegistration":
                return None  # Microsoft.Maintenance is not registered: nothing can be assigned
            if err.status == 403:
                raise FleetRequestError(
                    err.code,
                    f"{err.message} (reading scale set {name}'s maintenance configuration needs "
                    "Microsoft.Maintenance/configurationAssignments/read and "
                    "Microsoft.Maintenance/maintenanceConfigurations/read)",
                    403,
                ) from err
            raise
        return maintenance_window_of(name, configurations)

    async def _maintenance_configuration(self, configuration_id: str) -> list[Json]:
        """An assigned configuration; none when it is gone (an assignment left behind)."""
        try:
            return [
                await self._get_json(
                    f"{self.settings.endpoint}{quote(configuration_id)}?api-version={MAINTENANCE_API_VERSION}"
                )
            ]
        except FleetError as err:
            if err.status == 404:
                return []
            raise

    async def read_metric_alert(self, alert: str) -> list[MetricAlertSeries]:
        """An Azure Monitor metric alert rule's status (Metric Alerts Status - List: one entry per
        series it watches), paced like every read. `alert`: its name in the fleet's resource
        group, or its resource id."""
        rule = alert
        if not alert.startswith("/"):
            subscription = self.settings.subscription_id
            rule = (
                f"/subscriptions/{subscription}/resourceGroups/{self._rg}"
                f"/providers/Microsoft.Insights/metricAlerts/{alert}"
            )
        url: str | None = f"{self.settings.endpoint}{quote(rule)}/status?api-version={INSIGHTS_API_VERSION}"
        series: list[MetricAlertSeries] = []
        try:
            while url:
                page = await self._get_json(url)
                series += [
                    MetricAlertSeries.model_validate(entry.get("properties") or {})
                    for entry in page.get("value") or []
                    if isinstance(entry, dict)
                ]
                url = page.get("nextLink")
        except FleetError as err:
            if err.status == 403:
                raise FleetRequestError(
                    err.code,
                    f"{err.message} (reading an alarm gate needs Microsoft.Insights/metricAlerts/read)",
                    403,
                ) from err
            raise
        return series

    async def read_health(self, name: str) -> HealthReading:
        flexible, vms = await self._list_vms(name)
        health = await self._health(name, {instance_id_of(vm, flexible=flexible): vm for vm in vms})
        phases = {
            instance_id: probe.custom_metrics.phase_ordering_number
            for instance_id, probe in health.items()
            if probe.custom_metrics.phase_ordering_number is not None
        }
        return HealthReading(health={i: probe.state for i, probe in health.items()}, phases=phases)

    async def _health(self, name: str, vms: dict[str, Json], min_gap: float = 0.0) -> dict[str, HealthProbe]:
        """Each instance's health from the set's source: the extension's vmHealth, the load
        balancer probe's answer (one more read, shared), or power and provisioning state."""
        if name not in self._health_sources:
            await self._get_set(name)
        source, _ = self._health_sources[name]
        answers = None
        if source == HealthSource.LOAD_BALANCER_PROBE:
            answers = await self._probe_answers.get(name, min_gap=min_gap)
        return {instance_id: health_of(vm, source, answers) for instance_id, vm in vms.items()}

    async def _read_probe_answers(self, name: str) -> dict[str, HealthProbe]:
        """The load balancer's answers for the set's probe, by network interface: the health of
        the load balancing rule that uses the probe (a POST, answered at once or after a 202)."""
        _, probe_id = self._health_sources[name]
        if probe_id is None:
            return {}
        url = self._rule_health_urls.get(probe_id.lower())
        if url is None:
            balancer_id = probe_id.split("/probes/")[0]
            balancer = await self._get_json(
                f"{self.settings.endpoint}{balancer_id}?api-version={NETWORK_API_VERSION}"
            )
            rules = dig(balancer, "properties", "loadBalancingRules") or []
            uses = [str(dig(rule, "properties", "probe", "id") or "").lower() for rule in rules]
            rule = next((r for r, probe in zip(rules, uses, strict=True) if probe == probe_id.lower()), None)
            if rule is None:
                raise FleetRequestError(
                    "HealthProbeNotUsed",
                    f"scale set {name}: no load balancing rule of {balancer_id} uses its health probe "
                    f"{probe_id}, so the load balancer reports no answers of it",
                )
            url = f"{self.settings.endpoint}{rule['id']}/health?api-version={NETWORK_API_VERSION}"
            self._rule_health_urls[probe_id.lower()] = url
        return probe_answers(await self._post_json(url))

    async def _post_json(self, url: str) -> Json:
        """POST an ARM action that reads (a rule's health): its answer, following a 202's
        Location until the result is there."""
        with arm_errors():
            response = await self.client.send_request(HttpRequest("POST", url))
        while True:
            if response.status_code >= 400:
                code, message = error_of_body(response.text())
                raise from_status(response.status_code, code, message, response.headers, action=False)
            location = response.headers.get("Location")
            if response.status_code != 202 or not location:
                document = response.json() if response.content else {}
                return document if isinstance(document, dict) else {}
            await asyncio.sleep(float(response.headers.get("Retry-After") or 1))
            _, response = await self._read(location, "InvalidLocation")

    async def _read_instances(self, scale_set: str) -> SetInstances:
        flexible, vms = await self._list_vms(scale_set)
        return SetInstances(flexible, {instance_id_of(vm, flexible=flexible): vm for vm in vms})

    async def get_instance(self, scale_set: str, instance_id: str, *, watching: bool = False) -> InstanceView:
        """One instance with its instance view, from a read of the set's instances begun after
        the call: the instances of a batch, each read before its action and about once a second
        until it shows done, share a list instead of a GET each (a read before an action goes
        at once: the batch waits for it; one watching waits for the set's next regular read)."""
        try:
            instances = await self._instances.get(scale_set, min_gap=INSTANCE_READ_GAP if watching else 0.0)
        except FleetError as err:
            if err.status == 404:
                raise FleetRequestError(
                    "NotFound", f"instance {instance_id} of scale set {scale_set} is gone ({err})", 404
                ) from err
            raise
        vm = instances.vms.get(instance_id)
        if vm is None:
            raise FleetRequestError(
                "NotFound", f"instance {instance_id} is not among the instances of scale set {scale_set}", 404
            )
        return instance_of(vm, flexible=instances.flexible)

    async def resolve_image(self, image: ImageReference, location: str) -> ImageReference:
        try:
            if image.id:
                subscription, group, gallery, definition = parse_gallery_image_id(image.id)
                pages = self._client_for(subscription).gallery_image_versions.list_by_gallery_image(
                    group, gallery, definition
                )
                with arm_errors():
                    versions = [v.as_dict() async for v in pages]
                version = pick_gallery_version(image, versions, location)
            else:
                with arm_errors():
                    offered = await self.client.virtual_machine_images.list(
                        location, str(image.publisher), str(image.offer), str(image.sku)
                    )
                version = pick_marketplace_version(image, [item.name for item in offered], location)
        except FleetError as err:
            if err.status == 404:
                raise FleetRequestError("ImageNotFound", f"{image}: {err.message}", 404) from err
            raise
        return image.at_version(version)

    # --- actions: sent once -------------------------------------------------------------------

    async def _send_once(self, begin: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Start an LRO with the SDK's retries off and no poller; the initial PipelineResponse."""
        initial: list[Any] = []
        with arm_errors(action=True):
            poller = await begin(
                *args,
                polling=False,
                retry_total=0,
                cls=lambda response, _body, _headers: initial.append(response),
            )
            await poller.result()  # no polling: hands the initial response to `cls`
        return initial[0]

    async def _reimage(self, scale_set: str, instance_id: str, exact_version: str) -> Any:
        mode, _ = await self._mode(scale_set)
        if mode == "Flexible":
            parameters = VirtualMachineReimageParameters(exact_version=exact_version)
            return await self._send_once(
                self.client.virtual_machines.begin_reimage, self._rg, instance_id, parameters
            )
        return await self._send_once(
            self.client.virtual_machine_scale_set_vms.begin_reimage,
            self._rg,
            scale_set,
            instance_id,
            VirtualMachineScaleSetVMReimageParameters(exact_version=exact_version),
        )

    async def begin_reimage(self, scale_set: str, instance_id: str, image: ImageReference) -> FleetOperation:
        version = image.resolved_version
        if version == LATEST:
            raise FleetRequestError("InvalidImageReference", f"reimage needs an exact version (got {image})")
        target = image.at_version(version)
        response = await self._reimage(scale_set, instance_id, version)
        return accepted(
            response, kind=OperationKind.REIMAGE, scale_set=scale_set, instance_id=instance_id, image=target
        )

    async def begin_restore(self, scale_set: str, instance_id: str, restore_point: str) -> FleetOperation:
        try:
            point = parse_restore_point(restore_point)
        except ValueError as err:
            raise FleetRequestError("InvalidRestorePoint", str(err)) from err
        mode, _ = await self._mode(scale_set)
        kind = OperationKind.RESTORE
        if mode == "Flexible":
            if not point.os_disk_id:
                raise FleetRequestError(
                    "InvalidRestorePoint",
                    f"a Flexible instance is restored from an OS disk id (got {restore_point})",
                )
            # OS disk swap, on a deallocated VM (begin_power): it will boot from the earlier
            # disk; the current one stays, detached.
            update = {
                "properties": {
                    "storageProfile": {
                        "osDisk": {
                            "name": point.os_disk_id.rsplit("/", 1)[-1],
                            "managedDisk": {"id": point.os_disk_id},
                        }
                    }
                }
            }
            response = await self._send_once(
                self.client.virtual_machines.begin_update, self._rg, instance_id, update
            )
            return accepted(
                response, kind=kind, scale_set=scale_set, instance_id=instance_id, os_disk=point.os_disk_id
            )
        if not point.image or not point.image.exact_version:
            raise FleetRequestError(
                "InvalidRestorePoint",
                f"a Uniform instance is restored by reimaging to an exact version (got {restore_point})",
            )
        response = await self._reimage(scale_set, instance_id, point.image.exact_version)
        return accepted(response, kind=kind, scale_set=scale_set, instance_id=instance_id, image=point.image)

    async def begin_power(self, scale_set: str, instance_id: str, kind: OperationKind) -> FleetOperation:
        """POST .../virtualMachines/{vm}/deallocate or /start (Flexible VMs only: a Uniform
        instance is restored by a reimage, never swapped)."""
        mode, _ = await self._mode(scale_set)
        if mode != "Flexible":
            raise FleetRequestError(
                "OperationNotAllowed", f"{kind.value} is for Flexible VMs; {scale_set} is {mode}"
            )
        calls = {
            OperationKind.DEALLOCATE: self.client.virtual_machines.begin_deallocate,
            OperationKind.START: self.client.virtual_machines.begin_start,
        }
        if kind not in calls:
            raise FleetRequestError("InvalidParameter", f"not a power operation: {kind.value}")
        response = await self._send_once(calls[kind], self._rg, instance_id)
        return accepted(response, kind=kind, scale_set=scale_set, instance_id=instance_id)

    async def begin_install_extension(
        self, scale_set: str, instance_id: str, extension_name: str, version: str
    ) -> FleetOperation:
        """One PATCH of the instance's extension (VirtualMachineScaleSetVMExtensions.begin_update on
        Uniform, VirtualMachineExtensions.begin_update on Flexible) setting typeHandlerVersion,
        with a fresh forceUpdateTag so the handler runs even on the version it has (a reinstall).
        A PATCH, not a PUT: it keeps the extension's settings and protectedSettings, which no
        GET returns and a PUT would have to resend."""
        if not version:
            raise FleetRequestError("InvalidParameter", "an extension install needs a version")
        mode, _ = await self._mode(scale_set)
        properties = VirtualMachineExtensionUpdateProperties(
            type_handler_version=version, force_update_tag=str(uuid.uuid4())
        )
        if mode == "Flexible":
            response = await self._send_once(
                self.client.virtual_machine_extensions.begin_update,
                self._rg,
                instance_id,
                extension_name,
                VirtualMachineExtensionUpdate(properties=properties),
            )
        else:
            response = await self._send_once(
                self.client.virtual_machine_scale_set_vm_extensions.begin_update,
                self._rg,
                scale_set,
                instance_id,
                extension_name,
                VirtualMachineScaleSetVMExtensionUpdate(properties=properties),
            )
        operation = accepted(
            response, kind=OperationKind.INSTALL_EXTENSION, scale_set=scale_set, instance_id=instance_id
        )
        return operation.model_copy(update={"extension_name": extension_name, "extension_version": version})

    async def extension_versions(self, publisher: str, type_: str, location: str) -> list[str]:
        with arm_errors():
            images = await self.client.virtual_machine_extension_images.list_versions(
                location, publisher, type_
            )
        return sorted({str(image.name) for image in images if image.name}, key=natural_key)

    # --- MaxSurge: core quota, capacity, deletes -------------------------------------------------

    async def core_quota(self, scale_set: str) -> CoreQuota:
        vmss = await self._get_set(scale_set)
        location = str(vmss.get("location") or "")
        vm_size = dig(vmss, "sku", "name")
        sku = await self._vm_sku(location, vm_size) if vm_size else None
        family, cores = sku or (None, None)
        usages: dict[str, Json] = {}
        with arm_errors():
            async for item in self.client.usage.list(location):
                entry = item.as_dict()
                usages[str(dig(entry, "name", "value"))] = entry

        def usage(name: str | None) -> QuotaUsage | None:
            entry = usages.get(name or "")
            if entry is None:
                return None
            current, limit = int(entry.get("currentValue") or 0), int(entry.get("limit") or 0)
            return QuotaUsage(name=str(name), current_value=current, limit=limit)

        return CoreQuota(
            location=location,
            vm_size=vm_size,
            family=family,
            cores_per_instance=cores,
            family_usage=usage(family),
            regional_usage=usage(REGIONAL_CORES),
        )

    async def _vm_sku(self, location: str, vm_size: str) -> tuple[str, int] | None:
        """The quota family and vCPUs of a VM size in a region (the resource SKUs API, read once
        per region: sizes do not change)."""
        key = location.lower()
        if key not in self._vm_skus:
            found: dict[str, tuple[str, int]] = {}
            with arm_errors():
                async for sku in self.client.resource_skus.list(filter=f"location eq '{location}'"):
                    entry = sku.as_dict()
                    cores = next(
                        (c.get("value") for c in entry.get("capabilities") or [] if c.get("name") == "vCPUs"),
                        None,
                    )
                    if entry.get("resourceType") == "virtualMachines" and entry.get("family") and cores:
                        found[str(entry["name"]).lower()] = (str(entry["family"]), int(cores))
            self._vm_skus[key] = found
        return self._vm_skus[key].get(vm_size.lower())

    async def _surge_set(self, scale_set: str) -> None:
        mode, _ = await self._mode(scale_set)
        if mode == "Flexible":
            raise FleetRequestError(
                "OperationNotAllowed",
                f"maxSurge: scale set {scale_set} has orchestrationMode Flexible, and Azure does not yet "
                "support automatic OS upgrades with maxSurge on Flexible orchestration: its instances "
                "are upgraded in place",
            )

    async def begin_set_model_image(self, scale_set: str, image: ImageReference) -> None:
        await self._surge_set(scale_set)
        version = image.resolved_version
        if version == LATEST:
            raise FleetRequestError(
                "InvalidImageReference", f"the model needs an exact version (got {image})"
            )
        reference: dict[str, Any] = (
            {"id": f"{image.id}/versions/{version}"}
            if image.id
            else {"publisher": image.publisher, "offer": image.offer, "sku": image.sku, "version": version}
        )
        update = {"properties": {"virtualMachineProfile": {"storageProfile": {"imageReference": reference}}}}
        await self._send_once(
            self.client.virtual_machine_scale_sets.begin_update, self._rg, scale_set, update
        )

    async def begin_scale_out(
        self, scale_set: str, capacity: int, vm_size: str | None = None
    ) -> FleetOperation:
        await self._surge_set(scale_set)
        sku: dict[str, Any] = {"capacity": capacity}
        if vm_size:
            sku["name"] = vm_size
        response = await self._send_once(
            self.client.virtual_machine_scale_sets.begin_update, self._rg, scale_set, {"sku": sku}
        )
        return accepted(response, kind=OperationKind.CREATE, scale_set=scale_set, instance_id="")

    async def begin_delete_instances(self, scale_set: str, instance_ids: list[str]) -> FleetOperation:
        await self._surge_set(scale_set)
        response = await self._send_once(
            self.client.virtual_machine_scale_sets.begin_delete_instances,
            self._rg,
            scale_set,
            {"instanceIds": instance_ids},
        )
        return accepted(
            response, kind=OperationKind.DELETE, scale_set=scale_set, instance_id=",".join(instance_ids)
        )

    async def get_operation(self, operation: FleetOperation) -> FleetOperation:
        url = operation.status_url
        if not url:
            raise FleetRequestError("NoStatusUrl", f"operation {operation.operation_id} has no status URL")
        with watching():  # an action's progress: the reads waited for go first
            raw, response = await self._read(url, "InvalidStatusUrl")
        body = raw.decode("utf-8", "replace")
        return polled(operation, response.status_code, response.headers, body)

    # --- health -------------------------------------------------------------------------------

    async def probe_health(
        self, scale_set: str, instance_id: str, settings: ApplicationHealthSettings
    ) -> HealthProbe:
        # The extension probes inside the VM with its own settings: `settings` are the caller's.
        # At most two reads of the set per probe interval, whatever the number of waiters.
        gap = settings.interval_in_seconds / 2
        instances = await self._instances.get(scale_set, min_gap=gap)
        vm = instances.vms.get(instance_id)
        if vm is None:
            return HealthProbe(
                state=HealthState.UNKNOWN,
                detail=f"instance {instance_id} is gone: not among the instances of scale set {scale_set}",
            )
        return (await self._health(scale_set, {instance_id: vm}, min_gap=gap))[instance_id]
