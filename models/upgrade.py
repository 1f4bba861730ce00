"""One upgrade: the request, each instance's progress and outcome, and the final report."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, PlainSerializer, model_validator

from models.alarms import Alarm
from models.base import AzureModel
from models.change import Change, ExtensionRequest, ExtensionTarget
from models.errors import FailureCause
from models.fleet import HealthSource, HealthState, InstanceView, ScaleSetName, ScaleSetView
from models.image import ImageReference
from models.maintenance import MaintenanceWindow
from models.notifications import NotificationRecord, Notifications
from models.policy import (
    DEFAULT_ALARM_UNREACHABLE_TIMEOUT,
    AlarmUnreachableTimeout,
    ApplicationHealthSettings,
    RollingUpgradePolicy,
    UpgradePolicy,
    UpgradeTimeout,
    format_duration,
    iso_duration,
)
from models.status import (
    RollbackStatusInfo,
    RollingUpgradeStatusInfo,
    UpgradeOperationHistoricalStatusInfo,
    UpgradeOperationHistoricalStatusInfoProperties,
    UpgradeOperationHistoryStatus,
)

# The workflow and its messages by name: the starter reaches them without importing workflows/.
ROLLING_UPGRADE_WORKFLOW = "RollingUpgradeWorkflow"
PREFLIGHT_WORKFLOW = "UpgradePreflightWorkflow"
BATCH_UPGRADE_WORKFLOW = "BatchUpgradeWorkflow"
ADMIT_UPDATE = "admit"
CANCEL_SIGNAL = "cancel"
PAUSE_SIGNAL = "pause"  # PauseRequest: the batch in flight finishes, no new one starts
RESUME_SIGNAL = "resume"  # ResumeRequest
APPROVE_SIGNAL = "approve"  # ApproveRequest: Azure's ApproveRollingUpgrade
ZONE_PERMIT_SIGNAL = "zone_permit"  # ZonePermit: the rollout's zone wave lets it upgrade a zone
ALARM_SIGNAL = "alarm"  # AlarmSignal, on a batch child: an alarm fired, stop the health waits
WAVE_REPORT_SIGNAL = "wave_report"  # WaveReport, on the rollout: the zones an upgrade has left
STATUS_QUERY = "status"
INSTANCES_QUERY = "instances"
PLAN_QUERY = "plan"
REPORT_QUERY = "report"


def upgrade_workflow_id(scale_set: str) -> str:
    """One upgrade per scale set at a time: the id is the lock."""
    return f"rolling-upgrade/{scale_set}"


# scheduledEventsProfile.osImageNotificationProfile.notBeforeTimeout: Azure allows only PT15M.
NotBeforeTimeout = Annotated[
    timedelta,
    iso_duration(timedelta(minutes=5), timedelta(hours=2)),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


REGIONAL = ""  # the zone key of instances without an availability zone


class ZoneOpening(AzureModel):
    """The region's first zone wave, permitted with the upgrade's start: the round trip of a
    report and a permit is saved where the rollout's sets start at once. A set whose batch is
    larger than its share of the region's cap reports first, as every set does after its zone."""

    zone: str
    instances: int = Field(ge=1, description="the most instances the set may have in flight in it")


class WaveCoordination(AzureModel):
    """An upgrade a rollout runs in zone waves across the sets of a region: it upgrades a zone
    only while the rollout permits it (`zone_permit`), and tells the rollout (`wave_report` on
    the rollout's workflow) what zones it has left after admission (unless its first wave came
    with its start: `opening`) and after each zone."""

    rollout_id: str
    region: str
    opening: ZoneOpening | None = Field(
        default=None,
        description="the first wave's zone, permitted from the start (no report first) to a batch "
        "of at most its instances",
    )


class ZonePermit(AzureModel):
    zone: str = Field(description="the zone whose instances may go now; '' the regional ones")


class WaveReport(AzureModel):
    """What an upgrade in zone waves has left: instances to upgrade per zone key, its batch size."""

    scale_set: str
    zones: dict[str, int] = Field(default_factory=dict)
    batch: int = 1
    done: str | None = Field(default=None, description="the zone it has just finished, if any")
    again: bool = Field(default=False, description="the same report again: it still waits")


