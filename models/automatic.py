"""Automatic OS image and extension upgrades: who opted in, the watcher's settings, and each rollout
of one image version (or one extension version) across the opted-in scale sets, availability first.

The enrollments live in one durable Temporal workflow (`automatic-os-upgrades`), not in the scale
set: turning on the set's own `automaticOSUpgradePolicy.enableAutomaticOSUpgrade` would make Azure
roll it at the same time, a tag holds at most 256 characters (a policy is longer) and writing one
needs write access to the set; in the workflow each change is an update with who and when in its
history, readable with `upgradectl auto show` and in the Web UI.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

from models.base import AzureModel
from models.change import major_of, version_key
from models.image import LATEST, ImageReference
from models.maintenance import MaintenanceWindow
from models.policy import UpgradePolicy, format_duration
from models.status import ApiError

# The workflows and their messages by name: the starter reaches them without importing workflows/.
AUTOMATIC_UPGRADES_WORKFLOW = "AutomaticOSUpgradesWorkflow"
AUTOMATIC_UPGRADES_ID = "automatic-os-upgrades"  # the watcher of the default task queue
ROLLOUT_WORKFLOW = "RolloutWorkflow"
COHORT_WORKFLOW = "RolloutCohortWorkflow"  # a rollout's child: one cohort of a region's sets
# On AutomaticOSUpgradesWorkflow
ENROLL_UPDATE = "enroll"
WITHDRAW_UPDATE = "withdraw"
SETTINGS_UPDATE = "settings"
ENROLLMENTS_QUERY = "enrollments"
ROLLOUTS_QUERY = "rollouts"
STATE_QUERY = "state"  # the whole AutomaticState: what a new run starts from if this one ended
ROLLOUT_ENDED_SIGNAL = "rollout_ended"
# On RolloutWorkflow
ROLLOUT_QUERY = "rollout"
HOLD_SIGNAL = "hold"
RESUME_SIGNAL = "resume"
ROLLOUT_CANCEL_SIGNAL = "cancel"
SUPERSEDE_SIGNAL = "supersede"
PING_SIGNAL = "ping"  # the watcher's check that a rollout it started still runs
WITHDRAWN_SIGNAL = "withdrawn"
COHORT_NEWS_SIGNAL = "cohort_news"  # CohortNews, from a cohort: a fault, or a user's cancel
# On RolloutCohortWorkflow
STEER_SIGNAL = "steer"  # Steering: the rollout's hold, halt and stops, whenever they change
COHORT_QUERY = "cohort"

PLATFORM = "Platform"  # startedBy of every upgrade a rollout starts, as in Azure's history


def watcher_workflow_id(task_queue: str) -> str:
    """One watcher per deployment (its task queue); the default queue's is plainly named."""
    if task_queue == "rolling-upgrades":
        return AUTOMATIC_UPGRADES_ID
    return f"{AUTOMATIC_UPGRADES_ID}/{task_queue}"


def image_source_key(image: ImageReference) -> str:
    """An image source as one path segment-friendly text: a gallery image definition's
    `<gallery>/<image>` or a marketplace `publisher:offer:sku`."""
    if image.id:
        parts = image.id.strip("/").split("/")
        lowered = [p.lower() for p in parts]
        if "galleries" in lowered and "images" in lowered:
            return f"{parts[lowered.index('galleries') + 1]}/{parts[lowered.index('images') + 1]}"
        return image.id.strip("/")
    return f"{image.publisher}:{image.offer}:{image.sku}"


def rollout_workflow_id(source: ImageReference, version: str) -> str:
    return f"rollout/{image_source_key(source)}/{version}"


def extension_rollout_key(full_type: str, major: str) -> str:
    """What the watcher keys an extension's rollouts by: one extension type and one major version
    (`ext:publisher.type/1`; never clashes with an image source key, which has no `ext:`)."""
    return f"ext:{full_type.lower()}/{major}"


def extension_rollout_id(full_type: str, version: str, retry: int = 0) -> str:
    """`rollout/ext:publisher.type/<version>`, and `.../retry-<n>` for the n-th retry of a version
    that failed: each attempt a workflow of its own, so an ended one stays readable."""
    base = f"rollout/ext:{full_type}/{version}"
    return f"{base}/retry-{retry}" if retry else base


