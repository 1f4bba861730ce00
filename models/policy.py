"""What a user may ask of an upgrade: Azure's rolling upgrade policy and health settings.

Names, defaults and ranges follow Azure's RollingUpgradePolicy and the Application Health
extension; where we allow more than Azure (a pause of up to 48 hours) the docstring says so.
Every check fails with a message that names the allowed range, so a bad request is refused
before anything starts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from models.alarms import Alarm, check_alarm_names
from models.base import AzureModel
from models.notifications import Notifications

_TIMEDELTA = TypeAdapter(timedelta)


def format_duration(value: timedelta) -> str:
    """ISO 8601, as Azure writes durations (PT0S, PT5M, PT48H)."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "PT0S"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT"
    if hours:
        text += f"{int(hours)}H"
    if minutes:
        text += f"{int(minutes)}M"
    if secs:
        text += f"{secs:g}S"
    return text


def whole_number(low: int, high: int) -> BeforeValidator:
    """An integer within [low, high]; anything else is refused naming the range."""

    def check(value: Any) -> int:
        number = value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            number = int(value)
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high} (got {value!r})")
        return number

    return BeforeValidator(check)


def iso_duration(low: timedelta, high: timedelta) -> BeforeValidator:
    """An ISO 8601 duration string (or a timedelta) within [low, high]."""
    span = f"{format_duration(low)} to {format_duration(high)}"

    def check(value: Any) -> timedelta:
        if isinstance(value, timedelta):
            duration = value
        elif isinstance(value, str) and value.strip().upper().startswith("P"):
            try:
                duration = _TIMEDELTA.validate_python(value.strip().upper())
            except ValidationError:
                raise ValueError(
                    f"must be an ISO 8601 duration from {span}, such as PT30S or PT5M (got {value!r})"
                ) from None
        else:
            raise ValueError(
                f"must be an ISO 8601 duration from {span}, such as PT30S or PT5M (got {value!r})"
            )
        if not low <= duration <= high:
            raise ValueError(f"must be from {span} (got {format_duration(duration)})")
        return duration

    return BeforeValidator(check)


Percent5To100 = Annotated[int, whole_number(5, 100)]
Percent0To100 = Annotated[int, whole_number(0, 100)]
InstanceCount1 = Annotated[int, whole_number(1, 10_000)]
InstanceCount0 = Annotated[int, whole_number(0, 10_000)]
_AS_ISO = PlainSerializer(format_duration, return_type=str, when_used="json")
PauseBetweenBatches = Annotated[timedelta, iso_duration(timedelta(0), timedelta(hours=48)), _AS_ISO]
HealthWait = Annotated[timedelta, iso_duration(timedelta(seconds=1), timedelta(hours=24)), _AS_ISO]
UpgradeTimeout = Annotated[timedelta, iso_duration(timedelta(minutes=1), timedelta(days=30)), _AS_ISO]
# Alarm gates: how long an alarm that cannot be read may hold the upgrade before it faults.
AlarmUnreachableTimeout = Annotated[
    timedelta, iso_duration(timedelta(minutes=1), timedelta(hours=24)), _AS_ISO
]
DEFAULT_ALARM_UNREACHABLE_TIMEOUT = timedelta(minutes=10)


BakeTime = Annotated[timedelta, iso_duration(timedelta(0), timedelta(days=7)), _AS_ISO]


class Checkpoint(AzureModel):
    """Not Azure's (AWS instance refresh's checkpoints, Argo Rollouts' steps): once `percent` of
    the instances to upgrade are done, the upgrade bakes for `bakeTime` (health still read) and,
    with `approval`, waits for `upgradectl approve` before it goes on."""

    percent: Annotated[int, whole_number(1, 100)]
    bake_time: BakeTime = timedelta(0)
    approval: bool = False