class CancelRequest(AzureModel):
    """The `cancel` signal's payload (optional: a bare signal is a cancel by someone unknown)."""

    by: str = "User"
    reason: str = ""


def _flag(value: bool) -> str:
    return "true" if value else "false"  # Azure's spelling


def absolute_limits(policy: RollingUpgradePolicy) -> list[tuple[str, str]]:
    """The absolute limits set, as (name, value) rows (none set: none, as Azure has none)."""
    counts = {
        "maxBatchInstanceCount": policy.max_batch_instance_count,
        "maxUnhealthyInstanceCount": policy.max_unhealthy_instance_count,
        "maxUnhealthyUpgradedInstanceCount": policy.max_unhealthy_upgraded_instance_count,
    }
    return [(name, str(value)) for name, value in counts.items() if value is not None]


def extension_settings(health: ApplicationHealthSettings) -> str:
    """An Application Health extension's settings, as `status` and `plan` show them."""
    where = f"{health.protocol} :{health.port}{health.request_path or ''}"
    return (
        f"{where}, every {health.interval_in_seconds} s, {health.number_of_probes} probe(s) in a row, "
        f"gracePeriod {health.effective_grace_period} s, {health.health_states} states"
    )


class UpgradeRequest(AzureModel):
    """The input of RollingUpgradeWorkflow; fields are only ever added, with defaults (and
    fields a newer starter adds are ignored, not refused)."""

    scale_set: ScaleSetName
    target_image: ImageReference | None = Field(
        default=None, description="an OS image upgrade: the image to move to (None: an extension upgrade)"
    )
    extensions: list[ExtensionRequest] | None = Field(
        default=None,
        description="an extension upgrade (Azure's Start Extension Upgrade): the extensions of the "
        "model to move, each to an exact version or the newest of its major version; [] every "
        "extension of the model",
    )
    policy: RollingUpgradePolicy = Field(default_factory=RollingUpgradePolicy)
    disable_automatic_rollback: bool = False
    health: ApplicationHealthSettings = Field(default_factory=ApplicationHealthSettings)
    started_by: str = "User"
    upgrade_timeout: UpgradeTimeout | None = None
    notifications: Notifications = Field(default_factory=Notifications)
    deferral: bool = Field(
        default=False,
        description="osRollingUpgradeDeferral: every batch waits until its instances are approved "
        "(the `approve` signal, `upgradectl approve`)",
    )
    not_before_timeout: NotBeforeTimeout | None = Field(
        default=None,
        description="osImageNotificationProfile.notBeforeTimeout: an instance pending approval is "
        "approved on its own this long after it became pending (PT5M-PT2H)",
    )
    waves: WaveCoordination | None = Field(
        default=None, description="a rollout's zone waves: a zone only while the rollout permits it"
    )
    policy_given: list[str] | None = Field(
        default=None,
        description="the rollingUpgradePolicy fields the user gave (a policy file, flags): the scale "
        "set's own policy decides the others; None: the policy as it is (no set's policy read)",
    )
    policy_from_scale_set: list[str] = Field(
        default_factory=list,
        description="the rollingUpgradePolicy fields taken from the scale set's own policy (set at "
        "admission)",
    )
    health_source: HealthSource | None = Field(
        default=None, description="where instances' health is read (set at admission; None: not read)"
    )
    health_probe_id: str | None = Field(default=None, description="the load balancer probe, its source")
    health_extension: ApplicationHealthSettings | None = Field(
        default=None,
        description="the Application Health extension's settings in the scale set's model (set at "
        "admission): on Azure they, not `health`'s probe settings, decide how it probes",
    )
    rollback_of: str | None = Field(
        default=None,
        description="a rollback (`upgradectl rollback`): the upgrade whose instances it returns to "
        "their previous version, by its workflow run",
    )
    only_instances: list[str] | None = Field(
        default=None, description="a rollback: the instances that upgrade moved (the others are skipped)"
    )
    respect_maintenance_window: bool = Field(
        default=False,
        description="batches start only inside the set's maintenance window (OS image upgrades; "
        "rollouts always, `start` with --respect-maintenance-window): the window of the OSImage "
        "configuration assigned to the set in Azure, else `maintenanceWindow`",
    )
    maintenance_window: MaintenanceWindow | None = Field(
        default=None, description="the window `auto enable` was given for the set"
    )
    alarms: list[Alarm] = Field(
        default_factory=list, description="alarm gates: read before every batch and during its health wait"
    )
    rollback_on_alarm: bool = Field(
        default=True, description="an alarm that fires rolls back the batch in flight"
    )
    alarm_unreachable_timeout: AlarmUnreachableTimeout = Field(
        default=DEFAULT_ALARM_UNREACHABLE_TIMEOUT,
        description="how long alarms that cannot be read hold the upgrade before it faults",
    )

    @model_validator(mode="after")
    def _one_change(self) -> UpgradeRequest:
        if (self.target_image is None) == (self.extensions is None):
            raise ValueError(
                "an upgrade changes either the OS image (targetImage) or extensions, one of them"
            )
        names = [e.name.lower() for e in self.extensions or []]
        if len(set(names)) != len(names):
            raise ValueError("extensions: each extension may be named once")
        return self

    @property
    def change_asked(self) -> str:
        """The change as asked for (before admission resolves it)."""
        if self.target_image is not None:
            return str(self.target_image)
        if not self.extensions:
            return "every extension of the model to its newest version"
        return "extension " + ", ".join(f"{e.name} {e.version or '(newest)'}" for e in self.extensions)

    @property
    def needs_approval(self) -> bool:
        """Every batch waits for approval: with deferral, or with a notice (notBeforeTimeout).
        Both are OS image settings (osRollingUpgradeDeferral, osImageNotificationProfile): an
        extension upgrade does not reboot the VM, and Azure asks no approval for it."""
        if self.target_image is None:
            return False
        return self.deferral or self.not_before_timeout is not None

    def rolling_policy(self) -> list[tuple[str, str]]:
        """The rollingUpgradePolicy as (name, value) rows; each value says where it came from
        (the scale set, given, or the default) when the scale set's own policy was read."""
        policy = self.policy
        rolling = [
            ("maxBatchInstancePercent", str(policy.max_batch_instance_percent)),
            ("maxUnhealthyInstancePercent", str(policy.max_unhealthy_instance_percent)),
            ("maxUnhealthyUpgradedInstancePercent", str(policy.max_unhealthy_upgraded_instance_percent)),
            *absolute_limits(policy),
            ("pauseTimeBetweenBatches", format_duration(policy.pause_time_between_batches)),
            ("enableCrossZoneUpgrade", _flag(policy.enable_cross_zone_upgrade)),
            ("prioritizeUnhealthyInstances", _flag(policy.prioritize_unhealthy_instances)),
            (
                "rollbackFailedInstancesOnPolicyBreach",
                _flag(policy.rollback_failed_instances_on_policy_breach),
            ),
        ]
        if self.policy_given is not None:
            rolling = [(name, f"{value} ({self.policy_source(name)})") for name, value in rolling]
        return rolling

    def health_rows(self) -> list[tuple[str, str]]:
        """Where health comes from and how it is read; before admission (or in an upgrade that
        never read its source) the probe settings as given."""
        health = self.health
        if self.health_source is None:
            return [
                ("health probe", f"{health.protocol} :{health.port}{health.request_path or ''}"),
                (
                    "intervalInSeconds / numberOfProbes",
                    f"{health.interval_in_seconds} / {health.number_of_probes}",
                ),
                ("gracePeriod", f"{health.effective_grace_period} s"),
            ]
        source = self.health_source.described
        if self.health_source == HealthSource.LOAD_BALANCER_PROBE and self.health_probe_id:
            source += f" {self.health_probe_id.rsplit('/loadBalancers/', 1)[-1]}"
        rows = [("health source", source)]
        if (extension := self.health_extension) is not None:
            rows.append(("health extension (the model's)", extension_settings(extension)))
        rows.append(("health looked at every", f"{health.interval_in_seconds} s"))
        return rows

    def with_scale_sets_health(self, scale_set: ScaleSetView) -> UpgradeRequest:
        """The request with where the scale set's health comes from (what status shows)."""
        return self.model_copy(
            update={
                "health_source": scale_set.health_source,
                "health_probe_id": scale_set.health_probe_id,
                "health_extension": scale_set.health_extension,
            }
        )

    def effective_policy(self) -> list[tuple[str, str]]:
        """Every setting the upgrade runs with, as (name, value) rows."""
        health = self.health
        return [
            ("target image" if self.target_image is not None else "extensions", self.change_asked),
            *self.rolling_policy(),
            ("disableAutomaticRollback", _flag(self.disable_automatic_rollback)),
            *self.health_rows(),
            ("healthWaitTimeout", format_duration(health.health_wait_timeout)),
            ("upgradeTimeout", format_duration(self.upgrade_timeout) if self.upgrade_timeout else "none"),
            ("osRollingUpgradeDeferral", _flag(self.deferral)),
            (
                "notBeforeTimeout",
                format_duration(self.not_before_timeout) if self.not_before_timeout else "none",
            ),
            ("startedBy", self.started_by),
            ("webhooks", ", ".join(self.notifications.webhooks) or "none"),
            *self.alarm_rows(),
        ]

    def alarm_rows(self) -> list[tuple[str, str]]:
        """The alarm gates, one row each, then what an alarm does (none: no row)."""
        if not self.alarms:
            return []
        return [
            *((f"alarm {alarm.name}", alarm.source) for alarm in self.alarms),
            ("rollbackOnAlarm", _flag(self.rollback_on_alarm)),
            ("alarmUnreachableTimeout", format_duration(self.alarm_unreachable_timeout)),
        ]

    def policy_source(self, name: str) -> str:
        """Where a rollingUpgradePolicy field's value came from: "scale set", "given", "default"."""
        if name in self.policy_from_scale_set:
            return "scale set"
        return "given" if name in (self.policy_given or []) else "default"

    def with_scale_sets_policy(self, own: RollingUpgradePolicy | None) -> UpgradeRequest:
        """The request with the scale set's own rollingUpgradePolicy (seed 003: "Upgrade policies
        defined on the scale set are honored") under the fields the user gave, field by field."""
        if self.policy_given is None or own is None:
            return self
        given = self.policy.to_json()
        merged = {**own.to_json(), **{name: given[name] for name in self.policy_given if name in given}}
        from_set = [name for name in own.to_json() if name not in self.policy_given]
        return self.model_copy(
            update={"policy": RollingUpgradePolicy.model_validate(merged), "policy_from_scale_set": from_set}
        )

    @classmethod
    def from_policy(
        cls, scale_set: str, target_image: ImageReference | None, policy: UpgradePolicy, **extra: object
    ) -> UpgradeRequest:
        return cls(
            scale_set=scale_set,
            target_image=target_image,
            policy=policy.rolling_upgrade_policy,
            disable_automatic_rollback=policy.automatic_os_upgrade_policy.disable_automatic_rollback,
            health=policy.application_health,
            upgrade_timeout=policy.upgrade_timeout,
            notifications=policy.notifications,
            alarms=policy.alarms,
            rollback_on_alarm=policy.rollback_on_alarm,
            alarm_unreachable_timeout=policy.alarm_unreachable_timeout,
            **extra,
        )


