"""What a fleet back end shows and accepts: scale sets, instances, images, operations, faults.

Fields a newer back end or worker adds are ignored, not refused. What a user writes (a scale
set spec, faults, timing) is read with `from_user`: an unknown field there is a typo, refused.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from models.base import AzureModel
from models.image import ImageReference
from models.maintenance import MaintenanceWindow
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy, whole_number

# Azure's rule for a scale set's name; the one pattern every input naming a scale set checks.
ScaleSetName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class HealthState(StrEnum):
    """The Application Health extension's rich health states."""

    INITIALIZING = "Initializing"
    HEALTHY = "Healthy"
    UNHEALTHY = "Unhealthy"
    UNKNOWN = "Unknown"


class HealthSource(StrEnum):
    """Where an instance's health is read (seed 000: "application health probes or Application
    Health extension"; with neither, "the platform considers virtual machine power state and
    extension provisioning state")."""

    EXTENSION = "ApplicationHealthExtension"
    LOAD_BALANCER_PROBE = "LoadBalancerProbe"
    POWER_STATE = "PowerState"

    @property
    def described(self) -> str:
        return {
            HealthSource.EXTENSION: "the Application Health extension (vmHealth)",
            HealthSource.LOAD_BALANCER_PROBE: "the load balancer health probe",
            HealthSource.POWER_STATE: "power state and provisioning state (no health probe)",
        }[self]


class CustomMetrics(AzureModel):
    """The `rollingUpgrade` custom metrics an instance's health endpoint may report (metrics
    Azure adds later are ignored)."""

    phase_ordering_number: int | None = Field(default=None, alias="PhaseOrderingNumber")
    skip_upgrade: bool = Field(default=False, alias="SkipUpgrade")


class OsDisk(AzureModel):
    name: str
    image_reference: ImageReference


class DataDisk(AzureModel):
    lun: int
    name: str
    disk_size_gb: int = Field(alias="diskSizeGB")