class RollingUpgradePolicy(AzureModel):
    """Azure's RollingUpgradePolicy, with its defaults and ranges.

    pauseTimeBetweenBatches may be up to PT48H (Azure caps it at 10 minutes, too short for a
    real soak). maxSurge: each batch of an OS image upgrade creates new instances from the
    target and deletes the old ones once the new are healthy (workflows/surge.py).
    """

    # maxBatchInstancePercent against maxUnhealthyInstancePercent is checked only where a user
    # gives both (UpgradePolicy.from_user), as Azure checks it: a policy read back (a payload,
    # with every default written out) must not be refused for a default.
    max_batch_instance_percent: Percent5To100 = 20
    max_unhealthy_instance_percent: Percent5To100 = 20
    max_unhealthy_upgraded_instance_percent: Percent0To100 = 20
    pause_time_between_batches: PauseBetweenBatches = timedelta(0)
    enable_cross_zone_upgrade: bool = False
    prioritize_unhealthy_instances: bool = False
    rollback_failed_instances_on_policy_breach: bool = False
    max_surge: bool = False
    # Absolute limits beside the percentages (ours, as Kubernetes' maxUnavailable and Nomad's
    # max_parallel allow): None, no absolute limit; given, the stricter of the two applies
    # (rules/planner.py). Up to a scale set's largest capacity.
    max_batch_instance_count: InstanceCount1 | None = None
    max_unhealthy_instance_count: InstanceCount0 | None = None
    max_unhealthy_upgraded_instance_count: InstanceCount0 | None = None
    checkpoints: list[Checkpoint] | None = None

    @model_validator(mode="after")
    def _checkpoints_rise(self) -> RollingUpgradePolicy:
        for index, (before, after) in enumerate(
            zip(self.checkpoints or [], (self.checkpoints or [])[1:], strict=False)
        ):
            if after.percent <= before.percent:
                raise ValueError(
                    f"checkpoints[{index + 1}].percent: must be above the one before ({before.percent}): "
                    f"checkpoints are cumulative percentages, such as 5, 25, 100 (got {after.percent})"
                )
        return self


# The settings of Azure's Application Health extension (its model's, not ours, decide them).
# Each with its upgradectl flag (healthStates has none: a policy file's only).
EXTENSION_SETTINGS = {
    "protocol": " (--health-protocol)",
    "port": " (--health-port)",
    "request_path": " (--health-path)",
    "number_of_probes": " (--health-probes)",
    "grace_period": " (--health-grace-period)",
    "health_states": "",
}


