"""Automatic OS image upgrades: who opted in, the watcher's settings, and each rollout of one image
version across the opted-in scale sets, availability first.

The enrollments live in one durable Temporal workflow (`automatic-os-upgrades`), not in the scale
set: turning on the set's own `automaticOSUpgradePolicy.enableAutomaticOSUpgrade` would make Azure
roll it at the same time, a tag holds at most 256 characters (a policy is longer) and writing one
needs write access to the set; in the workflow each change is an update with who and when in its
history, readable with `upgradectl auto show` and in the Web UI.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

from models.base import ViewModel
from models.change import version_key  # noqa: F401 - where the automatic workflows find it
from models.image import LATEST, ImageReference
from models.policy import UpgradePolicy, format_duration
from models.status import ApiError

# The workflows and their messages by name: the starter reaches them without importing workflows/.
AUTOMATIC_UPGRADES_WORKFLOW = "AutomaticOSUpgradesWorkflow"
AUTOMATIC_UPGRADES_ID = "automatic-os-upgrades"  # the watcher of the default task queue
ROLLOUT_WORKFLOW = "RolloutWorkflow"
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


class AutomaticSettings(ViewModel):
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


class Enrollment(ViewModel):
    """One scale set opted in to automatic OS image upgrades, and what the watcher last saw."""

    scale_set: str
    policy: UpgradePolicy = Field(
        description="automaticOSUpgradePolicy, and rollingUpgradePolicy when "
        "useRollingUpgradePolicy (else the seed's defaults), health settings, notifications"
    )
    not_before_timeout: NotBeforeTimeout | None = Field(
        default=None,
        description="osImageNotificationProfile.notBeforeTimeout: a pending instance is approved "
        "on its own after this long",
    )
    enrolled_by: str = "unknown"
    enrolled_at: AwareDatetime | None = None
    # What the watcher last read of the scale set.
    location: str | None = None
    image_reference: ImageReference | None = None
    note: str | None = Field(default=None, description="why the set is not upgraded automatically now")
    applied_version: str | None = Field(
        default=None, description="the last version a rollout completed on it"
    )
    failed_version: str | None = Field(
        default=None,
        description="a version whose rollout faulted or was cancelled on this set: not tried again "
        "until a newer version, or `upgradectl auto enable` again",
    )

    @property
    def follows_latest(self) -> bool:
        return self.image_reference is not None and self.image_reference.version.lower() == LATEST


class RolloutSetState(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_REPLICATION = "WaitingForReplication"
    RUNNING = "RollingForward"
    COMPLETED = "Completed"
    FAULTED = "Faulted"
    CANCELLED = "Cancelled"
    SKIPPED = "Skipped"  # not started: the rollout stopped, was superseded, or the set opted out


class RolloutSet(ViewModel):
    scale_set: str
    region: str
    phase: int = 0
    state: RolloutSetState = RolloutSetState.PENDING
    workflow_id: str | None = None
    message: str | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None


class RolloutState(StrEnum):
    RUNNING = "Running"
    HELD = "Held"
    COMPLETED = "Completed"
    FAULTED = "Faulted"
    CANCELLED = "Cancelled"
    SUPERSEDED = "Superseded"


ENDED = {RolloutState.COMPLETED, RolloutState.FAULTED, RolloutState.CANCELLED, RolloutState.SUPERSEDED}


class RolloutRequest(ViewModel):
    """The input of RolloutWorkflow: one version of one image source, the scale sets it goes to
    (with the enrollment each upgrade follows) and the phases of regions."""

    source: ImageReference = Field(description="the image as the scale sets reference it ('latest')")
    version: str
    enrollments: list[Enrollment]
    phases: list[list[str]]
    replication_poll_interval: timedelta = timedelta(minutes=5)


class Hold(ViewModel):
    by: str
    reason: str
    since: AwareDatetime


class RolloutStatus(ViewModel):
    """A rollout as `upgradectl rollout show` and the Web UI present it."""

    workflow_id: str
    source: ImageReference
    version: str
    state: RolloutState = RolloutState.RUNNING
    phases: list[list[str]]
    current_phase: int = 0
    sets: list[RolloutSet] = Field(default_factory=list)
    hold: Hold | None = None
    stopped_by: ApiError | None = Field(
        default=None, description="why the rollout stopped: which set faulted (region, phase) and its error"
    )
    superseded_by: str | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None


class RolloutSummary(ViewModel):
    """One line of `upgradectl rollout list`, as the watcher keeps it."""

    workflow_id: str
    source: str
    version: str
    state: RolloutState = RolloutState.RUNNING
    scale_sets: list[str] = Field(default_factory=list)
    message: str | None = None
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None


class EnrollRequest(ViewModel):
    scale_set: str
    policy: UpgradePolicy = Field(default_factory=UpgradePolicy)
    not_before_timeout: NotBeforeTimeout | None = None
    by: str = "unknown"


class WithdrawRequest(ViewModel):
    scale_set: str
    cancel_in_flight: bool = Field(
        default=False, description="also cancel the set's automatic upgrade in flight (its batch finishes)"
    )
    by: str = "unknown"


class HoldRequest(ViewModel):
    by: str = "unknown"
    reason: str = ""


class SupersedeRequest(ViewModel):
    version: str


class WithdrawnNotice(ViewModel):
    scale_set: str
    cancel_in_flight: bool = False


class RolloutEnded(ViewModel):
    """What a rollout tells the watcher when it ends: per scale set, the end it came to."""

    workflow_id: str
    source_key: str
    version: str
    state: RolloutState
    sets: list[RolloutSet]
    message: str | None = None
    end_time: datetime | None = None


class AutomaticState(ViewModel):
    """The watcher's whole state: its input, carried across continue-as-new."""

    settings: AutomaticSettings = Field(default_factory=AutomaticSettings)
    enrollments: dict[str, Enrollment] = Field(default_factory=dict)
    running: dict[str, RolloutSummary] = Field(
        default_factory=dict, description="per image source key, its rollout in flight"
    )
    recent: list[RolloutSummary] = Field(default_factory=list, description="ended rollouts, newest last")


CHECK_NOW_SIGNAL = "check_now"  # on AutomaticOSUpgradesWorkflow: look for new versions now