class InstanceState(StrEnum):
    PENDING = "Pending"
    # Due in the next batch, waiting for approval (Azure shows the VM Platform.PendingOSUpgrade).
    PENDING_APPROVAL = "PendingApproval"
    IN_PROGRESS = "InProgress"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    NOT_STARTED = "NotStarted"


FINAL_FAILURES = (InstanceState.ROLLED_BACK, InstanceState.FAILED)
ATTEMPTED = (InstanceState.SUCCEEDED, *FINAL_FAILURES)


class ExtensionOutcome(AzureModel):
    """What became of one extension of an extension upgrade on one instance: each is applied on
    its own (seed 003: "A failure on one extension doesn't affect the other extensions")."""

    state: InstanceState = Field(
        description="Succeeded: moved to its target; RolledBack: its previous version reinstalled; "
        "Failed: left as it is (no rollback, or none possible)"
    )
    cause: FailureCause | None = None
    code: str | None = None
    message: str | None = None


class InstanceResult(AzureModel):
    """What became of an instance: the fields an outcome reports and the progress keeps.

    Payloads between workflows accept fields they do not know: during a deploy, a worker of
    the previous release may read what one of the next release wrote."""

    cause: FailureCause | None = None
    code: str | None = None
    message: str | None = None
    previous_os_disk: str | None = None
    previous_extensions: dict[str, str] | None = Field(
        default=None,
        description="extension changes: the versions installed before, which a rollback reinstalls",
    )
    extension_outcomes: dict[str, ExtensionOutcome] | None = Field(
        default=None,
        description="extension changes applied each on its own: what became of each extension "
        "tried on the instance, by name",
    )
    health: HealthState | None = None
    health_after_restore: HealthState | None = None
    restored: bool | None = Field(
        default=None,
        description="None: no restore was tried; True: restored and healthy again; False: the "
        "restore failed, was impossible (no previous OS disk) or left the instance unhealthy",
    )
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None