def _interval(low: timedelta, high: timedelta, name: str):  # type: ignore[no-untyped-def]
    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            allowed = f"{format_duration(low)} and {format_duration(high)}"
            raise ValueError(f"{name} must be between {allowed}, not {format_duration(value)}")
        return value

    return AfterValidator(check)


PollInterval = Annotated[timedelta, _interval(timedelta(minutes=1), timedelta(days=1), "pollInterval")]
ReplicationPoll = Annotated[
    timedelta, _interval(timedelta(minutes=1), timedelta(hours=6), "replicationPollInterval")
]
NotBeforeTimeout = Annotated[
    timedelta, _interval(timedelta(minutes=5), timedelta(hours=2), "notBeforeTimeout")
]
ExtensionRetryInterval = Annotated[
    timedelta, _interval(timedelta(hours=1), timedelta(days=30), "extensionRetryInterval")
]
PhaseBakeTime = Annotated[timedelta, _interval(timedelta(0), timedelta(days=7), "phaseBakeTime")]
ReplicationTimeout = Annotated[
    timedelta, _interval(timedelta(hours=1), timedelta(days=30), "replicationTimeout")
]
# Zone waves: how many scale sets of a region upgrade at once, and how many of a region's
# instances may be in flight at once (the sum of its sets' batches).
MAX_SETS_PER_REGION = 20
MAX_INSTANCES_PER_REGION = 1000
SetsPerRegion = Annotated[int, Field(ge=1, le=100)]
InstancesPerRegion = Annotated[int, Field(ge=1, le=100_000)]


class AutomaticSettings(AzureModel):
    """How the watcher looks for new versions and how rollouts move across regions."""

    poll_interval: PollInterval = Field(
        default=timedelta(minutes=15), description="how often the watcher looks for new versions"
    )
    replication_poll_interval: ReplicationPoll = Field(
        default=timedelta(minutes=5),
        description="how often a rollout looks again whether a version reached a region",
    )
    phases: list[list[str]] | None = Field(
        default=None,
        description="an explicit phase plan (regions per phase, in order); regions it does not "
        "name follow in derived phases. None: derived from the regions and their geo-pairs",
    )
    geo_pairs: list[tuple[str, str]] | None = Field(
        default=None, description="region pairs; None: Azure's published pairs"
    )
    extension_retry_interval: ExtensionRetryInterval = Field(
        default=timedelta(days=3),
        description="how long after an automatic extension upgrade failed on a scale set it is "
        "tried again there (Azure: every few days)",
    )
    max_sets_per_region: SetsPerRegion = Field(
        default=MAX_SETS_PER_REGION,
        description="how many scale sets of one region upgrade at once, in zone waves (1-100)",
    )
    max_instances_per_region: InstancesPerRegion = Field(
        default=MAX_INSTANCES_PER_REGION,
        description="how many instances of one region may be in flight at once, summed over its "
        "sets' batches (1-100000; a set whose batch alone is larger still goes, alone)",
    )
    phase_bake_time: PhaseBakeTime = Field(
        default=timedelta(0),
        description="how long a phase's sets are left to bake before the next phase starts; "
        "after it they are read again and one that turned unhealthy stops the rollout",
    )
    replication_timeout: ReplicationTimeout = Field(
        default=timedelta(days=7),
        description="how long a region waits for the version to reach it before its sets are skipped",
    )


