"""RollingUpgradeWorkflow: one upgrade of one scale set, batch by batch, behind health gates.

`_upgrade` reads as the checklist of DESIGN.md: admit (describe the scale set, resolve the target,
skip instances already on it; `upgradectl start` waits on the `admit` update, so a refusal reaches
the user at once) → nothing to do? → gate before start → per batch: fresh health and the gates,
plan (waiting for health to recover when the policy leaves no room), hold (a pause, approval
under deferral), run the batch, settle, decide, publish, pause → a last health reading → the end.

Every way to stop (a gate, the timeout, an infrastructure fault, a refusal) is a `Stop` returned
up the checklist; `_end` alone restores what the policy says, writes the status and the history
entry, notifies and ends. A bug in this code is not a stop: it fails the workflow task, which
Temporal retries until a fixed worker resumes the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from models import search_attributes
    from models.alarms import AlarmReading, AlarmSignal
    from models.errors import ROLLED_BACK_CAUSES, FailureCause
    from models.fleet import HealthReading
    from models.notifications import NotificationEvent
    from models.status import (
        ApiError,
        RollingUpgradeStatusCode,
        RollingUpgradeStatusInfo,
        UpgradeWait,
        UpgradeWaitKind,
    )
    from models.upgrade import (
        ADMIT_UPDATE,
        ALARM_SIGNAL,
        APPROVE_SIGNAL,
        CANCEL_SIGNAL,
        INSTANCES_QUERY,
        PAUSE_SIGNAL,
        PLAN_QUERY,
        REGIONAL,
        REPORT_QUERY,
        RESUME_SIGNAL,
        ROLLING_UPGRADE_WORKFLOW,
        STATUS_QUERY,
        WAVE_REPORT_SIGNAL,
        ZONE_PERMIT_SIGNAL,
        Admission,
        ApproveRequest,
        BatchAction,
        BatchInstance,
        BatchRequest,
        BatchResult,
        CancelRequest,
        InstanceOutcome,
        InstanceProgress,
        InstanceState,
        PauseRequest,
        ResumeRequest,
        UpgradeReport,
        UpgradeRequest,
        WaveReport,
        ZonePermit,
    )
    from rules import alarms, gates, presentation, reporting
    from rules.failures import internal_error
    from rules.ledger import UpgradeLedger, UpgradeRules
    from rules.maintenance_windows import next_window, occurrence_text, window_at
    from rules.planner import Candidate, batch_limit, next_batch
    from rules.surge import surges
    from workflows import activity_calls
    from workflows.admission import SETS_OWN_POLICY, admit
    from workflows.batch_upgrade import BatchUpgradeWorkflow
    from workflows.notifier import Notifier
    from workflows.surge import Surge, delete_replaced, replace

T = TypeVar("T")

# Patches: each id guards a change to the commands the workflow issues, so upgrades started
# by older code replay (see docs/maintaining.md: "Changing workflow code safely").
# 2026-11: upgraded instances that turn unhealthy after their batch count against
# maxUnhealthyUpgradedInstancePercent, with one more health reading after the last batch.
COUNT_UNHEALTHY_SINCE_UPGRADE = "count-unhealthy-since-upgrade"
# 2026-11: the UpgradeStatus and TargetImage search attributes follow the upgrade, and its
# outcome is kept in the memo for `upgradectl history`.
VISIBILITY = "visibility"
# 2026-11: the gates re-read only health (a few bytes an instance) instead of describing the
# whole scale set before each batch, which put every instance's full view in the history again
# for every batch.
COMPACT_HEALTH_READS = "compact-health-reads"
# 2026-12: the core exact to the seeds: nothing to do completes at once; deleted instances leave
# the gates; instances added by a scale-out are upgraded; no batch starts beyond
# maxUnhealthyInstancePercent (the upgrade waits for health to recover); every policy breach
# restores under rollbackFailedInstancesOnPolicyBreach; the timeout is checked after every batch.
EXACT_CORE = "exact-core"
# 2027-01: pause and resume of one upgrade, and approval of every batch under deferral
# (osRollingUpgradeDeferral, notBeforeTimeout): the waits' timers (the upgrade timeout, the
# notBeforeTimeout) and a health reading after a hold. Decided where first needed (a pause, or
# the first batch of a deferred upgrade), so upgrades started before it can be paused too.
PAUSE_AND_APPROVAL = "pause-and-approval"
# 2026-12: a set of 5 or fewer instances takes the policy's batch size (seed 000's one at a time
# is what the default 20% gives) instead of one at a time whatever maxBatchInstancePercent says.
BATCH_SIZE_BY_POLICY = "batch-size-by-policy"
# 2026-12: the upgrade timeout stops only batches not yet started: an upgrade whose last batch
# settles after the deadline ends Completed (it faulted with RollingUpgradeTimeoutError).
LATE_BUT_COMPLETE = "late-but-complete"
# 2026-12: SETS_OWN_POLICY (workflows/admission.py, shared with the preflight).
# 2026-12: several extensions of one upgrade are independent (seed 003): a batch installs each
# on its own (one that fails to install is reinstalled alone, the others go ahead), each has its
# own maxUnhealthyUpgradedInstancePercent, and one past it stops alone while the others go on.
# Decided at the start: an upgrade started before it keeps moving its extensions as one.
INDEPENDENT_EXTENSIONS = "independent-extensions"
# 2026-12: in a rollout's zone waves, a health reading taken after every batch so far, younger
# than one probe interval, serves the gates when the next zone's permit arrives: the set only
# waited, nothing was touched, and a new reading could say no more. One activity and one ARM
# read fewer for every set on each zone-wave hand-over (bench scenario 7a).
FRESH_READING_SERVES = "fresh-reading-serves"
# 2026-12: OS image upgrades that respect a maintenance window hold before a batch while it is
# closed (a durable timer until the next one opens). Only upgrades with a window take the path.
MAINTENANCE_WINDOWS = "maintenance-windows"
# 2026-12: checkpoints (rollingUpgradePolicy.checkpoints): a batch stops at the next one; there
# the upgrade bakes (health re-read) and waits for `approve` where asked. Only upgrades with
# checkpoints take the path.
CHECKPOINTS = "checkpoints"

# 2027-02: alarm gates (models/alarms.py): an upgrade whose policy names alarms reads them before
# every batch and every few seconds of the batch's health wait; one that fires stops it
# (AlarmFired) and, under rollbackOnAlarm, cuts the batch's health waits short and rolls the batch
# back; alarms that cannot be read hold it (no new batch), then fault it (AlarmUnreachable).
# Decided where first needed, and only for upgrades with alarms: others issue what they did.
ALARM_GATES = "alarm-gates"

# Activities in flight per child workflow stay near the server's buffered-event limit (100).
MAX_INSTANCES_PER_CHILD = 100
# While waiting for a rollout's zone wave: how often the rollout hears that the upgrade waits.
WAVE_CHECK = timedelta(hours=1)
# While unhealthy instances leave no room for a batch: how often health is read again.
RECOVERY_RECHECK = timedelta(seconds=30)
# A checkpoint's bake reads health this many times over the bake (history stays bounded).
BAKE_LOOKS = 50


def split(items: list[BatchInstance], size: int) -> list[list[BatchInstance]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclass
class Stop:
    """Why the upgrade stops before its end. After a policy `breach`,
    rollbackFailedInstancesOnPolicyBreach rolls back the instances left failed with the change."""

    error: ApiError
    breach: bool = False
    # An alarm fired while this batch was in flight, under rollbackOnAlarm: restore it.
    alarm_batch: int | None = None


# Pinned: an upgrade ends on the code that started it (a new build serves the next one).
@workflow.defn(name=ROLLING_UPGRADE_WORKFLOW, versioning_behavior=VersioningBehavior.PINNED)
class RollingUpgradeWorkflow:
    @workflow.init
    def __init__(self, request: UpgradeRequest) -> None:
        self._ledger = UpgradeLedger(request, workflow.now())
        self._admission: Admission | None = None
        self._refusal: ApplicationError | None = None
        self._cancel_requested = False
        self._cancel_requested_by_temporal = False
        info = workflow.info()
        self._upgrade_id = f"{info.workflow_id}/{info.first_execution_run_id}"
        self._notifier = Notifier(request.notifications, self._upgrade_id)
        self._ledger.notifications = self._notifier.records  # the report shows them as they go
        self._status: RollingUpgradeStatusInfo | None = None  # as last published
        self._stale = False  # a hold ended: read health and plan again before the next batch
        self._zone: str | None = None  # in a rollout's zone waves: the zone permitted now
        self._read_at: datetime | None = None  # the last health reading, if after every batch
        # Alarm gates: since when some alarm cannot be read (None: every one could, last time),
        # and the alarms that fired while a batch was in flight.
        self._unreachable_since: datetime | None = None
        self._fired: list[AlarmReading] = []

    # --- messages ---------------------------------------------------------------------------

    @workflow.update(name=ADMIT_UPDATE)
    async def admit(self) -> Admission:
        """Returns once the upgrade is admitted (or raises why it was refused)."""
        await workflow.wait_condition(lambda: self._admission is not None or self._refusal is not None)
        if self._refusal is not None:
            raise self._refusal
        assert self._admission is not None
        return self._admission

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self, request: CancelRequest | None = None) -> None:
        """No new batch starts; the batch in flight finishes (or rolls back)."""
        if not self._cancel_requested:
            self._cancel_requested = True
            self._ledger.cancel_requested(workflow.now(), request.by if request else None)
            self._publish()

    @workflow.signal(name=ZONE_PERMIT_SIGNAL)
    def zone_permit(self, permit: ZonePermit) -> None:
        """The rollout's zone wave: this zone's instances may go now."""
        self._zone = permit.zone

    @workflow.signal(name=PAUSE_SIGNAL)
    def pause(self, request: PauseRequest | None = None) -> None:
        """The batch in flight finishes; no new batch starts until `resume` (or a cancel).
        (Each of these signals reads a missing payload as the defaults: one sent bare from the
        Web UI or `temporal workflow signal` must not fail the workflow task.)"""
        request = request or PauseRequest()
        if self._ledger.code != RollingUpgradeStatusCode.ROLLING_FORWARD:
            return
        if self._ledger.pause(request.reason, request.by, workflow.now()):
            workflow.logger.info(
                "upgrade paused by %s: %s",
                request.by,
                request.reason,
                extra={"scale_set": self._ledger.request.scale_set},
            )
            self._publish()

    @workflow.signal(name=RESUME_SIGNAL)
    def resume(self, request: ResumeRequest | None = None) -> None:
        request = request or ResumeRequest()
        if self._ledger.resume():
            workflow.logger.info(
                "upgrade resumed by %s", request.by, extra={"scale_set": self._ledger.request.scale_set}
            )
            self._publish()

    @workflow.signal(name=APPROVE_SIGNAL)
    def approve(self, request: ApproveRequest | None = None) -> None:
        """Azure's ApproveRollingUpgrade: these instances (or every one, now and later) may go."""
        request = request or ApproveRequest()
        ledger = self._ledger
        released = ledger.approve(request.instance_ids, request.by, workflow.now())
        workflow.logger.info(
            "approval by %s of %s",
            request.by,
            ", ".join(request.instance_ids) if request.instance_ids is not None else "every instance",
            extra={"scale_set": ledger.request.scale_set, "instance": released},
        )
        if ledger.release_checkpoint(request.by, workflow.now()):
            workflow.logger.info(
                "checkpoint approved by %s", request.by, extra={"scale_set": ledger.request.scale_set}
            )
        if released and ledger.wait is not None and ledger.wait.kind == UpgradeWaitKind.PENDING_APPROVAL:
            waiting = ledger.pending_approval()
            ledger.wait = ledger.wait.model_copy(
                update={
                    "reason": gates.approval_wait_reason(ledger, ledger.batches + 1, waiting),
                    "instances": waiting,
                }
            )
        self._publish()

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RollingUpgradeStatusInfo:
        return self._status or reporting.status(self._ledger)

    @workflow.query(name=INSTANCES_QUERY)
    def instances(self) -> list[InstanceProgress]:
        return list(self._ledger.instances.values())

    @workflow.query(name=PLAN_QUERY)
    def plan(self) -> list[list[str]]:
        """The batches still to come, as planned from the latest health readings."""
        return [[c.instance_id for c in batch] for batch in self._ledger.plan()]

    @workflow.query(name=REPORT_QUERY)
    def report(self) -> UpgradeReport:
        return reporting.report(self._ledger)

    # --- the checklist ----------------------------------------------------------------------

    @workflow.run
    async def run(self, request: UpgradeRequest) -> UpgradeReport:
        self._adopt_patches()
        self._publish()
        self._notify(NotificationEvent.SUBMISSION)
        try:
            stop = await self._upgrade(request)
        except (ActivityError, ChildWorkflowError) as err:
            stop = Stop(internal_error(err))  # the fleet failed in a way no rule covers
        if (
            stop is None
            and not self._cancel_requested
            and (stopped := gates.extensions_stopped(self._ledger))
        ):
            stop = Stop(stopped, breach=True)  # the others went on; this one did not reach the set
        report = await self._end(stop)
        if self._cancel_requested_by_temporal:
            raise asyncio.CancelledError("cancel requested")  # the Web UI shows it Canceled
        return report

    def _adopt_patches(self) -> None:
        """The patches decided once, at the start: an upgrade keeps the rules it started with."""
        self._visible = workflow.patched(VISIBILITY)
        self._ledger.rules = UpgradeRules(  # (keyword arguments run in order: the patches' order)
            exact_core=workflow.patched(EXACT_CORE),
            small_sets_one_at_a_time=not workflow.patched(BATCH_SIZE_BY_POLICY),
            sets_own_policy=workflow.patched(SETS_OWN_POLICY),
            independent_extensions=workflow.patched(INDEPENDENT_EXTENSIONS),
        )

    async def _upgrade(self, request: UpgradeRequest) -> Stop | None:
        """The upgrade, step by step; returns why it stopped, or None once done or cancelled."""
        ledger = self._ledger
        if stop := await self._admit(request):
            return stop
        if ledger.rules.exact_core and not ledger.candidates():
            return None  # every instance is on the target already: nothing to do, whatever its health
        if breach := gates.in_flight_gate(ledger, before_upgrade=True):
            return Stop(breach)
        if (opening := self._opening()) is not None:
            self._zone = opening  # the rollout permitted its first zone wave with the start
        while True:
            if (ledger.batches or self._stale) and not self._cancel_requested:
                self._stale = False
                if stop := await self._check_health():
                    return stop
            if self._cancel_requested or not ledger.candidates():
                return None
            if await self._zone_turn():
                self._stale = True
                continue  # time passed: the deadline, health and the plan again
            batch = await self._next_batch()
            if isinstance(batch, Stop):
                return batch
            if not batch:
                if ledger.request.waves is not None and ledger.candidates() and not self._cancel_requested:
                    continue  # its zone has nothing left after all (a deletion): the next zone
                return None  # cancelled while waiting, or nothing left to upgrade
            held = await self._hold(batch)
            if isinstance(held, Stop):
                return held
            if held:
                self._stale = True
                continue  # time passed: the deadline, health and the plan again
            gated = await self._alarm_gate()
            if isinstance(gated, Stop):
                return gated
            if gated:
                self._stale = True
                continue  # held while alarms could not be read: health and the plan again
            if stop := await self._batch(batch):
                return stop
            if stop := await self._at_checkpoint():
                return stop
            await self._pause()

    async def _admit(self, request: UpgradeRequest) -> Stop | None:
        ledger = self._ledger
        try:
            scale_set, change = await self._through_cancel(admit(request))
        except ApplicationError as refusal:  # nothing was touched
            self._refusal = refusal
            return Stop(ApiError(code=refusal.type, message=refusal.message, target=request.scale_set))
        ledger.admit(scale_set, change)
        self._read_at = workflow.now()  # (the scale set as admitted has each instance's health)
        self._notify(NotificationEvent.SUBMISSION_OUTCOME)
        if self._visible:  # (an extension upgrade's TargetImage says "extension <name> <version>")
            workflow.upsert_search_attributes([search_attributes.TARGET_IMAGE.value_set(str(change))])
        self._publish()
        info = workflow.info()
        self._admission = Admission(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            scale_set=request.scale_set,
            target_image=change.image,
            extensions=change.extensions,
            instance_count=len(ledger.instances),
            to_upgrade=len(ledger.candidates()),
            skipped=len(ledger.in_state(InstanceState.SKIPPED)),
            planned_batches=len(ledger.plan()),
        )
        workflow.logger.info(
            "upgrade admitted: %s of %s instances to %s, about %s batches",
            self._admission.to_upgrade,
            self._admission.instance_count,
            change,
            self._admission.planned_batches,
            extra={"scale_set": request.scale_set},
        )
        return None

    async def _check_health(self) -> Stop | None:
        """Before every batch after the first, and once after the last: the deadline, fresh
        health readings, the in-flight gate (while instances remain) and the upgraded gate."""
        ledger = self._ledger
        last = not ledger.candidates()
        if last and not workflow.patched(COUNT_UNHEALTHY_SINCE_UPGRADE):
            return None  # upgrades started before that patch took no last reading
        if not last and (breach := gates.deadline_gate(ledger, workflow.now())):
            return Stop(breach, breach=ledger.rules.exact_core)
        if not self._reading_serves():
            await self._read_health()
        if not last or ledger.candidates():  # (a scale-out may add some at the last reading)
            # Instances a scale-out added after a late last batch: no batch starts past the deadline.
            if last and ledger.rules.exact_core and (breach := gates.deadline_gate(ledger, workflow.now())):
                return Stop(breach, breach=True)
            if breach := gates.in_flight_gate(ledger, before_upgrade=False):
                return Stop(breach, breach=ledger.rules.exact_core)
        if workflow.patched(COUNT_UNHEALTHY_SINCE_UPGRADE):
            if breach := gates.upgraded_gate(ledger, including_later=True):
                return Stop(breach, breach=True)
        return None

    def _reading_serves(self) -> bool:
        """In a rollout's zone waves, the last reading (taken after every batch so far) is younger
        than one probe interval: the set has only waited for its permit since."""
        ledger = self._ledger
        if ledger.request.waves is None or self._read_at is None:
            return False
        young = workflow.now() - self._read_at < timedelta(seconds=ledger.request.health.interval_in_seconds)
        return young and workflow.patched(FRESH_READING_SERVES)

    async def _read_health(self) -> None:
        """Fresh health readings; instances a scale-out added are described and join the plan."""
        ledger = self._ledger
        added = ledger.observe(await self._through_cancel(self._health_reading()))
        self._read_at = workflow.now()
        if added and ledger.rules.exact_core:
            view = await self._through_cancel(activity_calls.describe_scale_set(ledger.request.scale_set))
            wanted = set(added)
            joined = ledger.add(
                (i for i in view.instances if i.instance_id in wanted),
                note="added to the scale set during the upgrade",
            )
            workflow.logger.info(
                "instances added during the upgrade: %s",
                ", ".join(joined),
                extra={"scale_set": ledger.request.scale_set},
            )
            self._publish()

    async def _health_reading(self) -> HealthReading:
        scale_set = self._ledger.request.scale_set
        if workflow.patched(COMPACT_HEALTH_READS):
            return await activity_calls.read_health(scale_set)
        return HealthReading.of(await activity_calls.describe_scale_set(scale_set))

    def _plan_next(self) -> list[Candidate]:
        ledger = self._ledger
        batch = next_batch(
            self._candidates(),
            ledger.total,
            len(ledger.unhealthy()),
            ledger.planning_policy,
            within_budget=ledger.rules.exact_core,
            small_sets_one_at_a_time=ledger.rules.small_sets_one_at_a_time,
        )
        room = ledger.checkpoint_room()
        return batch if room is None else batch[:room]  # a batch stops at the next checkpoint

    async def _next_batch(self) -> list[Candidate] | Stop:
        """The planner's next batch. When the unhealthy instances leave no room for one within
        maxUnhealthyInstancePercent, wait for them to recover (durably, re-reading health, at
        most the health wait) rather than take the set further down; stop if they do not."""
        ledger = self._ledger
        batch = self._plan_next()
        if batch or not ledger.rules.exact_core:
            return batch
        since = workflow.now()
        until = since + ledger.request.health.health_wait_timeout
        if ledger.deadline is not None:
            until = min(until, ledger.deadline)
        while not batch:
            ledger.wait = UpgradeWait(reason=gates.budget_wait_reason(ledger), since=since, until=until)
            self._publish()
            if workflow.now() >= until:
                if breach := gates.deadline_gate(ledger, workflow.now()):
                    return Stop(breach, breach=True)
                return Stop(gates.budget_gate(ledger, until - since), breach=True)
            if await self._sleep(
                min(RECOVERY_RECHECK, until - workflow.now()), "waiting for health to recover"
            ):
                break  # cancelled
            await self._read_health()
            if breach := gates.in_flight_gate(ledger, before_upgrade=False):
                return Stop(breach, breach=True)
            if not self._candidates():
                break
            batch = self._plan_next()
        ledger.wait = None
        self._publish()
        return batch

    # --- zone waves: a rollout's turn for each zone ------------------------------------------------

    def _candidates(self) -> list[Candidate]:
        """The instances a batch may take now: in a rollout's zone waves, those of the zone it permits."""
        candidates = self._ledger.candidates()
        if self._ledger.request.waves is None:
            return candidates
        return [c for c in candidates if (c.zone or REGIONAL) == self._zone]

    async def _zone_turn(self) -> bool:
        """In a rollout's zone waves, before a batch: when the permitted zone has nothing left,
        tell the rollout which zones remain and wait for its permit for the next. True if the
        upgrade waited (or was cancelled meanwhile)."""
        ledger = self._ledger
        waves = ledger.request.waves
        if waves is None or self._candidates():
            return False
        left: dict[str, int] = {}
        for candidate in ledger.candidates():
            key = candidate.zone or REGIONAL
            left[key] = left.get(key, 0) + 1
        done, self._zone = self._zone, None
        report = WaveReport(
            scale_set=ledger.request.scale_set, zones=left, batch=self._batch_size(), done=done
        )
        await self._through_cancel(self._tell_rollout(waves.rollout_id, report))
        since = workflow.now()
        ledger.wait = UpgradeWait(
            kind=UpgradeWaitKind.ZONE_WAVE,
            reason=gates.zone_wave_reason(waves.region, done, left),
            since=since,
            until=ledger.deadline,
        )
        self._publish()
        # Now and then the rollout hears again that this upgrade waits: a rollout that ended
        # (terminated, say) refuses it, and the upgrade stops instead of holding its set forever.
        # (The deadline, if it passes meanwhile, stops the upgrade at the next health check.)
        while True:
            check = workflow.now() + WAVE_CHECK
            until = min(check, ledger.deadline) if ledger.deadline is not None else check
            if await self._wait_until(
                lambda: self._zone is not None or self._cancel_requested, until, "zone wave"
            ) or (ledger.deadline is not None and workflow.now() >= ledger.deadline):
                break
            again = report.model_copy(update={"again": True})
            await self._through_cancel(self._tell_rollout(waves.rollout_id, again))
        ledger.wait = None
        self._publish()
        return True

    def _batch_size(self) -> int:
        """The most instances a batch of this upgrade takes (the rollout's region cap counts it)."""
        ledger = self._ledger
        one_at_a_time = ledger.rules.small_sets_one_at_a_time
        limit = batch_limit(ledger.total, ledger.request.policy, small_sets_one_at_a_time=one_at_a_time)
        return limit.allowed

    def _opening(self) -> str | None:
        """The zone the rollout permitted with the start (its first wave), if this upgrade's
        batch is within the share of the region's cap it was given; else it reports first."""
        waves = self._ledger.request.waves
        if waves is None or waves.opening is None or self._batch_size() > waves.opening.instances:
            return None
        return waves.opening.zone

    async def _tell_rollout(self, rollout_id: str, report: WaveReport) -> None:
        try:
            await workflow.get_external_workflow_handle(rollout_id).signal(WAVE_REPORT_SIGNAL, report)
        except FailureError as err:  # the rollout ended: nothing more will be permitted
            workflow.logger.warning("rollout %s did not take the wave report: %s", rollout_id, err)
            self.cancel(CancelRequest(by=rollout_id, reason="the rollout ended"))

    # --- alarm gates ---------------------------------------------------------------------------

    def _alarms_on(self) -> bool:
        """The policy names alarms, and this upgrade reads them (the patch, decided where first
        needed: upgrades without alarms never ask)."""
        return bool(self._ledger.request.alarms) and workflow.patched(ALARM_GATES)

    async def _read_alarms(self) -> list[AlarmReading]:
        """Every alarm now, kept for the status; notes since when some cannot be read."""
        ledger = self._ledger
        readings = await self._through_cancel(activity_calls.read_alarms(ledger.request.alarms))
        ledger.observe_alarms(readings)
        if not alarms.unreachable_ones(readings):
            self._unreachable_since = None
        elif self._unreachable_since is None:
            self._unreachable_since = workflow.now()
        self._publish()
        return readings

    async def _alarm_gate(self) -> Stop | bool:
        """Before a batch: read the alarms. One that fires stops the upgrade (nothing of the next
        batch touched). Ones that cannot be read are not firing: the upgrade holds, reading them
        again every read interval, until they can be read (True: it held, so health and the
        plan are read again) or until alarmUnreachableTimeout since they could not, when it
        faults with AlarmUnreachable."""
        if not self._alarms_on():
            return False
        ledger = self._ledger
        request = ledger.request
        readings = await self._read_alarms()
        held = False
        while not alarms.fired(readings) and alarms.unreachable_ones(readings) and not self._cancel_requested:
            since = self._unreachable_since
            assert since is not None
            until = since + request.alarm_unreachable_timeout
            if workflow.now() >= until:
                return Stop(alarms.unreachable_error(readings, since, request.alarm_unreachable_timeout))
            if not held:
                workflow.logger.warning(
                    "alarms cannot be read: holding", extra={"scale_set": request.scale_set}
                )
            held = True
            ledger.wait = UpgradeWait(
                kind=UpgradeWaitKind.ALARM_UNREACHABLE,
                reason=alarms.unreachable_reason(readings, until),
                since=since,
                until=until,
            )
            self._publish()
            again = min(alarms.read_interval(request.health), until - workflow.now())
            if await self._sleep(again, "alarms could not be read: reading again"):
                break  # cancelled
            readings = await self._read_alarms()
        if held:
            ledger.wait = None
            self._publish()
        if firing := alarms.fired(readings):
            return Stop(alarms.fired_error(firing, None, rolled_back=False))
        return held

    async def _watch_alarms(
        self, number: int, count: int, work: Awaitable[list[InstanceOutcome]], cut: bool
    ) -> list[InstanceOutcome]:
        """While batch `number` (of `count` instances) is in flight: read the alarms every read
        interval until it settles. Those that fire are kept (the batch then stops the upgrade);
        with `cut` (rollbackOnAlarm) its children hear of it and end their health waits at once."""
        if not self._alarms_on():
            return await work
        batch = asyncio.ensure_future(work)
        interval = alarms.read_interval(self._ledger.request.health)
        while not self._fired:
            timer = asyncio.ensure_future(workflow.sleep(interval, summary="read the alarms again"))
            await workflow.wait([batch, timer], return_when=asyncio.FIRST_COMPLETED)
            if batch.done():
                timer.cancel()
                break
            self._fired = alarms.fired(await self._read_alarms())
        if self._fired and cut and not batch.done():
            signal = AlarmSignal(
                reason="alarm " + ", ".join(alarms.described(r) for r in self._fired) + " fired"
            )
            workflow.logger.warning(
                "%s during batch %s: its health waits end",
                signal.reason,
                number,
                extra={"scale_set": self._ledger.request.scale_set, "batch": number},
            )
            await asyncio.gather(
                *(
                    self._tell_child(child, signal)
                    for child in self._child_ids(number, BatchAction.UPGRADE, count)
                )
            )
        return await batch

    async def _tell_child(self, child_id: str, signal: AlarmSignal) -> None:
        # One that has finished meanwhile has its instances settled: they are restored as they are.
        with contextlib.suppress(FailureError):
            await workflow.get_external_workflow_handle(child_id).signal(ALARM_SIGNAL, signal)

    # --- holds: approval and pause --------------------------------------------------------------

    def _holds(self) -> bool:
        """Pauses and approvals act (decided where first needed; the SDK keeps the answer)."""
        return workflow.patched(PAUSE_AND_APPROVAL)

    async def _hold(self, batch: list[Candidate]) -> Stop | bool:
        """Before a batch starts: its approval (deferral), then a pause. True if the upgrade
        waited (or was cancelled meanwhile), so the batch is planned again on fresh health."""
        ledger = self._ledger
        waited = False
        if ledger.request.needs_approval and self._holds():
            approval = await self._await_approval(batch)
            if isinstance(approval, Stop):
                return approval
            waited = approval
        if self._cancel_requested:
            return True
        if ledger.paused is not None:
            if not self._holds():  # upgrades that started before pauses existed ignore one
                ledger.resume()
                self._publish()
                return waited
            resumed = await self._await_resume()
            if isinstance(resumed, Stop):
                return resumed
            waited = True
        if waited or self._cancel_requested:
            return True  # (the window is checked when the batch is about to start)
        return await self._await_window()

    async def _at_checkpoint(self) -> Stop | None:
        """After a batch that reached a checkpoint: bake (health read again every so often, the
        gates applied), then wait for `approve` where the checkpoint asks for it."""
        ledger = self._ledger
        index = ledger.checkpoint_reached()
        if index is None or not workflow.patched(CHECKPOINTS):
            return None
        ledger.checkpoints_passed = index + 1
        point = (ledger.request.policy.checkpoints or [])[index]
        done = len(ledger.attempted())
        label = f"checkpoint {index + 1} ({point.percent}%) reached after {done} instance(s)"
        workflow.logger.info(label, extra={"scale_set": ledger.request.scale_set})
        ledger.checkpoint_log.append(f"{label} at {workflow.now().isoformat(timespec='seconds')}")
        if point.bake_time > timedelta(0) and (stop := await self._bake(point.bake_time, label)):
            return stop
        if point.approval and not self._cancel_requested:
            ledger.checkpoint_waiting = index
            ledger.wait = UpgradeWait(
                kind=UpgradeWaitKind.CHECKPOINT,
                reason=f"{label}: waiting for approval (`upgradectl approve {ledger.request.scale_set}`)",
                since=workflow.now(),
                until=ledger.deadline,
            )
            self._publish()
            approved = await self._wait_until(
                lambda: ledger.checkpoint_waiting is None or self._cancel_requested,
                ledger.deadline,
                "waiting for approval at a checkpoint",
            )
            ledger.wait = None
            if not approved and (breach := gates.deadline_gate(ledger, workflow.now())):
                return Stop(breach, breach=True)
            self._publish()
        return None

    async def _bake(self, bake: timedelta, label: str) -> Stop | None:
        """A checkpoint's bake time: the checks before a batch (`_check_health`) every BAKE_LOOKS-th
        of it (at least RECOVERY_RECHECK apart, so a long bake stays a few dozen reads)."""
        ledger = self._ledger
        until = workflow.now() + bake
        if ledger.deadline is not None:
            until = min(until, ledger.deadline)
        every = max(RECOVERY_RECHECK, bake / BAKE_LOOKS)
        ledger.wait = UpgradeWait(
            kind=UpgradeWaitKind.CHECKPOINT, reason=f"{label}: baking", since=workflow.now(), until=until
        )
        self._publish()
        while workflow.now() < until and not self._cancel_requested:
            if await self._sleep(min(every, until - workflow.now()), "checkpoint bake"):
                break
            if stop := await self._check_health():  # as before a batch: the deadline, health, the gates
                return stop
        ledger.wait = None
        self._publish()
        return None

    async def _await_window(self) -> Stop | bool:
        """Outside the set's maintenance window: hold until its next occurrence opens (a batch
        in flight when it closed has finished), then plan again on fresh health. The upgrade
        timeout still runs. True if the upgrade waited."""
        ledger = self._ledger
        window = ledger.maintenance_window
        now = workflow.now()
        if window is None or window_at(window, now) is not None:
            return False
        upcoming = next_window(window, now)
        if upcoming is None or not workflow.patched(MAINTENANCE_WINDOWS):
            return False  # expired: it no longer restricts anything
        until = upcoming[0] if ledger.deadline is None else min(upcoming[0], ledger.deadline)
        ledger.wait = UpgradeWait(
            kind=UpgradeWaitKind.MAINTENANCE_WINDOW,
            reason=f"waiting for the maintenance window: {occurrence_text(window, upcoming)}",
            since=now,
            until=upcoming[0],
        )
        self._publish()
        workflow.logger.info(
            "outside the maintenance window: waiting until %s",
            upcoming[0].isoformat(),
            extra={"scale_set": ledger.request.scale_set},
        )
        await self._wait_until(lambda: self._cancel_requested, until, "waiting for the maintenance window")
        ledger.wait = None
        if not self._cancel_requested and (breach := gates.deadline_gate(ledger, workflow.now())):
            return Stop(breach, breach=True)
        self._publish()
        return True

    async def _await_approval(self, batch: list[Candidate]) -> Stop | bool:
        """Mark the batch pending approval and wait until every one of its instances is
        approved (`approve`, or notBeforeTimeout on its own), a cancel, or the deadline."""
        ledger = self._ledger
        now = workflow.now()
        waiting = ledger.await_approval((c.instance_id for c in batch), now)
        if not waiting:
            return False
        timeout = ledger.request.not_before_timeout
        due = now + timeout if timeout is not None else None
        until = min((t for t in (due, ledger.deadline) if t is not None), default=None)
        number = ledger.batches + 1
        ledger.wait = UpgradeWait(
            kind=UpgradeWaitKind.PENDING_APPROVAL,
            reason=gates.approval_wait_reason(ledger, number, waiting),
            since=now,
            until=until,
            instances=waiting,
        )
        self._publish()
        workflow.logger.info(
            "batch %s waits for approval",
            number,
            extra={"scale_set": ledger.request.scale_set, "batch": number, "instance": waiting},
        )
        approved = await self._wait_until(
            lambda: not ledger.pending_approval() or self._cancel_requested,
            until,
            "waiting for approval",
        )
        ledger.wait = None
        if not approved and not self._cancel_requested:
            if breach := gates.deadline_gate(ledger, workflow.now()):
                return Stop(breach, breach=True)
            if timeout is not None:
                ledger.approve_due(timeout, workflow.now())
        self._publish()
        return True

    async def _await_resume(self) -> Stop | None:
        """Paused: wait for `resume` or a cancel; the upgrade timeout still runs."""
        ledger = self._ledger
        paused = ledger.paused
        assert paused is not None
        ledger.wait = paused.model_copy(update={"until": ledger.deadline})
        self._publish()
        resumed = await self._wait_until(
            lambda: ledger.paused is None or self._cancel_requested, ledger.deadline, "paused"
        )
        if not resumed and (breach := gates.deadline_gate(ledger, workflow.now())):
            return Stop(breach, breach=True)
        ledger.wait = None
        self._publish()
        return None

    async def _wait_until(self, done: Callable[[], bool], until: datetime | None, summary: str) -> bool:
        """A durable wait for `done`, at most until `until` (no timer without it); a cancel
        request from outside cuts it short like the cancel signal. False if time ran out."""
        if until is not None and workflow.now() >= until:
            return done()
        try:
            await workflow.wait_condition(
                done,
                timeout=until - workflow.now() if until is not None else None,
                timeout_summary=summary if until is not None else None,
            )
        except TimeoutError:
            return done()
        except asyncio.CancelledError:
            self._cancel_requested_by_temporal = True
            self.cancel()
        return True

    async def _batch(self, batch: list[Candidate]) -> Stop | None:
        """Run one batch; settle its outcomes, decide, and only then publish the status."""
        ledger = self._ledger
        number = ledger.start_batch((c.instance_id for c in batch), workflow.now())
        self._read_at = None  # a reading from before the batch says nothing of it
        self._publish()
        workflow.logger.info(
            "batch started",
            extra={
                "scale_set": ledger.request.scale_set,
                "batch": number,
                "instance": [c.instance_id for c in batch],
            },
        )
        surge = await self._through_cancel(self._surge(number, batch))
        if surge.replacements:  # the old instances in the zones the new ones landed in
            ledger.rebatch(number, list(surge.replacements), workflow.now())
            self._publish()
            batch = [Candidate(instance_id=i) for i in surge.replacements]
        # rollbackOnAlarm: an alarm cuts the batch short and rolls it back (not maxSurge's, whose
        # replaced instances are gone once their new ones are healthy: it stops after the batch).
        cut = bool(ledger.request.alarms) and ledger.request.rollback_on_alarm and not surge.replacements
        if surge.failed is not None:
            outcomes = [self._not_replaced(c.instance_id, surge.failed) for c in batch]
        else:
            instances = [
                BatchInstance(
                    instance_id=c.instance_id,
                    previous_os_disk=ledger.instances[c.instance_id].previous_os_disk,
                    previous_extensions=ledger.instances[c.instance_id].previous_extensions,
                    replacement=surge.replacements.get(c.instance_id),
                )
                for c in batch
            ]
            outcomes = await self._through_cancel(
                self._watch_alarms(
                    number,
                    len(instances),
                    self._run_batch(number, BatchAction.UPGRADE, instances, alarms=cut),
                    cut=cut,
                )
            )
        for outcome in outcomes:
            if surge.in_place:
                outcome.message = (
                    f"{surge.in_place}; {outcome.message}" if outcome.message else surge.in_place
                )
        undeleted = None
        if surge.replacements:
            undeleted = await self._through_cancel(
                delete_replaced(ledger, self._upgrade_id, number, outcomes, surge)
            )
        ledger.settle(outcomes, zones=surge.zones)
        if undeleted is not None:
            ledger.stopping(undeleted)
            self._publish()
            return Stop(undeleted)
        if self._fired:
            error = alarms.fired_error(self._fired, number, rolled_back=cut)
            ledger.stopping(error)
            self._publish()
            return Stop(error, alarm_batch=number if cut else None)
        if ledger.rules.exact_core and any(o.cause == FailureCause.HEALTH for o in outcomes):
            await self._read_health()  # an instance deleted during its health wait is gone, not failed
        stop = self._decide(outcomes)
        if stop is not None:
            ledger.stopping(stop.error)
        self._publish()
        self._notify(NotificationEvent.BATCH_OUTCOME, key=f"/batch-{number}")
        return stop

    async def _surge(self, number: int, batch: list[Candidate]) -> Surge:
        """maxSurge: the batch's new instances (none when it is upgraded in place)."""
        ledger = self._ledger
        if not surges(ledger.request.policy, ledger.change):
            return Surge()
        surge = await replace(ledger, self._upgrade_id, number, batch)
        workflow.logger.info(
            "batch %s: %s",
            number,
            surge.in_place
            or (f"not replaced: {surge.failed[1]}" if surge.failed else None)
            or "created " + ", ".join(surge.replacements.values()),
            extra={"scale_set": ledger.request.scale_set},
        )
        return surge

    def _not_replaced(self, instance_id: str, failure: tuple[str, str]) -> InstanceOutcome:
        """An instance whose replacement the fleet would not create: failed, untouched."""
        now = workflow.now()
        code, message = failure
        return InstanceOutcome(
            instance_id=instance_id,
            state=InstanceState.FAILED,
            cause=FailureCause.INFRASTRUCTURE,
            code=code,
            message=f"no new instance was made to replace it: {message}",
            start_time=now,
            end_time=now,
        )

    def _decide(self, outcomes: list[InstanceOutcome]) -> Stop | None:
        ledger = self._ledger
        if breach := gates.internal_failures(ledger):
            return Stop(breach)
        if breach := gates.upgraded_gate(ledger):
            return Stop(breach, breach=True)
        for name, breach in gates.extension_gates(ledger).items():
            ledger.stop_extension(name, breach)
            workflow.logger.warning(
                "extension stopped: %s", breach.message, extra={"scale_set": ledger.request.scale_set}
            )
        if ledger.stopped_extensions and not ledger.extensions_going():
            stopped = gates.extensions_stopped(ledger)
            assert stopped is not None
            return Stop(stopped, breach=True)
        if ledger.rules.exact_core and (breach := gates.deadline_gate(ledger, workflow.now())):
            remains = bool(ledger.candidates() or ledger.pending_approval())
            if remains or not workflow.patched(LATE_BUT_COMPLETE):
                return Stop(breach, breach=True)
        return None

    async def _pause(self) -> None:
        """pauseTimeBetweenBatches: a durable timer that a cancel (or the upgrade timeout) cuts short."""
        ledger = self._ledger
        pause = ledger.request.policy.pause_time_between_batches
        if pause <= timedelta(0) or not ledger.candidates() or self._cancel_requested:
            return
        if ledger.deadline is not None:
            pause = min(pause, max(ledger.deadline - workflow.now(), timedelta(seconds=1)))
        await self._sleep(pause, "pauseTimeBetweenBatches")

    async def _sleep(self, duration: timedelta, summary: str) -> bool:
        """A durable wait that a cancel cuts short; True if the upgrade was cancelled."""
        try:
            await workflow.wait_condition(
                lambda: self._cancel_requested, timeout=duration, timeout_summary=summary
            )
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            self._cancel_requested_by_temporal = True
            self.cancel()
        return self._cancel_requested

    # --- the one way out --------------------------------------------------------------------

    async def _end(self, stop: Stop | None) -> UpgradeReport:
        """Restore what the policy says, write the status and the history entry, notify, end:
        Completed or Cancelled return the report; Faulted fails with the Azure error code as the
        ApplicationError type and the report as its details."""
        ledger = self._ledger
        scale_set = ledger.request.scale_set
        if stop is None:
            if self._cancel_requested:
                ledger.cancelled()
            else:
                ledger.completed()
            workflow.logger.info("upgrade ended: %s", ledger.code.value, extra={"scale_set": scale_set})
            await self._close()
            return reporting.report(ledger)
        ledger.stopping(stop.error)
        if stop.alarm_batch is not None:
            self._publish()
            await self._through_cancel(self._restore_struck(stop.alarm_batch))
        if stop.breach and ledger.request.policy.rollback_failed_instances_on_policy_breach:
            self._publish()
            await self._through_cancel(self._restore_failed())
        ledger.faulted(stop.error)
        workflow.logger.warning(
            "upgrade faulted: %s: %s",
            stop.error.code,
            stop.error.message,
            extra={"scale_set": scale_set, "batch": ledger.batches},
        )
        await self._close()
        raise ApplicationError(
            stop.error.message or str(stop.error.code),
            reporting.report(ledger),
            type=stop.error.code,
            non_retryable=True,
        )

    async def _restore_failed(self) -> None:
        """rollbackFailedInstancesOnPolicyBreach: restore instances left failed on the new image."""
        ledger = self._ledger
        stranded = [
            BatchInstance(
                instance_id=p.instance_id,
                previous_os_disk=p.previous_os_disk,
                previous_extensions=p.previous_extensions,
            )
            for p in ledger.in_state(InstanceState.FAILED)
            if p.cause in ROLLED_BACK_CAUSES and (p.previous_os_disk or p.previous_extensions)
        ]
        # Instances that succeeded with an extension left failed to install: that one only.
        stranded += [
            BatchInstance(
                instance_id=p.instance_id, previous_extensions=p.previous_extensions, restore_extensions=names
            )
            for p in ledger.in_state(InstanceState.SUCCEEDED)
            if (
                names := [
                    n for n, o in (p.extension_outcomes or {}).items() if o.state == InstanceState.FAILED
                ]
            )
        ]
        if stranded:
            outcomes = await self._run_batch(self._ledger.batches, BatchAction.RESTORE, stranded)
            self._ledger.settle_restores(outcomes)
            self._publish()

    async def _restore_struck(self, number: int) -> None:
        """rollbackOnAlarm: restore every instance of batch `number` (in flight when the alarm
        fired) left on the change, as a policy breach's restore does; earlier batches stay."""
        ledger = self._ledger
        struck = ledger.struck_by_alarm(number, "an alarm fired while its batch was in flight")
        instances = [
            BatchInstance(
                instance_id=p.instance_id,
                previous_os_disk=p.previous_os_disk,
                previous_extensions=p.previous_extensions,
            )
            for p in struck
            if p.previous_os_disk or p.previous_extensions
        ]
        if instances:
            outcomes = await self._run_batch(number, BatchAction.RESTORE, instances)
            ledger.settle_restores(outcomes, on="the alarm")
        self._publish()

    async def _close(self) -> None:
        """The outcome for the Web UI, `upgradectl history` and the webhooks; then the end."""
        self._publish()
        if self._admission is not None:
            self._notify(NotificationEvent.COMPLETION_OUTCOME)
        else:
            self._notify(NotificationEvent.SUBMISSION_OUTCOME)  # refused: with the reason
        if self._visible:
            ledger = self._ledger
            workflow.upsert_search_attributes([search_attributes.UPGRADE_STATUS.value_set(ledger.code.value)])
            workflow.upsert_memo(
                {"upgrade": reporting.report(ledger).history_entry(workflow.now()).to_json()}
            )
        await self._through_cancel(self._notifier.drain())
        await self._through_cancel(workflow.wait_condition(workflow.all_handlers_finished))

    # --- plumbing ---------------------------------------------------------------------------

    def _publish(self) -> None:
        """Keep the status and the Web UI's current details in step with the ledger. The status
        query answers what was last published, never the ledger between two steps of one
        decision (a batch settled, its health re-read, the gates not yet weighed)."""
        self._status = reporting.status(self._ledger)
        build = workflow.info().get_current_deployment_version()
        workflow.set_current_details(presentation.current_details(self._ledger, build))

    def _notify(self, event: NotificationEvent, key: str = "") -> None:
        info = workflow.info()
        body = {
            "scaleSet": self._ledger.request.scale_set,
            "workflowId": info.workflow_id,
            "runId": info.run_id,
            "time": workflow.now().isoformat(),
            "status": reporting.status(self._ledger).to_json(),
        }
        self._notifier.notify(event, body, key)

    async def _through_cancel(self, work: Awaitable[T]) -> T:
        """Await work that must finish even if the upgrade is cancelled meanwhile.

        A cancel request from outside (the Web UI's Cancel, `client.cancel`) arrives as a
        CancelledError at the workflow's current await. Shielded, the batch in flight runs on
        (its instances finish or roll back); the request only stops what comes after, exactly
        like the cancel signal.
        """
        task = asyncio.ensure_future(work)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                self._cancel_requested_by_temporal = True
                self.cancel()

    @staticmethod
    def _child_ids(number: int, action: BatchAction, count: int) -> list[str]:
        """The ids of the children of a batch (or restore) of `count` instances, one per part."""
        base = f"{workflow.info().workflow_id}/" + (
            f"batch-{number}" if action == BatchAction.UPGRADE else "rollback"
        )
        parts = -(-count // MAX_INSTANCES_PER_CHILD)  # (as `split` cuts them)
        return [base] if parts == 1 else [f"{base}-part-{index + 1}" for index in range(parts)]

    async def _run_batch(
        self, number: int, action: BatchAction, instances: list[BatchInstance], alarms: bool = False
    ) -> list[InstanceOutcome]:
        """One child per part of at most MAX_INSTANCES_PER_CHILD instances, all at once.
        `alarms`: the `alarm` signal may cut the children's health waits short."""
        ledger = self._ledger
        parts = split(instances, MAX_INSTANCES_PER_CHILD)
        child_ids = self._child_ids(number, action, len(instances))
        ids = [i.instance_id for i in instances]
        summary = (
            presentation.batch_summary(ledger, number, ids)
            if action == BatchAction.UPGRADE
            else presentation.restore_summary(ids)
        )
        children = [
            # The SDK's typed overloads for a method reference take no result_type, which it
            # accepts (and this workflow has always passed) at run time.
            workflow.execute_child_workflow(  # type: ignore[call-overload]
                BatchUpgradeWorkflow.run,
                BatchRequest(
                    upgrade_id=self._upgrade_id,
                    scale_set=ledger.request.scale_set,
                    batch=number,
                    action=action,
                    instances=part,
                    target_image=ledger.change.image,
                    # A restore knows every extension of the change; a batch installs those going.
                    extensions=(
                        ledger.extensions_going()
                        if action == BatchAction.UPGRADE
                        else ledger.change.extensions
                    ),
                    health=ledger.request.health,
                    rollback=not ledger.request.disable_automatic_rollback,
                    independent_extensions=ledger.rules.independent_extensions,
                    alarms=alarms,
                ),
                id=child_ids[index],
                result_type=BatchResult,
                static_summary=summary,
            )
            for index, part in enumerate(parts)
        ]
        results = await asyncio.gather(*children)
        return [outcome for result in results for outcome in result.outcomes]