class InstanceOutcome(InstanceResult):
    """How one instance's upgrade (or restore) ended, as the batch workflow returns it."""

    instance_id: str
    state: InstanceState
    replaced_by: str | None = Field(
        default=None,
        description="maxSurge: the new instance created from the target that replaced this one, "
        "which was then deleted",
    )


class InstanceProgress(InstanceResult):
    """One instance as the upgrade sees it: where it is, and what became of it."""

    instance_id: str
    zone: str | None = None
    update_domain: int = 0
    fault_domain: int = 0
    from_image: str = Field(
        description="what the instance had before of what the upgrade changes: its image, or the "
        "versions of the extensions moved"
    )
    state: InstanceState = InstanceState.PENDING
    batch: int | None = None
    replaces: str | None = Field(
        default=None,
        description="maxSurge: the instance this one, created from the target, replaced (deleted since)",
    )
    # Deferral: since when it awaited approval, and who approved it when ("notBeforeTimeout"
    # when it was approved on its own).
    pending_approval_since: AwareDatetime | None = None
    approved_by: str | None = None
    approval_time: AwareDatetime | None = None

    @classmethod
    def of(
        cls,
        view: InstanceView,
        from_image: str | None = None,
        previous_extensions: dict[str, str] | None = None,
    ) -> InstanceProgress:
        """The instance as read; `from_image` and `previous_extensions` as the change's kind reads
        them (rules/change_kinds.py; without them, its image)."""
        return cls(
            instance_id=view.instance_id,
            zone=view.zone,
            update_domain=view.platform_update_domain,
            fault_domain=view.platform_fault_domain,
            from_image=str(view.image_reference) if from_image is None else from_image,
            health=view.health,
            # What a restore would bring back, as read at admission (or scale-out); the reimage
            # replaces it with what it read just before acting.
            previous_os_disk=view.restore_point,
            previous_extensions=previous_extensions,
        )

    def settle(self, outcome: InstanceOutcome) -> None:
        self.state = outcome.state
        for name in InstanceResult.model_fields:
            if getattr(outcome, name) is not None:
                setattr(self, name, getattr(outcome, name))


