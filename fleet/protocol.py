"""The one small protocol every fleet back end implements; activities see only this.

Azure has no idempotency key for actions: two reimage POSTs are two reimages. So a back end
sends an action exactly once when asked (no automatic resend, whatever the SDK would do), and
says when an error leaves it unknown whether the action was accepted
(`FleetTransientError.maybe_accepted`). The activities make an upgrade exactly-once on top of
that: they read the instance before acting and after any doubt, and keep the operation they
started (its status URL) in their heartbeat details, where a retried attempt finds it.
"""

from __future__ import annotations

from typing import Protocol

from models.alarms import MetricAlertSeries
from models.fleet import (
    CoreQuota,
    FleetOperation,
    HealthProbe,
    HealthReading,
    InstanceView,
    OperationKind,
    ScaleSetView,
)
from models.image import ImageReference
from models.policy import ApplicationHealthSettings


class FleetBackend(Protocol):
    async def get_scale_set(self, name: str) -> ScaleSetView:
        """The scale set's model and every instance with its current health."""

    async def read_health(self, name: str) -> HealthReading:
        """Every instance's health and phase, compactly."""

    async def get_instance(self, scale_set: str, instance_id: str, *, watching: bool = False) -> InstanceView:
        """One instance as it is now (image exact version, OS disk, provisioning state): what
        an action reconciles against. Raises FleetRequestError code NotFound when it is gone.
        Concurrent calls for one scale set share one read of the set; `watching` (the caller
        looks again and again until the instance changes) lets the read wait for the set's next
        regular one."""

    async def resolve_image(self, image: ImageReference, location: str) -> ImageReference:
        """The image at an exact version available in `location` ('latest' resolved)."""

    async def begin_reimage(self, scale_set: str, instance_id: str, image: ImageReference) -> FleetOperation:
        """Send one reimage of the instance to the image's exact version (data disks kept);
        the accepted operation, with the status URL to poll. Never resent automatically."""

    async def begin_restore(self, scale_set: str, instance_id: str, restore_point: str) -> FleetOperation:
        """Send one restore of the OS disk an instance had before (`InstanceView.restore_point`
        read before the reimage): Uniform, a reimage back to its image version; Flexible, an OS
        disk swap, which Azure accepts only while the VM is deallocated (`begin_power`). Never
        resent automatically."""

    async def begin_power(self, scale_set: str, instance_id: str, kind: OperationKind) -> FleetOperation:
        """Send one deallocate (kind DEALLOCATE) or start (kind START) of a Flexible VM, as an
        OS disk swap needs. Never resent automatically."""

    async def begin_install_extension(
        self, scale_set: str, instance_id: str, extension_name: str, version: str
    ) -> FleetOperation:
        """Send one install of `version` of the instance's extension `extension_name` (an
        extension of the scale set's model, already on the instance): the accepted operation
        (kind installExtension), with the status URL to poll. Never resent automatically; two
        calls are two installs. Raises FleetRequestError ArtifactNotFound for a version not
        published in the scale set's region."""

    async def extension_versions(self, publisher: str, type_: str, location: str) -> list[str]:
        """The versions of an extension published in `location`, in numeric order (1.9 before
        1.10)."""

    async def core_quota(self, scale_set: str) -> CoreQuota:
        """What the set's new instances would count against: its VM size's vCPUs and quota
        family, and the region's usage and limit of that family and of all vCPUs."""

    async def begin_set_model_image(self, scale_set: str, image: ImageReference) -> None:
        """Set the model's imageReference to the image's exact version (new instances are created
        from the model). Desired state: sending it twice is harmless. MaxSurge only: refused on a
        Flexible set."""

    async def begin_scale_out(
        self, scale_set: str, capacity: int, vm_size: str | None = None
    ) -> FleetOperation:
        """Send one change of the set's sku.capacity to `capacity`: the new instances are
        created from the model. The accepted operation (kind create) is done when they are
        provisioned. Never resent automatically; the caller reconciles against the capacity it
        reads (a raise computed twice creates twice). Refused on a Flexible set (maxSurge)."""

    async def begin_delete_instances(self, scale_set: str, instance_ids: list[str]) -> FleetOperation:
        """Send one delete of these instances (kind delete; capacity drops by as many). Never
        resent automatically. Refused on a Flexible set (maxSurge)."""

    async def get_operation(self, operation: FleetOperation) -> FleetOperation:
        """The current state of an operation this back end accepted (polls its status URL)."""

    async def probe_health(
        self, scale_set: str, instance_id: str, settings: ApplicationHealthSettings
    ) -> HealthProbe:
        """The instance's health as its Application Health extension reports it now (vmHealth in
        the instance view). Concurrent calls for one scale set share one read of the set."""

    async def read_metric_alert(self, alert: str) -> list[MetricAlertSeries]:
        """An Azure Monitor metric alert rule's status, one entry per series it watches (alarm
        gates); `alert` is its name in the fleet's resource group or its resource id. Raises
        FleetRequestError ResourceNotFound for a rule that does not exist."""

    async def aclose(self) -> None:
        """Release connections."""


# The emulator cannot refuse a TCP connection on behalf of one instance of many behind one
# port, so it answers 502 with this header instead: a client reads it as no connection at all.
NO_CONNECTION_HEADER = "X-Emulated-Connection"
NO_CONNECTION_VALUE = "refused"