def when_text(moment: datetime) -> str:
    """A moment as the status texts write it (UTC, to the second)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class ExtensionEnrollment(AzureModel):
    """One extension of an enrolled set's model, and what the watcher saw and did with it. It
    follows new minor and patch versions of its major when it has no note: enrolled by name
    (`auto enable SET --extension NAME`) with `enableAutomaticUpgrade` off (on, Azure upgrades it
    itself); in an enrollment made before extensions were enrolled one by one, when
    `enableAutomaticUpgrade` is on."""

    name: str = Field(description="its name in the scale set's model")
    publisher: str = ""
    type_: str = Field(default="", alias="type")
    model_version: str = Field(default="", description="typeHandlerVersion in the model")
    automatic: bool = Field(default=False, description="enableAutomaticUpgrade in the model")
    installed: list[str] = Field(
        default_factory=list,
        description="the versions its instances run (installed and succeeded); '' for an "
        "instance where it is not (a failed or unfinished install)",
    )
    note: str | None = Field(
        default=None, description="why it is not upgraded automatically now (None: it follows)"
    )
    applied_version: str | None = Field(default=None, description="the last version a rollout completed")
    failed_version: str | None = Field(
        default=None, description="a version whose rollout faulted or was cancelled on this set"
    )
    failed_at: AwareDatetime | None = None
    failure: str | None = Field(default=None, description="why it failed, as the rollout said")
    attempts: int = Field(default=0, description="how many rollouts of failed_version failed here")
    retry: bool = Field(
        default=True,
        description="failed_version is tried again after the retry interval (not after a cancel: "
        "then only a newer version, or `upgradectl auto enable` again)",
    )
    rollout_id: str | None = Field(default=None, description="the rollout moving it now")
    rolling_version: str | None = None

    @property
    def full_type(self) -> str:
        return f"{self.publisher}.{self.type_}"

    @property
    def major(self) -> str:
        return major_of(self.model_version)

    def forgive(self) -> ExtensionEnrollment:
        """Forget a failed version (applied since, or enrolled again): it may be tried again."""
        self.failed_version = self.failed_at = self.failure = None
        self.attempts, self.retry = 0, True
        return self

    def retry_at(self, interval: timedelta) -> datetime | None:
        """When its failed version is tried again, if it is."""
        if self.failed_version is None or self.failed_at is None or not self.retry:
            return None
        return self.failed_at + interval

    def due(self, version: str, now: datetime, interval: timedelta) -> bool:
        """Should `version` (the newest of its major) be rolled to it now? When some instance
        runs an older version, unless a rollout completed it already, or it failed here and
        the retry interval has not passed (or it was cancelled)."""
        if self.note is not None or version == self.applied_version:
            return False
        if not any(version_key(v) < version_key(version) for v in self.installed):
            return False
        if version == self.failed_version:
            retry_at = self.retry_at(interval)
            return retry_at is not None and now >= retry_at
        return True

    def state_text(self, interval: timedelta) -> str:
        """Its automatic state in one line: following, off, rolling, failed (retry at ...)."""
        installed = ", ".join(v or "not installed" for v in self.installed) or "no instances"
        if self.note is not None:
            return self.note
        retrying = self.rolling_version is not None and self.rolling_version == self.failed_version
        if self.rollout_id is not None and retrying and self.failed_at is not None:
            retry = RolloutRetry(attempt=self.attempts, failed_at=self.failed_at, reason=self.failure or "")
            return (
                f"rolling: {retry.text(self.failed_version or '')} ({self.rollout_id}); installed {installed}"
            )
        if self.rollout_id is not None:
            return f"rolling to {self.rolling_version} ({self.rollout_id}); installed {installed}"
        if self.failed_version is not None:
            failed = f"{self.failed_version} failed at {when_text(self.failed_at)}" if self.failed_at else ""
            failed = failed or f"{self.failed_version} failed"
            retry_at = self.retry_at(interval)
            if retry_at is None:
                return (
                    f"{failed}: {self.failure or 'cancelled'}; not retried (a newer version, or "
                    f"`auto enable` again, is); installed {installed}"
                )
            return (
                f"{failed} ({self.attempts} attempt(s)): {self.failure or '?'}; retry "
                f"{self.attempts} at {when_text(retry_at)}; installed {installed}"
            )
        return f"following new {self.major}.x versions; installed {installed}"


class Enrollment(AzureModel):
    """One scale set opted in to automatic upgrades (its OS image when enableAutomaticOSUpgrade
    and it follows 'latest'; each extension enrolled by name), and what the watcher last saw and
    did."""

    scale_set: str
    policy: UpgradePolicy = Field(
        description="automaticOSUpgradePolicy (enableAutomaticOSUpgrade: OS image upgrades on; "
        "false when only extensions are enrolled), and rollingUpgradePolicy when "
        "useRollingUpgradePolicy (else the seed's defaults), health settings, notifications"
    )
    enrolled_extensions: list[str] | None = Field(
        default=None,
        description="the extensions enrolled, by their name in the model (None: enrolled before "
        "extensions were enrolled one by one: those with enableAutomaticUpgrade follow)",
    )
    not_before_timeout: NotBeforeTimeout | None = Field(
        default=None,
        description="osImageNotificationProfile.notBeforeTimeout: a pending instance is approved "
        "on its own after this long",
    )
    policy_given: list[str] | None = Field(
        default=None,
        description="the rollingUpgradePolicy fields `auto enable` was given: under "
        "useRollingUpgradePolicy the scale set's own policy decides the others (None: enrolled "
        "before that, the policy as recorded)",
    )
    enrolled_by: str = "unknown"
    enrolled_at: AwareDatetime | None = None
    # What the watcher last read of the scale set.
    location: str | None = None
    instance_count: int | None = Field(
        default=None,
        description="how many instances it had (what staged phases count per region; None: not counted yet)",
    )
    image_reference: ImageReference | None = None
    note: str | None = Field(
        default=None, description="why the set's OS image is not upgraded automatically now"
    )
    applied_version: str | None = Field(
        default=None, description="the last version a rollout completed on it"
    )
    failed_version: str | None = Field(
        default=None,
        description="a version whose rollout faulted or was cancelled on this set: not tried again "
        "until a newer version, or `upgradectl auto enable` again",
    )
    extensions: dict[str, ExtensionEnrollment] = Field(
        default_factory=dict,
        description="automatic extension upgrades: each extension of the model, by its name",
    )
    maintenance_window: MaintenanceWindow | None = Field(
        default=None,
        description="the maintenance window `auto enable` was given: automatic upgrades of the set "
        "run only inside it (None: none given)",
    )
    assigned_maintenance_window: MaintenanceWindow | None = Field(
        default=None,
        description="the window of the OSImage maintenance configuration assigned to the set in "
        "Azure, as the watcher last read it (ScaleSetView.maintenance_window)",
    )

    @property
    def effective_maintenance_window(self) -> MaintenanceWindow | None:
        """The window the set's automatic upgrades keep to: the configuration assigned to it in
        Azure (what Azure's own automatic OS upgrades would keep to), else the one enrolled."""
        return self.assigned_maintenance_window or self.maintenance_window

    def extension(self, name: str) -> ExtensionEnrollment | None:
        """The extension called `name` (case-insensitive, as Azure names them)."""
        return next((e for e in self.extensions.values() if e.name.lower() == name.lower()), None)

    @property
    def os_upgrades(self) -> bool:
        """Automatic OS image upgrades on (every enrollment before extension-only ones had them)."""
        return self.policy.automatic_os_upgrade_policy.enable_automatic_os_upgrade is not False

    def enrolls(self, name: str) -> bool:
        """Is the extension called `name` enrolled by name?"""
        return name.lower() in {n.lower() for n in self.enrolled_extensions or []}

    @property
    def enrolls_any(self) -> bool:
        """Is anything enrolled still (else the set is no longer enrolled at all)?"""
        return self.os_upgrades or self.enrolled_extensions is None or bool(self.enrolled_extensions)

    @property
    def follows_latest(self) -> bool:
        return self.image_reference is not None and self.image_reference.version.lower() == LATEST


class RolloutSetState(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_REPLICATION = "WaitingForReplication"
    WAITING_FOR_SCALE_SET = "WaitingForScaleSet"  # another upgrade of the set runs: its turn next
    RUNNING = "RollingForward"
    COMPLETED = "Completed"
    FAULTED = "Faulted"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"  # not started: the rollout stopped, was superseded, or the set opted out


class RolloutRetry(AzureModel):
    """A rollout that tries a version again on a scale set where it failed."""

    attempt: int = Field(description="the retry's number: 1 for the first retry")
    failed_at: AwareDatetime
    reason: str = ""

    def text(self, version: str) -> str:
        return (
            f"retry {self.attempt} of {version} after it failed at {when_text(self.failed_at)}: {self.reason}"
        )


class RolloutExtension(AzureModel):
    """The extension an extension rollout moves: one type, one major version; its name in each
    scale set's model (names may differ between sets)."""

    publisher: str
    type_: str = Field(alias="type")
    major: str
    names: dict[str, str] = Field(default_factory=dict, description="scale set -> extension name")

    @property
    def full_type(self) -> str:
        return f"{self.publisher}.{self.type_}"

    @property
    def key(self) -> str:
        return extension_rollout_key(self.full_type, self.major)


class RolloutSet(AzureModel):
    scale_set: str
    region: str
    phase: int = 0
    state: RolloutSetState = RolloutSetState.PENDING
    workflow_id: str | None = None
    message: str | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    retry: RolloutRetry | None = Field(default=None, description="a retry of a version that failed here")
    rolled_back: list[str] = Field(
        default_factory=list,
        description="a completed upgrade's instances that failed and were rolled back (fewer than "
        "its policy stops at); an extension's are tried again after the retry interval",
    )

    @property
    def retry_note(self) -> str:
        """` (retry N)` after what a retry does, else nothing."""
        return f" (retry {self.retry.attempt})" if self.retry else ""


class RolloutState(StrEnum):
    RUNNING = "Running"
    HELD = "Held"
    COMPLETED = "Completed"
    FAULTED = "Faulted"
    CANCELLED = "Cancelled"
    SUPERSEDED = "Superseded"


ENDED = {RolloutState.COMPLETED, RolloutState.FAULTED, RolloutState.CANCELLED, RolloutState.SUPERSEDED}


def subject(source: ImageReference | None, extension: RolloutExtension | None, version: str) -> str:
    """What a rollout moves, as its texts say, short: an image by its source key at a version
    (`contoso/shop-os 1.1.0`, `publisher:offer:sku 1.1.0`), or an extension version."""
    if extension is not None:
        return f"extension {extension.full_type} {version}"
    return f"{image_source_key(source)} {version}" if source is not None else version


class RolloutRequest(AzureModel):
    """The input of RolloutWorkflow: one version of one image source (or of one extension), the
    scale sets it goes to (with the enrollment each upgrade follows) and the phases of regions."""

    source: ImageReference | None = Field(
        default=None, description="the image as the scale sets reference it ('latest'); None: an extension"
    )
    version: str
    enrollments: list[Enrollment]
    phases: list[list[str]]
    replication_poll_interval: timedelta = timedelta(minutes=5)
    extension: RolloutExtension | None = Field(default=None, description="an extension rollout: which")
    retries: dict[str, RolloutRetry] = Field(
        default_factory=dict, description="per scale set, when this rollout tries the version again"
    )
    max_sets_per_region: int = MAX_SETS_PER_REGION
    max_instances_per_region: int = MAX_INSTANCES_PER_REGION
    phase_bake_time: timedelta = timedelta(0)
    replication_timeout: timedelta = timedelta(days=7)
    geo_pairs: list[tuple[str, str]] | None = Field(
        default=None, description="region pairs never in flight together; None: Azure's published pairs"
    )

    @property
    def source_key(self) -> str:
        if self.extension is not None:
            return self.extension.key
        assert self.source is not None
        return image_source_key(self.source)

    @property
    def retry(self) -> RolloutRetry | None:
        """The furthest retry among its sets (what its headline says)."""
        return max(self.retries.values(), key=lambda r: (r.attempt, r.failed_at), default=None)


class Hold(AzureModel):
    by: str
    reason: str
    since: AwareDatetime


class RolloutStatus(AzureModel):
    """A rollout as `upgradectl rollout show` and the Web UI present it."""

    workflow_id: str
    source: ImageReference | None = None
    version: str
    state: RolloutState = RolloutState.RUNNING
    phases: list[list[str]]
    extension: RolloutExtension | None = None
    retry: RolloutRetry | None = Field(default=None, description="a retry: the furthest among its sets")
    current_phase: int = 0
    sets: list[RolloutSet] = Field(default_factory=list)
    hold: Hold | None = None
    stopped_by: ApiError | None = Field(
        default=None, description="why the rollout stopped: which set faulted (region, phase) and its error"
    )
    superseded_by: str | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    waves: dict[str, str] = Field(
        default_factory=dict, description="per region, the zone wave in flight (from its cohorts)"
    )
    cohorts: list[str] = Field(
        default_factory=list, description="the cohorts in flight (RolloutCohortWorkflow ids)"
    )
    bake_until: AwareDatetime | None = Field(
        default=None, description="baking after a phase: the next phase starts after this"
    )

    @property
    def subject(self) -> str:
        return subject(self.source, self.extension, self.version)


class RolloutSummary(AzureModel):
    """One line of `upgradectl rollout list`, as the watcher keeps it."""

    workflow_id: str
    source: str = Field(description="the image, or `ext:publisher.type` for an extension")
    version: str
    state: RolloutState = RolloutState.RUNNING
    scale_sets: list[str] = Field(default_factory=list)
    message: str | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
    extension: RolloutExtension | None = None
    retry: int = Field(default=0, description="a retry: its number")


class EnrollRequest(AzureModel):
    scale_set: str
    os_image: bool = Field(
        default=True,
        description="turn automatic OS image upgrades on (False: as they were; off for a new enrollment)",
    )
    extensions: list[str] | None = Field(
        default=None,
        description="extensions to enroll, by their name in the model, with those enrolled already "
        "(None: a request from before extensions were enrolled one by one: every extension with "
        "enableAutomaticUpgrade follows)",
    )
    policy: UpgradePolicy = Field(default_factory=UpgradePolicy)
    not_before_timeout: NotBeforeTimeout | None = None
    policy_given: list[str] | None = Field(
        default=None, description="the rollingUpgradePolicy fields given (Enrollment.policy_given)"
    )
    maintenance_window: MaintenanceWindow | None = Field(
        default=None, description="the set's maintenance window (Enrollment.maintenance_window)"
    )
    by: str = "unknown"


class WithdrawRequest(AzureModel):
    """Opt a scale set out: of everything, or (`os_image`, `extensions`) of only those; a set
    left with nothing enrolled is no longer enrolled at all."""

    scale_set: str
    os_image: bool = Field(default=False, description="turn automatic OS image upgrades off")
    extensions: list[str] = Field(default_factory=list, description="extensions to withdraw, by name")
    cancel_in_flight: bool = Field(
        default=False, description="also cancel the set's automatic upgrade in flight (its batch finishes)"
    )

    @property
    def everything(self) -> bool:
        return not self.os_image and not self.extensions

    by: str = "unknown"


class HoldRequest(AzureModel):
    by: str = "unknown"
    reason: str = ""


class SupersedeRequest(AzureModel):
    version: str


class WithdrawnNotice(AzureModel):
    scale_set: str
    cancel_in_flight: bool = False


class RolloutEnded(AzureModel):
    """What a rollout tells the watcher when it ends: per scale set, the end it came to."""

    workflow_id: str
    source_key: str
    version: str
    state: RolloutState
    sets: list[RolloutSet]
    message: str | None = None
    end_time: datetime | None = None
    extension: RolloutExtension | None = None


class AutomaticState(AzureModel):
    """The watcher's whole state: its input, carried across continue-as-new."""

    settings: AutomaticSettings = Field(default_factory=AutomaticSettings)
    enrollments: dict[str, Enrollment] = Field(default_factory=dict)
    running: dict[str, RolloutSummary] = Field(
        default_factory=dict, description="per image source key, its rollout in flight"
    )
    recent: list[RolloutSummary] = Field(default_factory=list, description="ended rollouts, newest last")


CHECK_NOW_SIGNAL = "check_now"  # on AutomaticOSUpgradesWorkflow: look for new versions now


class Steering(AzureModel):
    """What a rollout says to its cohorts in flight (sent whole each time it changes)."""

    hold: Hold | None = None
    halted: bool = Field(
        default=False, description="a fault or a cancel: the sets in flight stop after their batch"
    )
    stop_reason: str | None = Field(default=None, description="why no new set starts, if none does")
    withdrawn: list[str] = Field(default_factory=list, description="sets that opted out: not started")
    cancel_in_flight: list[str] = Field(
        default_factory=list, description="sets that opted out with cancel: cancelled if in flight"
    )


class CohortRequest(AzureModel):
    """The input of RolloutCohortWorkflow: a cohort of one region's sets, in zone waves."""

    rollout_id: str
    region: str
    number: int = Field(description="the region's n-th cohort")
    version: str
    extension: RolloutExtension | None = None
    enrollments: list[Enrollment]
    sets: list[RolloutSet]
    max_instances_per_region: int = MAX_INSTANCES_PER_REGION
    steering: Steering = Field(default_factory=Steering)


class CohortStatus(AzureModel):
    """A cohort as its query and its result say: its sets, and the zone wave in flight."""

    workflow_id: str
    region: str
    number: int
    wave: str | None = None
    sets: list[RolloutSet] = Field(default_factory=list)
    fault: ApiError | None = None


class CohortNews(AzureModel):
    """A cohort tells its rollout at once: a set faulted (the rollout stops), or someone else
    cancelled a set's upgrade (the rollout holds)."""

    item: RolloutSet
    fault: ApiError | None = None
    hold: Hold | None = None