class PauseRequest(AzureModel):
    """The `pause` signal: no new batch starts until `resume`; the batch in flight finishes."""

    reason: str = ""
    by: str = "User"


class ResumeRequest(AzureModel):
    """The `resume` signal."""

    by: str = "User"


class ApproveRequest(AzureModel):
    """The `approve` signal (Azure's ApproveRollingUpgrade). `instance_ids` None approves every
    instance pending approval now and any that becomes pending later; ids approve those
    instances, now or whenever they become due."""

    instance_ids: list[str] | None = None
    by: str = "User"


class Preflight(AzureModel):
    """The upgrade as it would start now: what `upgradectl start` shows before starting it, and
    the Web UI's summary and details of the upgrade workflow."""

    scale_set: str
    instance_count: int
    from_images: dict[str, int]
    target_image: ImageReference | None = None
    extensions: list[ExtensionTarget] = Field(default_factory=list)
    to_upgrade: int
    skipped: int
    planned_batches: int
    summary: str
    details: str

    @property
    def change(self) -> Change:
        return Change(image=self.target_image, extensions=self.extensions)


class Admission(AzureModel):
    """What the upgrade accepted: returned to `upgradectl start` before any instance is touched."""

    workflow_id: str
    run_id: str
    scale_set: str
    target_image: ImageReference | None = None
    extensions: list[ExtensionTarget] = Field(default_factory=list)
    instance_count: int
    to_upgrade: int
    skipped: int
    planned_batches: int


