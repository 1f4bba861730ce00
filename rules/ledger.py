"""The ledger of one upgrade: where every instance is, and what became of it.

Pure and deterministic (no clocks, no I/O): the workflow passes in `now`, so the ledger can be
unit-tested and replays identically. The gates (rules/gates.py) and the Azure status
(rules/reporting.py) are derived from it; nothing else keeps a count of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.alarms import AlarmReading
from models.change import Change, ExtensionTarget
from models.errors import ROLLED_BACK_CAUSES, FailureCause
from models.fleet import HealthReading, HealthState, InstanceView, ScaleSetView
from models.image import ImageReference
from models.maintenance import MaintenanceWindow
from models.notifications import NotificationRecord
from models.policy import Checkpoint, RollingUpgradePolicy
from models.sorting import natural_key
from models.status import (
    ApiError,
    RollingUpgradeActionType,
    RollingUpgradeStatusCode,
    UpgradeWait,
    UpgradeWaitKind,
)
from models.upgrade import (
    ATTEMPTED,
    FINAL_FAILURES,
    InstanceOutcome,
    InstanceProgress,
    InstanceState,
    UpgradeRequest,
)
from rules import checkpoints
from rules.approvals import Approvals, hold, release_due
from rules.change_kinds import kind_of
from rules.failures import GONE_CODES, SKIP_ALREADY_ON_TARGET, SKIP_CUSTOM_METRIC, SKIP_GONE, SKIP_NOT_MOVED
from rules.planner import Candidate, plan_batches
from rules.surge import surges


@dataclass(frozen=True)
class UpgradeRules:
    """The rules one upgrade runs by: each field is a patch's decision (`workflow.patched`, in
    RollingUpgradeWorkflow._adopt_patches), taken once at its start, so an upgrade replayed from
    an older history keeps the rules it started with. The defaults are what a ledger built
    outside an upgrade (a preview, a test) assumes."""

    # The core exact to the seeds (the exact-core patch; EXACT_CORE in workflows/rolling_upgrade.py
    # lists what it changed): False only while replaying upgrades started before it.
    exact_core: bool = True
    # Sets of 5 or fewer one at a time whatever the policy's percent: True only while replaying
    # upgrades started before the batch-size-by-policy patch.
    small_sets_one_at_a_time: bool = False
    # The scale set's own rollingUpgradePolicy under the fields the user gave: False only while
    # replaying upgrades started before the sets-own-policy patch.
    sets_own_policy: bool = True
    # Several extensions, each on its own (seed 003): False only while replaying upgrades
    # started before the independent-extensions patch.
    independent_extensions: bool = False


class UpgradeLedger:
    def __init__(self, request: UpgradeRequest, now: datetime, *, rules: UpgradeRules | None = None) -> None:
        self.request = request
        self.rules = rules or UpgradeRules()
        # Extensions stopped by their own policy breach, with why: no later batch installs them.
        self.stopped_extensions: dict[str, ApiError] = {}
        # What the upgrade applies; the request's until admission resolves it exactly.
        self.change = Change(image=request.target_image)
        self.instances: dict[str, InstanceProgress] = {}
        self.resource_id: str | None = None
        self.location: str | None = None
        self.code = RollingUpgradeStatusCode.ROLLING_FORWARD
        self.start_time = now
        self.last_action = RollingUpgradeActionType.START
        self.last_action_time = now
        self.fault: ApiError | None = None
        self.wait: UpgradeWait | None = None
        # The pause in effect (who, why, since when), from `pause` until `resume`.
        self.paused: UpgradeWait | None = None
        self.approvals = Approvals()  # given (who, when), for instances or every instance
        self.batches = 0
        self.cancelled_by: str | None = None  # who asked for the cancel
        # Checkpoints (rollingUpgradePolicy.checkpoints): how many are behind the upgrade, and the
        # one waiting for approval (who released the last one, when).
        self.checkpoints_passed = 0
        self.checkpoint_waiting: int | None = None
        self.checkpoint_log: list[str] = []  # each checkpoint passed, as status shows it
        # The window batches start in (OS image upgrades that respect one), set at admission.
        self.maintenance_window: MaintenanceWindow | None = None
        self._phases: dict[str, int | None] = {}
        self._gone: set[str] = set()
        # maxSurge: instances replaced by new ones (deleted, or being deleted): never a scale-out's.
        self.replaced: set[str] = set()
        self.notifications: list[NotificationRecord] = []
        # Alarm gates: each alarm as last read, by name.
        self.alarms: dict[str, AlarmReading] = {}
        timeout = request.upgrade_timeout
        self.deadline: datetime | None = now + timeout if timeout else None

    # --- admission, scale-out and health ----------------------------------------------------

    @property
    def target_image(self) -> ImageReference | None:
        return self.change.image

    def admit(self, scale_set: ScaleSetView, change: Change) -> None:
        """Record every instance; skip those that have the change already or opted out. The
        policy becomes the scale set's own where the user gave no value."""
        if self.rules.sets_own_policy:
            self.request = self.request.with_scale_sets_policy(scale_set.rolling_upgrade_policy)
        # Only what status shows: no command depends on it, so no patch.
        self.request = self.request.with_scale_sets_health(scale_set)
        self.change = change
        if self.request.respect_maintenance_window and change.image is not None:
            # Azure's assignment to the set wins over the window `auto enable` was given.
            self.maintenance_window = scale_set.maintenance_window or self.request.maintenance_window
        self.resource_id = f"{scale_set.id}/rollingUpgrades/latest"
        self.location = scale_set.location
        self.add(scale_set.instances)
        if (moved := self.request.only_instances) is not None:  # a rollback
            for progress in self.in_state(InstanceState.PENDING):
                if progress.instance_id not in moved:
                    self._skip(progress, SKIP_NOT_MOVED, f"not moved by {self.request.rollback_of}")

    def add(self, views: Iterable[InstanceView], note: str | None = None) -> list[str]:
        """Instances the ledger does not know yet (all at admission; a scale-out's later)."""
        added = []
        kind = kind_of(self.change)
        for view in views:
            if view.instance_id in self.instances:
                continue
            progress = InstanceProgress.of(view, kind.current(view), kind.versions_before(view))
            progress.message = note
            if kind.on_target(view):
                self._skip(progress, SKIP_ALREADY_ON_TARGET, f"already on {self.change}")
            elif view.custom_metrics.skip_upgrade:
                self._skip(progress, SKIP_CUSTOM_METRIC, "the SkipUpgrade custom metric is set")
            self.instances[view.instance_id] = progress
            self._phases[view.instance_id] = view.custom_metrics.phase_ordering_number
            added.append(view.instance_id)
        return added

    @staticmethod
    def _skip(progress: InstanceProgress, code: str, message: str) -> None:
        progress.state = InstanceState.SKIPPED
        progress.code = code
        progress.message = f"{progress.message}; {message}" if progress.message else message

    def observe(self, reading: HealthReading) -> list[str]:
        """Take fresh health readings; returns the ids of instances the ledger does not know
        (added by a scale-out). An instance that no longer exists leaves the arithmetic of the
        gates: a scale-in is not an outage."""
        for instance_id, progress in self.instances.items():
            health = reading.health.get(instance_id)
            if health is None:
                self._leave(progress, "the instance was deleted during the upgrade")
                continue
            progress.health = health
            self._phases[instance_id] = reading.phases.get(instance_id)
        unknown = (i for i in reading.health if i not in self.instances and i not in self.replaced)
        return sorted(unknown, key=natural_key)

    def _leave(self, progress: InstanceProgress, message: str) -> None:
        self._gone.add(progress.instance_id)
        progress.health = HealthState.UNKNOWN
        waiting = (InstanceState.PENDING, InstanceState.PENDING_APPROVAL)
        leaves = (*waiting, *FINAL_FAILURES) if self.rules.exact_core else waiting
        if progress.state in leaves:
            self._skip(progress, SKIP_GONE, message)

    def counted(self, *states: InstanceState) -> list[InstanceProgress]:
        """Instances in these states that still exist (what the gates count)."""
        return [p for p in self.in_state(*states) if p.instance_id not in self._gone]

    def unhealthy(self) -> list[str]:
        """Instances of the scale set that are not Healthy right now (deleted ones excluded)."""
        return [
            i for i, p in self.instances.items() if p.health != HealthState.HEALTHY and i not in self._gone
        ]

    @property
    def total(self) -> int:
        return len(self.instances) - len(self._gone)

    def attempted(self) -> list[InstanceProgress]:
        """Upgraded instances the upgraded-instances gate counts."""
        return self.counted(*ATTEMPTED) if self.rules.exact_core else self.in_state(*ATTEMPTED)

    def failed(self) -> list[InstanceProgress]:
        return self.counted(*FINAL_FAILURES) if self.rules.exact_core else self.in_state(*FINAL_FAILURES)

    # --- extensions, each on its own -------------------------------------------------------

    def extensions_going(self) -> list[ExtensionTarget]:
        """The extensions later batches install: those not stopped by their own breach."""
        return [t for t in self.change.extensions if t.name not in self.stopped_extensions]

    def tried(self, name: str) -> list[InstanceProgress]:
        """Instances extension `name` was tried on (and that still exist), in upgrade order."""
        return [
            p
            for p in self.in_state(*ATTEMPTED)
            if name in (p.extension_outcomes or {}) and p.instance_id not in self._gone
        ]

    def stop_extension(self, name: str, why: ApiError) -> None:
        self.stopped_extensions[name] = why

    # --- planning ---------------------------------------------------------------------------

    def _candidate(self, p: InstanceProgress) -> Candidate:
        return Candidate(
            instance_id=p.instance_id,
            zone=p.zone,
            update_domain=p.update_domain,
            unhealthy=p.health != HealthState.HEALTHY,
            phase=self._phases.get(p.instance_id),
        )

    def candidates(self) -> list[Candidate]:
        return [self._candidate(p) for p in self.instances.values() if p.state == InstanceState.PENDING]

    @property
    def planning_policy(self) -> RollingUpgradePolicy:
        """The policy batches are planned by: with maxSurge a batch may span zones (one update
        domain per zone), since it takes nothing down; its new instances land across zones."""
        policy = self.request.policy
        if surges(policy, self.change) and not policy.enable_cross_zone_upgrade:
            return policy.model_copy(update={"enable_cross_zone_upgrade": True})
        return policy

    def plan(self) -> list[list[Candidate]]:
        """The batches still to come: the one awaiting approval (if any) first."""
        awaiting = [self._candidate(p) for p in self.in_state(InstanceState.PENDING_APPROVAL)]
        planned = plan_batches(
            self.candidates(),
            self.total,
            self.unhealthy(),
            self.planning_policy,
            within_budget=self.rules.exact_core,
            small_sets_one_at_a_time=self.rules.small_sets_one_at_a_time,
            room=self._room_after,
        )
        return [awaiting, *planned] if awaiting else planned

    def _room_after(self, planned: int) -> int | None:
        """The checkpoints' room for a batch once `planned` more instances are through."""
        done, upgradable = self.checkpoint_counts()
        return checkpoints.room(self._points, self.checkpoints_passed, done + planned, upgradable)

    # --- checkpoints ----------------------------------------------------------------------------

    def checkpoint_counts(self) -> tuple[int, int]:
        """(done, upgradable): instances through a batch, and those plus the ones still to do."""
        done = len(self.in_state(*ATTEMPTED))
        to_do = len(
            self.in_state(InstanceState.IN_PROGRESS, InstanceState.PENDING, InstanceState.PENDING_APPROVAL)
        )
        return done, done + to_do

    @property
    def _points(self) -> list[Checkpoint]:
        return self.request.policy.checkpoints or []

    def checkpoint_room(self) -> int | None:
        """How many instances the next batch may take before the next checkpoint (None: any)."""
        return checkpoints.room(self._points, self.checkpoints_passed, *self.checkpoint_counts())

    def checkpoint_reached(self) -> int | None:
        """The checkpoint the batches so far have just reached, if any (and instances remain)."""
        if not self.candidates():
            return None
        return checkpoints.reached(self._points, self.checkpoints_passed, *self.checkpoint_counts())

    def release_checkpoint(self, by: str, now: datetime) -> bool:
        if self.checkpoint_waiting is None:
            return False
        self.checkpoint_waiting = None
        if self.checkpoint_log:
            self.checkpoint_log[-1] += f"; approved by {by} at {now.isoformat(timespec='seconds')}"
        return True

    # --- pause and approval -----------------------------------------------------------------

    def pause(self, reason: str, by: str, now: datetime) -> bool:
        """Hold the upgrade: no new batch starts until `resume`. A pause while paused keeps the
        first one (who paused it and since when). True if it paused now."""
        if self.paused is not None:
            return False
        said = f"paused by {by}" + (f": {reason}" if reason else "")
        self.paused = UpgradeWait(
            kind=UpgradeWaitKind.PAUSED, reason=said, since=now, until=self.deadline, by=by
        )
        return True

    def resume(self) -> bool:
        """True if it was paused."""
        if self.paused is None:
            return False
        if self.wait is not None and self.wait.kind == UpgradeWaitKind.PAUSED:
            self.wait = None
        self.paused = None
        return True

    def pending_approval(self) -> list[str]:
        return [p.instance_id for p in self.in_state(InstanceState.PENDING_APPROVAL)]

    def await_approval(self, instance_ids: Iterable[str], now: datetime) -> list[str]:
        """Mark the next batch's instances pending approval; those approved before they were
        due go at once. Returns the instances still awaiting approval."""
        hold((self.instances[i] for i in instance_ids), now)
        self.approvals.release(self.in_state(InstanceState.PENDING_APPROVAL))
        return self.pending_approval()

    def approve(self, instance_ids: list[str] | None, by: str, now: datetime) -> list[str]:
        """An approval: of these instances (now or whenever they become due), or of every
        instance (None). Returns the instances it released now."""
        self.approvals.give(instance_ids, by, now)
        return self.approvals.release(self.in_state(InstanceState.PENDING_APPROVAL))

    def approve_due(self, timeout: timedelta, now: datetime) -> list[str]:
        """notBeforeTimeout: instances pending approval that long are approved on their own."""
        return release_due(self.in_state(InstanceState.PENDING_APPROVAL), timeout, now)

    def start_batch(self, instance_ids: Iterable[str], now: datetime) -> int:
        self.batches += 1
        for instance_id in instance_ids:
            progress = self.instances[instance_id]
            progress.state = InstanceState.IN_PROGRESS
            progress.batch = self.batches
            progress.start_time = now
        return self.batches

    def rebatch(self, number: int, instance_ids: list[str], now: datetime) -> None:
        """maxSurge: batch `number` replaces these instances after all (those its new instances'
        zones chose); the others planned for it wait for a later batch."""
        for progress in self.instances.values():
            if progress.batch == number and progress.instance_id not in instance_ids:
                progress.state, progress.batch, progress.start_time = InstanceState.PENDING, None, None
        for instance_id in instance_ids:
            progress = self.instances[instance_id]
            progress.state, progress.batch, progress.start_time = InstanceState.IN_PROGRESS, number, now

    def settle(self, outcomes: Iterable[InstanceOutcome], zones: dict[str, str | None] | None = None) -> None:
        """`zones`: maxSurge, the zone of each new instance (by id)."""
        for outcome in outcomes:
            progress = self.instances[outcome.instance_id]
            progress.settle(outcome)
            if outcome.replaced_by is not None:
                self._replace(progress, outcome.replaced_by, (zones or {}).get(outcome.replaced_by))
                continue
            if outcome.state == InstanceState.ROLLED_BACK and outcome.health_after_restore:
                progress.health = outcome.health_after_restore  # what it is now, after the restore
            if self.rules.exact_core and self._deleted_under_us(outcome):
                self._leave(progress, "the instance was deleted during its batch")

    def _replace(self, progress: InstanceProgress, new_id: str, zone: str | None) -> None:
        """maxSurge: the new instance carries the old one's progress (one entry per instance the
        upgrade moves, so counts stay exact); the old id is remembered as replaced."""
        old_id = progress.instance_id
        if zone != progress.zone:
            progress.message = (
                f"{progress.message}; in zone {zone}, not {progress.zone}: Azure placed it there"
            )
        self.replaced.add(old_id)
        progress.instance_id, progress.replaces, progress.zone = new_id, old_id, zone
        self.instances = {(new_id if key == old_id else key): p for key, p in self.instances.items()}
        self._phases[new_id] = self._phases.pop(old_id, None)

    @staticmethod
    def _deleted_under_us(outcome: InstanceOutcome) -> bool:
        return (
            outcome.state == InstanceState.FAILED
            and outcome.cause == FailureCause.INFRASTRUCTURE
            and outcome.code in GONE_CODES
        )

    def observe_alarms(self, readings: Iterable[AlarmReading]) -> None:
        for reading in readings:
            self.alarms[reading.name] = reading

    def struck_by_alarm(self, batch: int, why: str) -> list[InstanceProgress]:
        """The instances batch `batch` left on the change (succeeded, or failed without being
        rolled back), to roll back because an alarm fired while it was in flight: each failed
        now, cause Alarm (it keeps the cause of an earlier failure)."""
        struck = []
        for progress in self.in_state(InstanceState.SUCCEEDED, InstanceState.FAILED):
            if progress.batch != batch or progress.instance_id in self._gone:
                continue
            if progress.state == InstanceState.FAILED and progress.cause not in (
                *ROLLED_BACK_CAUSES,
                FailureCause.ALARM,
            ):
                continue  # the fleet failed it: nothing of the change to undo
            if progress.state == InstanceState.SUCCEEDED:
                progress.state, progress.cause = InstanceState.FAILED, FailureCause.ALARM
                progress.code = "AlarmFired"
                progress.message = f"{progress.message}; {why}" if progress.message else why
            struck.append(progress)
        return struck

    def settle_restores(self, outcomes: Iterable[InstanceOutcome], on: str = "the policy breach") -> None:
        """Restores after a policy breach (or an alarm: `on`): keep why the instance failed, add
        how it ended."""
        for outcome in outcomes:
            progress = self.instances[outcome.instance_id]
            progress.message = f"{progress.message}; on {on}: {outcome.message}"
            if progress.state == InstanceState.SUCCEEDED:  # only the extensions it left failed
                for name in outcome.extension_outcomes or {}:
                    if (mine := (progress.extension_outcomes or {}).get(name)) is not None:
                        mine.state = outcome.state
                        mine.message = f"{mine.message}; on the policy breach: {outcome.message}"
                continue
            progress.state = outcome.state
            progress.health_after_restore = outcome.health_after_restore
            progress.restored = outcome.restored
            if outcome.health_after_restore:
                progress.health = outcome.health_after_restore
            progress.end_time = outcome.end_time
            if outcome.state == InstanceState.FAILED:
                progress.cause, progress.code = outcome.cause, outcome.code

    def in_state(self, *states: InstanceState) -> list[InstanceProgress]:
        """In the order they were upgraded: by batch, then instance id."""
        return sorted(
            (p for p in self.instances.values() if p.state in states),
            key=lambda p: (p.batch or 0, natural_key(p.instance_id)),
        )

    def unhealthy_since_upgrade(self) -> list[InstanceProgress]:
        """Instances upgraded successfully that the latest health reading finds unhealthy."""
        return [
            p
            for p in self.in_state(InstanceState.SUCCEEDED)
            if p.health != HealthState.HEALTHY and p.instance_id not in self._gone
        ]

    # --- endings ----------------------------------------------------------------------------

    def _stop_pending(self) -> None:
        for progress in self.instances.values():
            if progress.state in (InstanceState.PENDING, InstanceState.PENDING_APPROVAL):
                progress.state = InstanceState.NOT_STARTED

    def stopping(self, error: ApiError) -> None:
        """The upgrade has decided to stop: the status says so from now on, through any
        restore that still runs, and no pending instance will start."""
        self.fault = error
        self.wait = None
        self.paused = None
        self._stop_pending()

    def faulted(self, error: ApiError) -> None:
        self.stopping(error)
        self.code = RollingUpgradeStatusCode.FAULTED

    def cancel_requested(self, now: datetime, by: str | None = None) -> None:
        self.last_action = RollingUpgradeActionType.CANCEL
        self.last_action_time = now
        self.cancelled_by = by

    def cancelled(self) -> None:
        self.code = RollingUpgradeStatusCode.CANCELLED
        self.wait = None
        self.paused = None
        self._stop_pending()

    def completed(self) -> None:
        self.code = RollingUpgradeStatusCode.COMPLETED
        self.wait = None
        self.paused = None