class ExtensionSpec(AzureModel):
    """One extension of a scale set's model (`virtualMachineProfile.extensionProfile.extensions[]`,
    its `properties` flattened): what `fleet create` asks for. typeHandlerVersion is the
    major.minor Azure installs the newest patch of (an exact major.minor.patch pins one)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    publisher: str
    type_: str = Field(alias="type")
    type_handler_version: Annotated[str, Field(pattern=r"^\d+(\.\d+){1,3}$")]
    auto_upgrade_minor_version: bool = True
    enable_automatic_upgrade: bool = False


class ExtensionView(AzureModel):
    """One extension of a scale set's model, as a back end reads it (Azure's extensionProfile)."""

    name: str
    publisher: str = ""
    type_: str = Field(default="", alias="type")
    type_handler_version: str = ""
    auto_upgrade_minor_version: bool = False
    enable_automatic_upgrade: bool = False

    @property
    def full_type(self) -> str:
        """`publisher.type`, as instance views name the extension."""
        return f"{self.publisher}.{self.type_}"


class InstanceExtension(AzureModel):
    """An extension installed on one instance (Azure's instanceView.extensions[] entry)."""

    name: str
    type_: str = Field(
        default="", alias="type", description='"publisher.type", as the instance view names it'
    )
    type_handler_version: str | None = Field(
        default=None, description="the version installed, exactly (major.minor.patch)"
    )
    status: str = Field(
        default="ProvisioningState/succeeded",
        description="the extension's provisioning status code: ProvisioningState/succeeded, "
        "ProvisioningState/failed/<code>, ProvisioningState/transitioning",
    )
    message: str | None = None
    time: AwareDatetime | None = Field(
        default=None, description="when the provisioning status was set (the status's `time`)"
    )

    @property
    def succeeded(self) -> bool:
        return self.status.lower() == "provisioningstate/succeeded"

    @property
    def failed(self) -> bool:
        return self.status.lower().startswith("provisioningstate/failed")

    @property
    def transitioning(self) -> bool:
        return self.status.lower() in (
            "provisioningstate/transitioning",
            "provisioningstate/updating",
            "provisioningstate/creating",
        )


class InstanceView(AzureModel):
    # Uniform: the instance id ("0", "1", ...); Flexible: the VM's name.
    instance_id: str
    vm_name: str | None = None
    zone: str | None = None
    platform_update_domain: int = 0
    platform_fault_domain: int = 0
    image_reference: ImageReference
    os_disk: OsDisk
    data_disks: list[DataDisk] = Field(default_factory=list)
    provisioning_state: str = "Succeeded"
    power_state: str = "running"
    health: HealthState = HealthState.UNKNOWN
    custom_metrics: CustomMetrics = Field(default_factory=CustomMetrics)
    restore_point: str | None = Field(
        default=None,
        description="what FleetBackend.begin_restore needs to bring this OS disk back: the "
        "disk's id (Flexible: OS disk swap) or the image at its exact version (Uniform)",
    )
    error_code: str | None = Field(
        default=None, description="the error of the instance's last operation when it failed"
    )
    extensions: list[InstanceExtension] = Field(
        default_factory=list, description="the extensions installed on the instance, with versions"
    )

    def extension(self, name: str) -> InstanceExtension | None:
        """The installed extension called `name` (case-insensitive), if any."""
        return next((e for e in self.extensions if e.name.lower() == name.lower()), None)

    @property
    def busy(self) -> bool:
        """An operation is under way on the instance (Azure: provisioningState Updating)."""
        return self.provisioning_state in ("Updating", "Creating", "Deleting")


# A Uniform instance's restore point: this prefix + the image at its exact version (Uniform has
# no call to restore an OS disk: it is reimaged back); a Flexible one's is its OS disk's id.
IMAGE_RESTORE_POINT_PREFIX = "image:"

OrchestrationMode = Literal["Uniform", "Flexible"]
UpgradeMode = Literal["Manual", "Automatic", "Rolling"]


class ScaleSetView(AzureModel):
    name: str
    id: str
    location: str
    zones: list[str] = Field(default_factory=list)
    image_reference: ImageReference
    orchestration_mode: OrchestrationMode = "Uniform"
    upgrade_mode: UpgradeMode = "Manual"
    automatic_os_upgrade: bool = Field(
        default=False, description="automaticOSUpgradePolicy.enableAutomaticOSUpgrade of the set"
    )
    rolling_upgrade_policy: RollingUpgradePolicy | None = Field(
        default=None,
        description="upgradePolicy.rollingUpgradePolicy of the set's model, when it has one: an "
        "upgrade's policy where the user gave no value",
    )
    instances: list[InstanceView] = Field(default_factory=list)
    extensions: list[ExtensionView] = Field(
        default_factory=list, description="virtualMachineProfile.extensionProfile.extensions"
    )
    # Views read before health sources were (recorded histories) all came from sets with the
    # Application Health extension: the default.
    health_source: HealthSource = Field(
        default=HealthSource.EXTENSION, description="where each instance's health is read"
    )
    health_probe_id: str | None = Field(
        default=None, description="virtualMachineProfile.networkProfile.healthProbe.id"
    )
    health_extension: ApplicationHealthSettings | None = Field(
        default=None,
        description="the Application Health extension's settings in the model (it probes with "
        "them inside the VM), when it has one",
    )
    maintenance_window: MaintenanceWindow | None = Field(
        default=None,
        description="the window of the OSImage maintenance configuration assigned to the set "
        "(its configuration assignment), when it has one",
    )
    # Views recorded before MaxSurge do not have these.
    vm_size: str | None = Field(default=None, description="sku.name: every instance's VM size")
    capacity: int | None = Field(
        default=None, description="sku.capacity: the instances the set has, less those being deleted"
    )

    @property
    def both_health_sources(self) -> bool:
        """Seed 000: "Only one source of health monitoring can be used" for automatic upgrades."""
        return self.health_extension is not None and self.health_probe_id is not None


class OperationStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELED = "Canceled"


class OperationKind(StrEnum):
    REIMAGE = "reimage"
    RESTORE = "restoreOsDisk"
    # Started from outside the upgrade (the emulator's admin API): keeps an instance busy.
    RESTART = "restart"
    # One extension of one instance set to a version (PATCH/PUT .../extensions/{name}).
    INSTALL_EXTENSION = "installExtension"
    # A Flexible VM stopped and released (POST .../deallocate), or started again (POST
    # .../start): Azure swaps an OS disk only while the VM is deallocated.
    DEALLOCATE = "deallocate"
    START = "start"
    # MaxSurge: an instance created by a raise of the set's capacity (PATCH sku.capacity), and
    # one deleted by id (POST .../delete, DELETE .../virtualMachines/{id}).
    CREATE = "create"
    DELETE = "delete"


class OperationError(AzureModel):
    code: str
    message: str


class FleetOperation(AzureModel):
    """A long-running operation, as the back end reports it (Azure's async operation)."""

    operation_id: str
    kind: OperationKind
    scale_set: str
    instance_id: str
    status: OperationStatus
    start_time: AwareDatetime
    end_time: AwareDatetime | None = None
    image_reference: ImageReference | None = None
    previous_os_disk: str | None = None
    os_disk: str | None = None
    error: OperationError | None = None
    request_count: int = 1
    retry_after_seconds: float | None = None
    ready_time: AwareDatetime | None = Field(
        default=None, description="when the instance had booted after this operation"
    )
    status_url: str | None = Field(
        default=None, description="where the back end polls it (Azure-AsyncOperation)"
    )
    extension_name: str | None = Field(default=None, description="installExtension: the extension")
    extension_version: str | None = Field(default=None, description="installExtension: the version asked for")


class InstanceRecord(AzureModel):
    """One instance's life in the emulator (GET /admin/scaleSets/{name}/instanceRecords): when
    it was created, provisioned (Succeeded), booted, and when its deletion began and ended. An
    instance serves from `ready` until `delete_started`: a test proves capacity never dropped."""

    instance_id: str
    zone: str | None = None
    created: AwareDatetime
    provisioned: AwareDatetime | None = None
    ready: AwareDatetime | None = None
    delete_started: AwareDatetime | None = None
    deleted: AwareDatetime | None = None


class QuotaUsage(AzureModel):
    """One entry of the Compute usages API: `name` is name.value (a VM family such as
    standardDSv3Family, or `cores`: every vCPU in the region)."""

    name: str
    current_value: int
    limit: int


class CoreQuota(AzureModel):
    """What a scale set's new instances would count against: its VM size's vCPUs and family
    (the resource SKUs API), and the region's usage of the family and of all cores."""

    location: str
    vm_size: str | None = None
    family: str | None = None
    cores_per_instance: int | None = None
    family_usage: QuotaUsage | None = None
    regional_usage: QuotaUsage | None = None


class HealthReading(AzureModel):
    """Every instance's health and phase, and nothing else: what the upgrade re-reads before
    each batch (a few bytes an instance, where a full view is hundreds)."""

    health: dict[str, HealthState]
    phases: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def of(cls, view: ScaleSetView) -> HealthReading:
        return cls(
            health={i.instance_id: i.health for i in view.instances},
            phases={
                i.instance_id: i.custom_metrics.phase_ordering_number
                for i in view.instances
                if i.custom_metrics.phase_ordering_number is not None
            },
        )


class HealthProbe(AzureModel):
    """One probe of an instance's health endpoint."""

    state: HealthState
    custom_metrics: CustomMetrics = Field(default_factory=CustomMetrics)
    detail: str | None = None


class GalleryImageVersion(AzureModel):
    """One published image version and the regions it has been replicated to."""

    image_reference: ImageReference
    regions: list[str] = Field(default_factory=list)
    exclude_from_latest: bool = False
    published_date: AwareDatetime | None = None


SecondsRange = Annotated[list[float], Field(min_length=2, max_length=2)]


class TimingSpec(AzureModel):
    """Latencies of the emulated cloud, each a [min, max] range in seconds, drawn per instance."""

    reimage_seconds: SecondsRange = Field(default_factory=lambda: [1.0, 2.0])
    restore_seconds: SecondsRange = Field(default_factory=lambda: [1.0, 2.0])
    boot_seconds: SecondsRange = Field(default_factory=lambda: [2.0, 4.0])
    extension_seconds: SecondsRange = Field(default_factory=lambda: [1.0, 2.0])
    # A Flexible VM's deallocate or start (the start's boot comes on top: bootSeconds).
    power_seconds: SecondsRange = Field(default_factory=lambda: [1.0, 2.0])

    @model_validator(mode="after")
    def _ordered(self) -> TimingSpec:
        for name in type(self).model_fields:
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name}: need 0 <= min <= max (got [{low}, {high}])")
        return self