class UpgradeReport(AzureModel):
    """The end of an upgrade: Azure's status plus what Azure's shape has no room for."""

    status: RollingUpgradeStatusInfo
    target_image: ImageReference | None = None
    extensions: list[ExtensionTarget] = Field(default_factory=list)
    rollback_info: RollbackStatusInfo = Field(default_factory=RollbackStatusInfo)
    skipped_instance_count: int = 0
    batches: int = 0
    instances: list[InstanceProgress] = Field(default_factory=list)
    request: UpgradeRequest | None = None
    notifications: list[NotificationRecord] = Field(default_factory=list)
    cancelled_by: str | None = Field(default=None, description="who asked for the cancel, if cancelled")

    @property
    def change(self) -> Change:
        return Change(image=self.target_image, extensions=self.extensions)

    def history_entry(self, end_time: datetime | None) -> UpgradeOperationHistoricalStatusInfo:
        """This upgrade as an entry of Azure's OS upgrade history (error details capped at 20)."""
        properties = self.status.properties
        if properties is None:  # the workflows always report them; Azure's minimal status has none
            raise ValueError("an upgrade status without properties has no history entry")
        error = properties.error
        if error is not None and error.details and len(error.details) > 20:
            error = error.model_copy(update={"details": error.details[:20]})
        return UpgradeOperationHistoricalStatusInfo(
            location=self.status.location,
            properties=UpgradeOperationHistoricalStatusInfoProperties(
                running_status=UpgradeOperationHistoryStatus(
                    code=properties.running_status.code,
                    start_time=properties.running_status.start_time,
                    end_time=end_time,
                ),
                progress=properties.progress,
                error=error,
                started_by=self.request.started_by if self.request else "Unknown",
                target_image_reference=self.target_image.to_json() if self.target_image else None,
                extensions=[t.to_json() for t in self.extensions] or None,
                rollback_info=self.rollback_info,
                replaced_instances={i.replaces: i.instance_id for i in self.instances if i.replaces} or None,
                rollback_of=self.request.rollback_of if self.request else None,
            ),
        )


class BatchAction(StrEnum):
    UPGRADE = "upgrade"
    RESTORE = "restore"


class BatchInstance(AzureModel):
    instance_id: str
    previous_os_disk: str | None = None
    previous_extensions: dict[str, str] | None = None
    restore_extensions: list[str] | None = Field(
        default=None, description="a restore of these extensions only (None: every one of the change)"
    )
    replacement: str | None = Field(
        default=None,
        description="maxSurge: the new instance created to replace this one (the batch waits for its health)",
    )


class BatchRequest(AzureModel):
    """The input of BatchUpgradeWorkflow: one batch (or part of one) of one upgrade."""

    upgrade_id: str
    scale_set: str
    batch: int
    action: BatchAction = BatchAction.UPGRADE
    instances: list[BatchInstance]
    target_image: ImageReference | None = None
    extensions: list[ExtensionTarget] = Field(
        default_factory=list, description="an extension change: install each, in order (else the image)"
    )
    health: ApplicationHealthSettings
    rollback: bool = True
    independent_extensions: bool = Field(
        default=False,
        description="each extension on its own: one that fails to install is reinstalled at its "
        "previous version alone and the others still go ahead (seed 003)",
    )
    alarms: bool = Field(
        default=False,
        description="alarm gates with rollbackOnAlarm: the `alarm` signal cuts the health waits "
        "short (the upgrade then rolls the batch back)",
    )

    @property
    def change(self) -> Change:
        return Change(image=self.target_image, extensions=self.extensions)


class BatchResult(AzureModel):
    outcomes: list[InstanceOutcome]