class ApplicationHealthSettings(AzureModel):
    """How an instance's health is probed, after Azure's Application Health extension.

    gracePeriod (seconds) defaults to intervalInSeconds x numberOfProbes: answers other than
    Healthy inside it are reported as Initializing. healthWaitTimeout is how long an upgraded
    instance may take to become healthy before it is given up (Azure: 5 minutes).
    healthStates is how answers are read: "rich" (extension v2: the body's
    ApplicationHealthState, Unknown when it is missing or the answer is not 2xx) or "binary"
    (extension v1, load-balancer style: 2xx is Healthy, anything else Unhealthy).
    """

    protocol: Literal["http", "https", "tcp"] = "http"
    port: Annotated[int, whole_number(1, 65535)] = 80
    request_path: str | None = "/health"
    interval_in_seconds: Annotated[int, whole_number(1, 60)] = 5
    number_of_probes: Annotated[int, whole_number(1, 24)] = 1
    grace_period: Annotated[int, whole_number(0, 7200)] | None = None
    health_wait_timeout: HealthWait = timedelta(minutes=5)
    health_states: Literal["rich", "binary"] = "rich"

    @field_validator("health_states", mode="before")
    @classmethod
    def _known_mode(cls, value: Any) -> Any:
        if value not in ("rich", "binary"):
            raise ValueError(f"must be rich or binary (got {value!r})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _tcp_has_no_path(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("protocol") == "tcp":
            if not any(key in data for key in ("requestPath", "request_path")):
                data = {**data, "requestPath": None}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ApplicationHealthSettings:
        if self.protocol == "tcp" and self.request_path:
            raise ValueError("requestPath must be empty when protocol is tcp")
        if self.protocol != "tcp" and not (self.request_path or "").startswith("/"):
            raise ValueError(f"requestPath must start with / for {self.protocol} probes")
        if self.health_wait_timeout.total_seconds() < self.effective_grace_period:
            raise ValueError(
                f"healthWaitTimeout ({format_duration(self.health_wait_timeout)}) must be at "
                f"least the gracePeriod ({self.effective_grace_period} s)"
            )
        return self

    def notes(self) -> list[str]:
        """The extension's settings given (a file, flags): they describe how Azure's Application
        Health extension probes, which the extension's own settings in the model decide."""
        given = [
            f"applicationHealth.{type(self).model_fields[name].alias or name}{flag}"
            for name, flag in EXTENSION_SETTINGS.items()
            if name in self.model_fields_set
        ]
        if not given:
            return []
        return [
            f"{', '.join(given)} describe the Application Health extension: on Azure the extension's "
            "settings in the scale set's model decide how it probes (status and plan show them), so "
            "these change nothing here; change them in the model (az vmss extension set --name "
            "ApplicationHealthLinux ... --settings). intervalInSeconds is how often the upgrade looks "
            "at health, healthWaitTimeout how long it waits"
        ]

    @property
    def effective_grace_period(self) -> int:
        if self.grace_period is not None:
            return self.grace_period
        return self.interval_in_seconds * self.number_of_probes


class AutomaticOSUpgradePolicy(AzureModel):
    """Azure's automaticOSUpgradePolicy, every field of it.

    disableAutomaticRollback shapes the upgrade. The others are about when Azure starts an
    upgrade by itself; `upgradectl start` runs one now, so they are read (and noted) but not
    acted on: see `UpgradePolicy.notes`.
    """

    disable_automatic_rollback: bool = False
    enable_automatic_os_upgrade: bool | None = Field(default=None, alias="enableAutomaticOSUpgrade")
    use_rolling_upgrade_policy: bool | None = None
    os_rolling_upgrade_deferral: bool | None = Field(default=None, alias="osRollingUpgradeDeferral")


# Azure's upgradePolicy sections, plus ours, as a policy file may spell them.
_SECTIONS = {
    "rollingupgradepolicy": "rollingUpgradePolicy",
    "automaticosupgradepolicy": "automaticOSUpgradePolicy",
    "applicationhealth": "applicationHealth",
    "notifications": "notifications",
    "upgradetimeout": "upgradeTimeout",
    "mode": "mode",
    # Alarm gates (models/alarms.py): ours, beside Azure's sections.
    "alarms": "alarms",
    "rollbackonalarm": "rollbackOnAlarm",
    "alarmunreachabletimeout": "alarmUnreachableTimeout",
}
# Azure reads property names case-insensitively (the ARM template example writes
# "RollingUpgradePolicy", "MaxUnhealthyInstancePercent"); its example's "BatchInstancePercent"
# is maxBatchInstancePercent.
_ROLLING_FIELDS = {
    **{
        name.lower(): name
        for name in (
            "maxBatchInstancePercent",
            "maxUnhealthyInstancePercent",
            "maxUnhealthyUpgradedInstancePercent",
            "pauseTimeBetweenBatches",
            "enableCrossZoneUpgrade",
            "prioritizeUnhealthyInstances",
            "rollbackFailedInstancesOnPolicyBreach",
            "maxSurge",
            "maxBatchInstanceCount",
            "maxUnhealthyInstanceCount",
            "maxUnhealthyUpgradedInstanceCount",
        )
    },
    "batchinstancepercent": "maxBatchInstancePercent",
}
_AUTOMATIC_FIELDS = {
    name.lower(): name
    for name in (
        "enableAutomaticOSUpgrade",
        "disableAutomaticRollback",
        "useRollingUpgradePolicy",
        "osRollingUpgradeDeferral",
    )
}
_NOT_ACTED_ON = {
    "mode": "`upgradectl start` rolls the image out in batches now, whatever the mode",
    "automaticOSUpgradePolicy.enableAutomaticOSUpgrade": "this command runs one upgrade now; "
    "automatic upgrades come with `upgradectl auto`",
    "automaticOSUpgradePolicy.useRollingUpgradePolicy": "an upgrade always follows rollingUpgradePolicy",
    "automaticOSUpgradePolicy.osRollingUpgradeDeferral": "`upgradectl start --deferral` defers "
    "this upgrade; automatic upgrades take it from `upgradectl auto enable --deferral`",
}


def _renamed(section: Any, names: dict[str, str]) -> Any:
    """Known keys in their canonical spelling; unknown ones as written (refused later)."""
    if not isinstance(section, dict):
        return section
    return {
        names.get(str(key).lower(), key) if isinstance(key, str) else key: value
        for key, value in section.items()
    }


def _batch_over_unhealthy(policy: RollingUpgradePolicy) -> bool:
    return policy.max_batch_instance_percent > policy.max_unhealthy_instance_percent


def _batch_count_over_unhealthy(policy: RollingUpgradePolicy) -> bool:
    """Both counts set and the batch above what may be down at once (one instance may always go
    down when all others are healthy, so a batch of one fits a count of 0)."""
    batch, unhealthy = policy.max_batch_instance_count, policy.max_unhealthy_instance_count
    return batch is not None and unhealthy is not None and batch > max(1, unhealthy)


def _has_key(document: dict[str, Any], lowered: str) -> bool:
    return any(isinstance(k, str) and k.lower() == lowered for k in document)


class UpgradePolicy(AzureModel):
    """A policy file: Azure's upgradePolicy (mode, rollingUpgradePolicy,
    automaticOSUpgradePolicy) plus the health settings, notifications and time limit.

    `normalize` reads what Azure writes: a scale set's REST body ({"properties": {"upgradePolicy":
    ...}}), the whole thing wrapped in "upgradePolicy", keys in any case ("RollingUpgradePolicy"),
    or just a rolling upgrade policy's fields.
    """

    mode: Literal["Automatic", "Manual", "Rolling"] | None = Field(
        default=None, description="read, not acted on: see notes()"
    )
    rolling_upgrade_policy: RollingUpgradePolicy = Field(default_factory=RollingUpgradePolicy)
    automatic_os_upgrade_policy: AutomaticOSUpgradePolicy = Field(
        default_factory=AutomaticOSUpgradePolicy, alias="automaticOSUpgradePolicy"
    )
    application_health: ApplicationHealthSettings = Field(default_factory=ApplicationHealthSettings)
    notifications: Notifications = Field(default_factory=lambda: Notifications())
    upgrade_timeout: UpgradeTimeout | None = Field(
        default=None,
        description="the whole upgrade's time limit; when it passes, the batch in flight "
        "settles and the upgrade faults with RollingUpgradeTimeoutError",
    )
    alarms: list[Alarm] = Field(
        default_factory=list, description="alarm gates, read before every batch and in its health wait"
    )
    rollback_on_alarm: bool = Field(
        default=True, description="an alarm that fires rolls back the batch in flight"
    )
    alarm_unreachable_timeout: AlarmUnreachableTimeout = Field(
        default=DEFAULT_ALARM_UNREACHABLE_TIMEOUT,
        description="how long an alarm that cannot be read holds the upgrade before it faults",
    )

    _alarm_names = field_validator("alarms")(check_alarm_names)

    @staticmethod
    def normalize(document: dict[str, Any]) -> dict[str, Any]:
        """A policy document with Azure's spellings made canonical (pure; flags go on top)."""
        if not document:
            return {}
        # The REST body of a scale set (PUT/PATCH, an ARM template's resource): {"properties":
        # {"upgradePolicy": ...}}; then the upgradePolicy itself.
        for name in ("properties", "upgradepolicy"):
            wrapper = next((k for k in document if isinstance(k, str) and k.lower() == name), None)
            inner = document.get(wrapper) if wrapper is not None else None
            if isinstance(inner, dict) and (name == "upgradepolicy" or _has_key(inner, "upgradepolicy")):
                document = {**inner, **{k: v for k, v in document.items() if k != wrapper}}
        if not any(isinstance(k, str) and k.lower() in _SECTIONS for k in document):
            document = {"rollingUpgradePolicy": document}  # a bare RollingUpgradePolicy
        document = _renamed(document, _SECTIONS)
        if "rollingUpgradePolicy" in document:
            document["rollingUpgradePolicy"] = _renamed(document["rollingUpgradePolicy"], _ROLLING_FIELDS)
        if "automaticOSUpgradePolicy" in document:
            document["automaticOSUpgradePolicy"] = _renamed(
                document["automaticOSUpgradePolicy"], _AUTOMATIC_FIELDS
            )
        if isinstance(document.get("mode"), str):
            document["mode"] = document["mode"].capitalize()  # Azure: case-insensitive
        return document

    @model_validator(mode="before")
    @classmethod
    def _azure_spellings(cls, data: Any) -> Any:
        return cls.normalize(data) if isinstance(data, dict) else data

    @classmethod
    def from_user(cls, document: Any) -> Self:
        """A policy a user wrote (a file, flags on top): validated, unknown fields refused;
        maxBatchInstancePercent may not exceed maxUnhealthyInstancePercent when both are given
        (with one given, the other's default refuses nothing: batches stay within the unhealthy
        limit, and a note says so); nor may maxBatchInstanceCount exceed maxUnhealthyInstanceCount
        when both are set (a count is None unless given). Raises ValueError (a pydantic
        ValidationError for a field on its own)."""
        policy = super().from_user(document)
        rolling = cls.normalize(document).get("rollingUpgradePolicy") if isinstance(document, dict) else None
        both = {"maxBatchInstancePercent", "maxUnhealthyInstancePercent"}
        chosen = policy.rolling_upgrade_policy
        if isinstance(rolling, dict) and both <= rolling.keys() and _batch_over_unhealthy(chosen):
            raise ValueError(
                f"rollingUpgradePolicy.maxBatchInstancePercent ({chosen.max_batch_instance_percent}) may "
                f"not exceed maxUnhealthyInstancePercent ({chosen.max_unhealthy_instance_percent}): a "
                "batch counts as unhealthy while it upgrades"
            )
        if _batch_count_over_unhealthy(chosen):
            raise ValueError(
                f"rollingUpgradePolicy.maxBatchInstanceCount ({chosen.max_batch_instance_count}) may not "
                f"exceed maxUnhealthyInstanceCount ({chosen.max_unhealthy_instance_count}): a batch "
                "counts as unhealthy while it upgrades (with 0, one instance at a time)"
            )
        return policy

    def notes(self) -> list[str]:
        """One line per field that was given but is not acted on, and why."""
        rolling = self.rolling_upgrade_policy
        limited = (
            [
                f"rollingUpgradePolicy.maxBatchInstancePercent ({rolling.max_batch_instance_percent}) is "
                f"above maxUnhealthyInstancePercent ({rolling.max_unhealthy_instance_percent}): a batch "
                f"counts as unhealthy while it upgrades, so batches stay within "
                f"{rolling.max_unhealthy_instance_percent}%"
            ]
            if _batch_over_unhealthy(rolling)
            else []
        )
        automatic = self.automatic_os_upgrade_policy
        given = {
            "mode": self.mode,
            "automaticOSUpgradePolicy.enableAutomaticOSUpgrade": automatic.enable_automatic_os_upgrade,
            "automaticOSUpgradePolicy.useRollingUpgradePolicy": automatic.use_rolling_upgrade_policy,
            "automaticOSUpgradePolicy.osRollingUpgradeDeferral": automatic.os_rolling_upgrade_deferral,
        }
        return (
            limited
            + [
                f"{path} is read but not acted on: {_NOT_ACTED_ON[path]}"
                for path, value in given.items()
                if value is not None
            ]
            + self.application_health.notes()
        )