class GoUnhealthy(AzureModel):
    """Instances that turn unhealthy on their own once this many reimages have completed."""

    after_reimages: Annotated[int, whole_number(1, 1_000_000)]
    instances: list[str]


class FaultSpec(AzureModel):
    """Fault injection for one scale set; every draw is seeded, so a run can be repeated."""

    unhealthy_images: list[str] = Field(
        default_factory=list, description="versions that never become healthy"
    )
    unhealthy_after_upgrade: list[str] = Field(
        default_factory=list, description="instance ids that fail health on any image but the model's"
    )
    unhealthy_share: float = Field(default=0.0, ge=0, le=1)
    operation_errors: dict[str, str] = Field(
        default_factory=dict, description="instance id -> error code its reimage fails with"
    )
    transient_error_share: float = Field(default=0.0, ge=0, le=1)
    transient_status_codes: list[int] = Field(default_factory=lambda: [429, 500, 503])
    timeout_share: float = Field(default=0.0, ge=0, le=1)
    malformed_share: float = Field(
        default=0.0, ge=0, le=1, description="share of API answers replaced by a malformed body"
    )
    timeout_seconds: float = Field(default=5.0, ge=0)
    go_unhealthy: list[GoUnhealthy] = Field(default_factory=list)
    # ARM faults (fleet/emulator/faults.py). Each ARM call draws once: a transient error
    # (transient_error_share), else a dropped connection, a slow answer, a malformed body.
    after_accept_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="share of transient 5xx errors that come after the request took effect "
        "(the action was accepted, the answer is an error); 429s always come before",
    )
    dropped_connection_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of ARM calls whose connection drops after the request took effect "
        "(a body shorter than its Content-Length): the client sees no HTTP status",
    )
    throttle_calls: Annotated[int, whole_number(0, 1_000_000)] = Field(
        default=0, description="a 429 storm: the next N ARM calls of the scale set answer 429"
    )
    throttle_seconds: float = Field(
        default=0.0, ge=0, description="a 429 storm: every ARM call answers 429 for S seconds from now"
    )
    retry_after_seconds: Annotated[int, whole_number(0, 3600)] = Field(
        default=1, description="Retry-After of the 429 answers"
    )
    faults_on_polls: bool = Field(
        default=True, description="inject on operation-status polls too (Azure throttles them)"
    )
    # Extension faults: each entry names a version as "<publisher>.<type>:<version>",
    # "<type>:<version>" or "<extension name>:<version>" (case-insensitive); a version of
    # major.minor matches every patch of it ("AgentLinux:1.2" matches 1.2.0 and 1.2.7).
    unhealthy_extension_versions: list[str] = Field(
        default_factory=list,
        description="extension versions that make the instance's application unhealthy while "
        "installed (healthy again once another version is installed)",
    )
    failing_extension_versions: list[str] = Field(
        default_factory=list,
        description="extension versions whose install fails (VMExtensionProvisioningError) until "
        "the publisher fixes them (EmulatorAdmin.fix_extension_version)",
    )


class HealthExtensionSpec(AzureModel):
    """The scale set's Application Health extension (ApplicationHealthLinux): its settings, as
    Azure shows them; `rich` is typeHandlerVersion 2.0 (rich health states), else 1.0 (binary)."""

    protocol: Literal["http", "https", "tcp"] = "http"
    port: Annotated[int, whole_number(1, 65535)] = 80
    request_path: str = "/health"
    interval_in_seconds: Annotated[int, whole_number(1, 60)] = 5
    number_of_probes: Annotated[int, whole_number(1, 24)] = 1
    grace_period: Annotated[int, whole_number(0, 7200)] | None = None
    rich: bool = True


class ScaleSetSpec(AzureModel):
    """What `upgradectl fleet create` asks the emulator for."""

    name: ScaleSetName
    location: str = "westeurope"
    capacity: Annotated[int, whole_number(1, 10_000)] = 10
    zones: list[str] = Field(default_factory=list)
    update_domain_count: Annotated[int, whole_number(1, 20)] = 5
    fault_domain_count: Annotated[int, whole_number(1, 5)] = 5
    image_reference: ImageReference
    data_disks_per_instance: Annotated[int, whole_number(0, 16)] = 1
    timing: TimingSpec = Field(default_factory=TimingSpec)
    faults: FaultSpec = Field(default_factory=FaultSpec)
    custom_metrics: dict[str, CustomMetrics] = Field(default_factory=dict)
    app_endpoint: Literal["rich", "binary"] = Field(
        default="rich",
        description="how every instance's health endpoint answers: rich states in a JSON body "
        "(200 with ApplicationHealthState Healthy or Unhealthy) or binary (200 when healthy, "
        "503 when not); see fleet/emulator/cloud.py Cloud.app_health",
    )
    seed: int = 0
    orchestration_mode: OrchestrationMode = "Uniform"
    upgrade_mode: UpgradeMode = "Manual"
    automatic_os_upgrade: bool = False
    rolling_upgrade_policy: RollingUpgradePolicy | None = Field(
        default=None, description="upgradePolicy.rollingUpgradePolicy of the model (None: none)"
    )
    health_extension: HealthExtensionSpec | None = Field(
        default=None,
        description="the Application Health extension's settings; None: the defaults, rich "
        "unless appEndpoint is binary",
    )
    health_source: Literal["extension", "loadBalancerProbe", "both", "none"] = Field(
        default="extension",
        description="what reports health: the Application Health extension (healthExtension), "
        "a load balancer health probe (networkProfile.healthProbe, probing the application as "
        "healthExtension says, answers read as binary), both (Azure's automatic upgrades refuse "
        "that), or none (power and provisioning state)",
    )
    page_size: Annotated[int, whole_number(1, 1000)] = Field(
        default=100, description="instances per page of ARM lists (nextLink beyond)"
    )
    vm_size: str = "Standard_D2s_v3"
    extensions: list[ExtensionSpec] = Field(
        default_factory=list,
        description="extensions of the model besides the Application Health extension; every "
        "instance gets them installed at create and scale-out",
    )

    @model_validator(mode="before")
    @classmethod
    def _probed_apps_answer_binary(cls, data: Any) -> Any:
        # An application behind a load balancer probe answers an error status when unhealthy
        # (the probe reads only the status): a rich one's 200 "Unhealthy" would read Up.
        if (
            isinstance(data, dict)
            and data.get("healthSource", data.get("health_source")) == "loadBalancerProbe"
        ):
            if "appEndpoint" not in data and "app_endpoint" not in data:
                data = {**data, "appEndpoint": "binary"}
        return data

    @model_validator(mode="after")
    def _extension_names(self) -> ScaleSetSpec:
        seen: set[str] = set()
        for extension in self.extensions:
            key = extension.name.lower()
            if key == "healthextension":
                raise ValueError(
                    "extensions: HealthExtension is the Application Health extension; "
                    "set it with healthExtension"
                )
            if key in seen:
                raise ValueError(f"extensions: the name {extension.name!r} is used twice")
            seen.add(key)
        return self

    @property
    def has_health_extension(self) -> bool:
        return self.health_source in ("extension", "both")

    @property
    def has_health_probe(self) -> bool:
        return self.health_source in ("loadBalancerProbe", "both")

    @property
    def extension(self) -> HealthExtensionSpec:
        """The health extension in effect (old specs: appEndpoint decides rich or binary)."""
        return self.health_extension or HealthExtensionSpec(rich=self.app_endpoint == "rich")
