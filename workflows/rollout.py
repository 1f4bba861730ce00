"""RolloutWorkflow: one image version, or one extension version, across the opted-in scale sets,
availability first.

Regions move in phases, one phase after another; a phase starts only when every upgrade of the
previous one completed, so geo-paired regions (never in one phase) are never in flight together.
Within a region the scale sets go one after another, each with enableCrossZoneUpgrade off, so
the rollout never has two availability zones of a region in flight at once. A region waits until
the version is replicated to it (an extension version: published there). A Faulted upgrade stops
the rollout: upgrades in flight in the phase finish, nothing else starts, and the status says
which set stopped it and why. Each upgrade is a RollingUpgradeWorkflow (`rolling-upgrade/<set>`,
the set's lock) with startedBy Platform; a set another upgrade holds (another extension's
rollout, say) waits for its turn.

Hold stops new scale sets from starting (upgrades in flight go on); cancel also cancels the
upgrades in flight (each finishes its batch); a newer version supersedes the rollout at the same
safe point: between scale sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import (
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    from models import steps
    from models.automatic import (
        HOLD_SIGNAL,
        PING_SIGNAL,
        PLATFORM,
        RESUME_SIGNAL,
        ROLLOUT_CANCEL_SIGNAL,
        ROLLOUT_ENDED_SIGNAL,
        ROLLOUT_QUERY,
        ROLLOUT_WORKFLOW,
        SUPERSEDE_SIGNAL,
        WITHDRAWN_SIGNAL,
        Enrollment,
        Hold,
        HoldRequest,
        RolloutEnded,
        RolloutRequest,
        RolloutSet,
        RolloutSetState,
        RolloutState,
        RolloutStatus,
        SupersedeRequest,
        WithdrawnNotice,
        version_key,
    )
    from models.change import ExtensionRequest
    from models.errors import RefusalCode
    from models.fleet import HealthState
    from models.policy import RollingUpgradePolicy, format_duration
    from models.status import ApiError
    from models.upgrade import (
        CANCEL_SIGNAL,
        ROLLING_UPGRADE_WORKFLOW,
        WAVE_REPORT_SIGNAL,
        ZONE_PERMIT_SIGNAL,
        UpgradeReport,
        UpgradeRequest,
        WaveCoordination,
        WaveReport,
        ZonePermit,
        upgrade_workflow_id,
    )
    from workflows import activity_calls, search_attributes
    from workflows.phases import cohorts, paired
    from workflows.planner import unhealthy_allowance
    from workflows.presentation import escaped
    from workflows.waves import Decision, RegionWaves

# Patches: each id guards a change to the commands the workflow issues (README: "Changing
# workflow code safely").
# 2026-11: a set another upgrade holds (its `rolling-upgrade/<set>` lock) waits for its turn,
# trying again after a timer and steerable meanwhile, instead of being skipped.
WAIT_FOR_SET_LOCK = "wait-for-set-lock"
# 2026-12: the sets of a region upgrade at once in zone waves (cohorts of maxSetsPerRegion);
# a region the version has not reached holds back no other region and is skipped after the
# replication timeout; a set a user cancelled holds the rollout; the bake time between phases.
ZONE_WAVES = "zone-waves"

# Where a region is in a staged rollout: waiting for the version, for a geo-pair, upgrading, done.
REGION_REPLICATING, REGION_CLAIMING = "replicating", "claiming"
REGION_RUNNING, REGION_DONE = "running", "done"
# The code of a stop after the bake time (no Azure code: Azure's rollout has no bake check).
UNHEALTHY_AFTER_BAKE = "UnhealthyAfterBakeTime"

# An upgrade refused at admission touched nothing: the set is skipped, the rollout goes on.
REFUSALS = frozenset(code.value for code in RefusalCode)
# How often a set waiting for another upgrade of it to end tries to start its own: soon at first
# (the other may be about to end), then less and less often, to keep the history short.
SET_LOCK_POLL = (timedelta(seconds=5), timedelta(minutes=5))
# A set in one of these states has not started: when the rollout ends it is skipped.
WAITING = (
    RolloutSetState.PENDING,
    RolloutSetState.WAITING_FOR_REPLICATION,
    RolloutSetState.WAITING_FOR_SCALE_SET,
)


def upgrade_request(
    enrollment: Enrollment,
    target: str,
    extension: str | None = None,
    waves: WaveCoordination | None = None,
) -> UpgradeRequest:
    """The upgrade one enrolled set gets: its image to version `target`, or (given the
    extension's name in the set's model) that extension to version `target`. Its rolling upgrade
    policy when useRollingUpgradePolicy, else the seed's defaults; never across zones
    (availability first)."""
    policy = enrollment.policy
    automatic = policy.automatic_os_upgrade_policy
    rolling = (
        policy.rolling_upgrade_policy if automatic.use_rolling_upgrade_policy else RollingUpgradePolicy()
    )
    chosen = policy.model_copy(
        update={"rolling_upgrade_policy": rolling.model_copy(update={"enable_cross_zone_upgrade": False})}
    )
    if extension is not None:  # (deferral and notBeforeTimeout are OS image settings)
        wanted = [ExtensionRequest(name=extension, version=target)]
        return UpgradeRequest.from_policy(
            enrollment.scale_set, None, chosen, extensions=wanted, started_by=PLATFORM, waves=waves
        )
    assert enrollment.image_reference is not None
    image = enrollment.image_reference.model_copy(update={"version": target, "exact_version": None})
    return UpgradeRequest.from_policy(
        enrollment.scale_set,
        image,
        chosen,
        started_by=PLATFORM,
        deferral=bool(automatic.os_rolling_upgrade_deferral),
        not_before_timeout=enrollment.not_before_timeout,
        waves=waves,
    )


def upgrade_summary(item: RolloutSet, request: UpgradeRequest, rollout_id: str) -> str:
    """The Web UI's summary of the upgrade a rollout starts on one set: what it moves, whether it
    is a retry, and the rollout."""
    if request.extensions:
        [wanted] = request.extensions
        what = f"extension upgrade of {wanted.name} to {wanted.version}"
    else:
        what = f"OS upgrade to {request.target_image}"
    return f"{item.scale_set}: automatic {what}{item.retry_note} (rollout {rollout_id})"


@workflow.defn(name=ROLLOUT_WORKFLOW)
class RolloutWorkflow:
    @workflow.init
    def __init__(self, request: RolloutRequest) -> None:
        self._request = request
        self._enrollments = {e.scale_set: e for e in request.enrollments}
        phase_of = {region: n for n, phase in enumerate(request.phases, 1) for region in phase}
        self._status = RolloutStatus(
            workflow_id=workflow.info().workflow_id,
            source=request.source,
            version=request.version,
            phases=request.phases,
            extension=request.extension,
            retry=request.retry,
            sets=[
                RolloutSet(
                    scale_set=e.scale_set,
                    region=(e.location or "").lower(),
                    phase=phase_of.get((e.location or "").lower(), 0),
                    retry=request.retries.get(e.scale_set),
                )
                for e in sorted(request.enrollments, key=lambda e: e.scale_set)
            ],
            start_time=workflow.now(),
        )
        self._cancelled = False
        self._withdrawn: set[str] = set()
        self._cancel_on_start: set[str] = set()
        self._staged = False  # the zone-waves patch: decided at the start of the run
        self._cancel_sent: set[str] = set()  # sets the rollout itself asked to cancel
        self._waves_of: dict[str, RegionWaves] = {}  # each set in zone waves: its cohort's waves
        self._regions: dict[str, str] = {}  # region -> where it is (REGION_* below)
        self._running_regions: set[str] = set()

    # --- messages ---------------------------------------------------------------------------

    @workflow.query(name=ROLLOUT_QUERY)
    def rollout(self) -> RolloutStatus:
        return self._status

    @workflow.signal(name=HOLD_SIGNAL)
    def hold(self, request: HoldRequest | None = None) -> None:
        """No further scale set starts until `resume`. (These signals read a missing payload as
        the defaults: one sent bare from the Web UI must not fail the workflow task.)"""
        request = request or HoldRequest()
        if self._status.state not in (RolloutState.RUNNING, RolloutState.HELD):
            return
        self._status.hold = Hold(by=request.by, reason=request.reason, since=workflow.now())
        self._status.state = RolloutState.HELD
        self._publish()

    @workflow.signal(name=RESUME_SIGNAL)
    def resume(self, request: HoldRequest | None = None) -> None:
        if self._status.state == RolloutState.HELD:
            self._status.hold = None
            self._status.state = RolloutState.RUNNING
            self._publish()

    @workflow.signal(name=ROLLOUT_CANCEL_SIGNAL)
    async def cancel(self, request: HoldRequest | None = None) -> None:
        request = request or HoldRequest()
        if self._cancelled or self._status.end_time is not None:
            return
        self._cancelled = True
        workflow.logger.info("rollout cancelled by %s: %s", request.by, request.reason)
        for item in self._status.sets:
            if item.state == RolloutSetState.RUNNING and item.workflow_id:
                await self._cancel_set(item)
        self._publish()

    @workflow.signal(name=WAVE_REPORT_SIGNAL)
    def wave_report(self, report: WaveReport) -> None:
        """An upgrade in zone waves says which zones it has left (after admission, after a zone)."""
        waves = self._waves_of.get(report.scale_set)
        if waves is not None:
            waves.report(report)
            self._publish()

    @workflow.signal(name=PING_SIGNAL)
    def ping(self) -> None:
        """The watcher asks whether this rollout still runs (a signal to an ended one fails)."""

    @workflow.signal(name=SUPERSEDE_SIGNAL)
    def supersede(self, request: SupersedeRequest) -> None:
        if version_key(request.version) > version_key(self._request.version):
            self._status.superseded_by = request.version
            self._publish()

    @workflow.signal(name=WITHDRAWN_SIGNAL)
    async def withdrawn(self, notice: WithdrawnNotice) -> None:
        self._withdrawn.add(notice.scale_set)
        item = self._set(notice.scale_set)
        if not notice.cancel_in_flight or item is None:
            return
        self._cancel_on_start.add(notice.scale_set)
        if item.state == RolloutSetState.RUNNING and item.workflow_id:
            await self._cancel_set(item)

    # --- the rollout ------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: RolloutRequest) -> RolloutStatus:
        self._publish()
        self._staged = workflow.patched(ZONE_WAVES)
        if self._staged:
            await self._phases()
            return await self._end()
        for number, regions in enumerate(request.phases, 1):
            if self._stop_reason() is not None:
                break
            self._status.current_phase = number
            self._publish()
            await asyncio.gather(*(self._region(region) for region in regions))
        return await self._end()

    async def _region(self, region: str) -> None:
        for item in self._status.sets:
            if item.region != region:
                continue
            if not await self._may_start(item):
                continue
            if not await self._replicated(item):
                self._skip(item, self._stop_reason(item.scale_set) or "stopped")
                continue
            if await self._may_start(item):  # (held or stopped while waiting for replication?)
                await self._upgrade(item)

    async def _may_start(self, item: RolloutSet) -> bool:
        """Wait while the rollout is held; False (the set skipped) if it should not start."""
        await workflow.wait_condition(lambda: self._status.hold is None or self._stop_reason() is not None)
        if (reason := self._stop_reason(item.scale_set)) is not None:
            self._skip(item, reason)
            return False
        return True

    async def _replicated(self, item: RolloutSet) -> bool:
        """Wait until the version may be rolled in the set's region ('latest' there; an
        extension version: published there); False if stopped first."""
        while True:
            there, waiting = await self._available(item.region)
            if there:
                return True
            if item.state != RolloutSetState.WAITING_FOR_REPLICATION:
                item.state = RolloutSetState.WAITING_FOR_REPLICATION
                item.start_time = workflow.now()
                item.message = waiting
                self._publish()
            with contextlib.suppress(TimeoutError):  # the poll interval passed: look again
                await workflow.wait_condition(
                    lambda: self._stop_reason(item.scale_set) is not None,
                    timeout=self._request.replication_poll_interval,
                    timeout_summary=f"until {self._request.version} reaches {item.region}",
                )
                return False  # stopped while waiting

    async def _available(self, region: str) -> tuple[bool, str]:
        """Whether the version may be rolled in `region` now, and if not, what a set waits for."""
        version, extension = self._request.version, self._request.extension
        if extension is not None:
            query = steps.ExtensionVersionQuery(
                publisher=extension.publisher, type_=extension.type_, major=extension.major, region=region
            )
            [found] = await activity_calls.newest_extension_versions([query])
            return version in found.versions, (
                f"waiting for {extension.full_type} {version} to be published in {region} "
                f"(the newest {extension.major}.x there is {found.newest or 'none'})"
            )
        assert self._request.source is not None
        [latest] = await activity_calls.latest_versions(
            [steps.VersionQuery(source=self._request.source, region=region)]
        )
        there = latest.version is not None and version_key(latest.version) >= version_key(version)
        return (
            there,
            f"waiting for {version} to reach {region} ('latest' there is {latest.version or 'none'})",
        )

    # --- phases, regions and zone waves (the zone-waves patch) -----------------------------------

    async def _phases(self) -> None:
        """Phases one after another. A phase is over when each of its regions is done or still
        waiting for the version to reach it: such a region goes on waiting on its own and
        starts when the version arrives (never while a geo-pair of it is in flight), holding
        back no other region. Between phases, the bake time and a fresh look at health."""
        tasks: list[asyncio.Task[None]] = []
        for number, regions in enumerate(self._request.phases, 1):
            if self._stop_reason() is not None:
                break
            if number > 1 and not await self._bake(number - 1):
                break
            self._status.current_phase = number
            self._publish()
            tasks += [asyncio.create_task(self._waves_in(region)) for region in regions]
            await workflow.wait_condition(functools.partial(self._settled, regions))
        await asyncio.gather(*tasks)

    def _settled(self, regions: list[str]) -> bool:
        """A phase is over: each region done, or waiting for the version on its own."""
        return all(self._regions.get(r) in (REGION_REPLICATING, REGION_DONE) for r in regions)

    async def _waves_in(self, region: str) -> None:
        """One region: the version there, no geo-pair in flight, then its sets in zone waves, a
        cohort of at most maxSetsPerRegion sets at a time."""
        items = [item for item in self._status.sets if item.region == region]
        if await self._reached(region, items):
            self._regions[region] = REGION_CLAIMING
            await workflow.wait_condition(
                lambda: self._stop_reason() is not None or not self._pair_busy(region)
            )
            self._running_regions.add(region)
            self._regions[region] = REGION_RUNNING
            for cohort in cohorts((i.scale_set for i in items), self._request.max_sets_per_region):
                if self._stop_reason() is not None:
                    break  # (the end skips the sets left)
                waves = RegionWaves(region, cohort, self._request.max_instances_per_region)
                self._waves_of.update(dict.fromkeys(cohort, waves))
                members = (self._member(self._set_of(name), waves) for name in cohort)
                await asyncio.gather(self._coordinate(waves), *members)
        self._running_regions.discard(region)
        self._regions[region] = REGION_DONE
        self._status.waves.pop(region, None)
        self._publish()

    def _pair_busy(self, region: str) -> bool:
        """A geo-pair of `region` is in flight."""
        return any(paired(region, other, self._request.geo_pairs) for other in self._running_regions)

    async def _reached(self, region: str, items: list[RolloutSet]) -> bool:
        """Wait until the version may be rolled in `region`; False (its sets skipped) if the
        rollout stopped first or the replication timeout passed."""
        since = workflow.now()
        while True:
            there, waiting = await self._available(region)
            if there:
                return True
            self._regions[region] = REGION_REPLICATING
            for item in items:
                if item.state == RolloutSetState.PENDING:
                    item.state = RolloutSetState.WAITING_FOR_REPLICATION
                    item.start_time = since
                if item.state == RolloutSetState.WAITING_FOR_REPLICATION:
                    item.message = waiting
            self._publish()
            left = since + self._request.replication_timeout - workflow.now()
            if left <= timedelta(0):
                timeout = format_duration(self._request.replication_timeout)
                for item in items:
                    self._skip(item, f"skipped: {waiting.removeprefix('waiting for ')} after {timeout}")
                return False
            with contextlib.suppress(TimeoutError):  # the poll interval passed: look again
                await workflow.wait_condition(
                    lambda: self._stop_reason() is not None,
                    timeout=min(self._request.replication_poll_interval, left),
                    timeout_summary=f"until {self._request.version} reaches {region}",
                )
                for item in items:
                    self._skip(item, self._stop_reason(item.scale_set) or "stopped")
                return False

    async def _member(self, item: RolloutSet, waves: RegionWaves) -> None:
        """One set of a cohort: its upgrade, started when the rollout may start sets. (No
        `finally` here or in `_waves_in`: a workflow evicted from the worker's cache closes its
        coroutines outside the workflow's event loop.)"""
        if item.state in (RolloutSetState.PENDING, RolloutSetState.WAITING_FOR_REPLICATION) and (
            await self._may_start(item)
        ):
            waves_of = WaveCoordination(rollout_id=self._status.workflow_id, region=item.region)
            handle = await self._start(item, waves_of)
            if handle is not None:
                waves.started(item.scale_set)
                await self._follow(item, handle)
        waves.ended(item.scale_set)
        self._publish()

    async def _coordinate(self, waves: RegionWaves) -> None:
        """Send what the cohort's zone waves decide (permits; cancels when the rollout halts)
        each time something changes, until every set of the cohort has ended."""
        while True:
            await workflow.wait_condition(lambda: waves.finished or bool(self._decide(waves)))
            if waves.finished:
                return
            decision = self._decide(waves)
            waves.apply(decision)
            self._status.waves[waves.region] = waves.text()
            self._publish()
            for name in decision.cancels:
                await self._cancel_set(self._set_of(name))
            for name, zone in decision.permits:
                await self._signal(upgrade_workflow_id(name), ZONE_PERMIT_SIGNAL, ZonePermit(zone=zone))

    def _decide(self, waves: RegionWaves) -> Decision:
        """A fault or a cancel stops the sets in flight after their batch; a newer version (or
        an opt-out) only keeps new sets from starting, as between scale sets before."""
        halting = self._status.stopped_by is not None or self._cancelled
        return waves.decide(held=self._status.hold is not None, stopping=halting)

    async def _bake(self, phase: int) -> bool:
        """After phase `phase`: wait the bake time, then read the health of every set the
        earlier phases upgraded; one that turned unhealthy stops the rollout. True to go on."""
        bake = self._request.phase_bake_time
        done = [s for s in self._status.sets if s.phase <= phase and s.state == RolloutSetState.COMPLETED]
        if bake <= timedelta(0) or not done:
            return True
        self._status.bake_until = workflow.now() + bake
        self._publish()
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._stop_reason() is not None,
                timeout=bake,
                timeout_summary=f"bake time after phase {phase}",
            )
        self._status.bake_until = None
        if self._stop_reason() is not None:
            return False
        readings = await asyncio.gather(*(activity_calls.read_health(s.scale_set) for s in done))
        for item, reading in zip(done, readings, strict=True):
            policy = self._enrollments[item.scale_set].policy.rolling_upgrade_policy
            states = list(reading.health.values())
            unhealthy = sum(state != HealthState.HEALTHY for state in states)
            allowed = unhealthy_allowance(len(states), policy.max_unhealthy_upgraded_instance_percent)
            if unhealthy > allowed and self._status.stopped_by is None:
                percent = 100 * unhealthy // max(1, len(states))
                item.message = f"{item.message or ''}; unhealthy after the bake time".lstrip("; ")
                self._status.stopped_by = ApiError(
                    code=UNHEALTHY_AFTER_BAKE,
                    message=(
                        f"after the bake time of {format_duration(bake)}, {item.scale_set} in "
                        f"{item.region} (phase {item.phase}) has {unhealthy} of {len(states)} "
                        f"instances unhealthy ({percent}%); maxUnhealthyUpgradedInstancePercent "
                        f"allows {policy.max_unhealthy_upgraded_instance_percent}%: phase "
                        f"{phase + 1} not started"
                    ),
                    target=item.scale_set,
                )
        self._publish()
        return self._status.stopped_by is None

    # --- one set's upgrade ------------------------------------------------------------------------

    async def _upgrade(self, item: RolloutSet) -> None:
        handle = await self._start(item)
        if handle is None:
            return
        await self._follow(item, handle)

    async def _follow(
        self, item: RolloutSet, handle: workflow.ChildWorkflowHandle[object, UpgradeReport]
    ) -> None:
        """Follow a started upgrade to its end and record it."""
        item.state = RolloutSetState.RUNNING
        item.start_time = workflow.now()
        item.message = f"upgrading to {self._request.version}{item.retry_note}"
        self._publish()
        if self._cancelled or item.scale_set in self._cancel_on_start:
            await self._cancel_set(item)  # asked while it was starting
        try:
            report: UpgradeReport = await handle
        except ChildWorkflowError as err:
            cause = err.cause
            if self._staged and isinstance(cause, CancelledError):  # a cancel request (Web UI)
                self._cancelled_set(item, "a cancel request (the Web UI, or `temporal workflow cancel`)")
                return
            code = cause.type if isinstance(cause, ApplicationError) and cause.type else "UpgradeFailed"
            message = cause.message if isinstance(cause, FailureError) else str(err)
            if code in REFUSALS:  # refused at admission: nothing was touched, the rollout goes on
                self._skip(item, f"refused, nothing touched: {code}: {message}")
                return
            item.state = RolloutSetState.FAULTED
            item.message = f"{code}: {message}"
            if self._status.stopped_by is None:
                phase = f"phase {item.phase}" if item.phase else "its phase"
                self._status.stopped_by = ApiError(
                    code=code,
                    message=f"the upgrade of {item.scale_set} in {item.region} ({phase}) faulted: {message}",
                    target=item.scale_set,
                )
        else:
            properties = report.status.properties
            cancelled = properties is not None and properties.running_status.code == "Cancelled"
            if cancelled and self._staged:
                self._cancelled_set(item, report.cancelled_by or "someone")
                return
            item.state = RolloutSetState.CANCELLED if cancelled else RolloutSetState.COMPLETED
            item.message = (
                f"{'cancelled' if cancelled else 'upgraded'} to {self._request.version}{item.retry_note}"
            )
        item.end_time = workflow.now()
        self._publish()

    def _cancelled_set(self, item: RolloutSet, by: str) -> None:
        """A set's upgrade ended cancelled. Cancelled by the rollout (it stopped, the set opted
        out), it is recorded; cancelled by someone else, the rollout holds until `rollout
        resume` (on without that set) or `rollout cancel`."""
        item.state = RolloutSetState.CANCELLED
        item.end_time = workflow.now()
        why = self._stop_reason(item.scale_set)
        if item.scale_set in self._cancel_sent or why is not None:
            item.message = f"cancelled after its batch in flight: {why or 'stopped'}"
        else:
            item.message = f"cancelled by {by}"
            if self._status.end_time is None:
                self._status.hold = Hold(
                    by=by,
                    reason=(
                        f"the upgrade of {item.scale_set} ({item.region}) was cancelled by {by}: "
                        "`rollout resume` goes on without it, `rollout cancel` ends the rollout"
                    ),
                    since=workflow.now(),
                )
                self._status.state = RolloutState.HELD
        self._publish()

    async def _start(
        self, item: RolloutSet, waves: WaveCoordination | None = None
    ) -> workflow.ChildWorkflowHandle[object, UpgradeReport] | None:
        """Start the set's upgrade; while another upgrade holds the set, wait for its turn.
        None when the set was skipped instead (the rollout stopped, was cancelled or
        superseded, or the set opted out, meanwhile)."""
        extension = self._request.extension
        name = extension.names.get(item.scale_set) if extension is not None else None
        request = upgrade_request(self._enrollments[item.scale_set], self._request.version, name, waves)
        summary = upgrade_summary(item, request, self._status.workflow_id)
        item.workflow_id = upgrade_workflow_id(item.scale_set)
        poll = timedelta(0)
        while True:
            try:
                return await workflow.start_child_workflow(
                    ROLLING_UPGRADE_WORKFLOW,
                    request,
                    id=item.workflow_id,
                    result_type=UpgradeReport,
                    # The upgrade outlives a cancelled or terminated rollout: its batch in flight
                    # finishes (a cancel is sent to it as a signal instead).
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=summary,
                    search_attributes=search_attributes.at_start(
                        item.scale_set, request.change_asked, PLATFORM
                    ),
                )
            except WorkflowAlreadyStartedError:
                if not workflow.patched(WAIT_FOR_SET_LOCK):
                    self._skip(
                        item, f"another upgrade holds it ({item.workflow_id}): the watcher tries again later"
                    )
                    return None
            poll = min(2 * poll, SET_LOCK_POLL[1]) if poll else SET_LOCK_POLL[0]
            if not await self._wait_for_set(item, poll):
                return None

    async def _wait_for_set(self, item: RolloutSet, poll: timedelta) -> bool:
        """Another upgrade holds the set: wait `poll` (a hold, a stop or a cancel ends the wait
        at once, and a hold lasts until resumed); False if the set was skipped meanwhile."""
        if item.state != RolloutSetState.WAITING_FOR_SCALE_SET:
            item.state = RolloutSetState.WAITING_FOR_SCALE_SET
            item.message = f"waiting for {item.workflow_id} to finish (another upgrade holds the scale set)"
            self._publish()
        with contextlib.suppress(TimeoutError):  # its turn, perhaps: try to start again
            await workflow.wait_condition(
                lambda: self._stop_reason(item.scale_set) is not None or self._status.hold is not None,
                timeout=poll,
                timeout_summary=f"until {item.workflow_id} finishes",
            )
        return await self._may_start(item)

    def _stop_reason(self, scale_set: str | None = None) -> str | None:
        """Why no further scale set starts, if it should not."""
        if self._status.stopped_by is not None:
            return "not started: the rollout stopped at " + (self._status.stopped_by.target or "a fault")
        if self._cancelled:
            return "not started: the rollout was cancelled"
        if self._status.superseded_by is not None:
            return f"not started: {self._status.superseded_by} superseded this rollout"
        if scale_set is not None and scale_set in self._withdrawn:
            return "not started: the scale set opted out of automatic upgrades"
        return None

    def _skip(self, item: RolloutSet, reason: str) -> None:
        item.state = RolloutSetState.SKIPPED
        item.message = reason
        item.end_time = workflow.now()
        self._publish()

    async def _end(self) -> RolloutStatus:
        status = self._status
        for item in status.sets:
            if item.state in WAITING:
                self._skip(item, self._stop_reason(item.scale_set) or "not started")
        if status.stopped_by is not None:
            status.state = RolloutState.FAULTED
        elif self._cancelled:
            status.state = RolloutState.CANCELLED
        elif status.superseded_by is not None:
            status.state = RolloutState.SUPERSEDED
        else:
            status.state = RolloutState.COMPLETED
        status.hold = None
        status.end_time = workflow.now()
        self._publish()
        message = status.stopped_by.message if status.stopped_by else None
        if status.superseded_by:
            message = f"superseded by {status.superseded_by}"
        ended = RolloutEnded(
            workflow_id=status.workflow_id,
            source_key=self._request.source_key,
            version=self._request.version,
            state=status.state,
            sets=status.sets,
            message=message,
            end_time=status.end_time,
            extension=self._request.extension,
        )
        parent = workflow.info().parent  # the watcher; by id, so its latest run (continue-as-new)
        if parent is not None:
            await self._signal(parent.workflow_id, ROLLOUT_ENDED_SIGNAL, ended)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.logger.info("rollout ended: %s", status.state.value)
        return status

    def _set(self, scale_set: str) -> RolloutSet | None:
        return next((s for s in self._status.sets if s.scale_set == scale_set), None)

    def _set_of(self, scale_set: str) -> RolloutSet:
        item = self._set(scale_set)
        assert item is not None
        return item

    async def _cancel_set(self, item: RolloutSet) -> None:
        """Ask a set's upgrade to stop (its batch in flight finishes); the rollout knows it asked."""
        self._cancel_sent.add(item.scale_set)
        waves = self._waves_of.get(item.scale_set)
        if waves is not None:
            waves.members[item.scale_set].cancelled = True
        if item.workflow_id:
            await self._signal(item.workflow_id, CANCEL_SIGNAL)

    def _publish(self) -> None:
        workflow.set_current_details(details(self._status, workflow.info().namespace))

    async def _signal(self, workflow_id: str, signal: str, arg: object = None) -> None:
        try:
            handle = workflow.get_external_workflow_handle(workflow_id)
            await (handle.signal(signal) if arg is None else handle.signal(signal, arg))
        except FailureError as err:  # it ended meanwhile
            workflow.logger.info("could not signal %s: %s", workflow_id, err)


def details(status: RolloutStatus, namespace: str) -> str:
    """The Web UI's current details: what rolls (a retry: of what failure), a summary per
    phase, a line per scale set with a link down to its upgrade."""
    lines = [f"**{escaped(status.subject)}**: {status.state.value}"]
    if status.retry:
        lines.append(escaped(status.retry.text(status.version)))
    if status.hold:
        hold, since = status.hold, status.hold.since.isoformat(timespec="seconds")
        lines.append(f"held by {escaped(hold.by)} since {since}: {escaped(hold.reason)}")
    if status.stopped_by:
        lines.append(f"stopped: {escaped(status.stopped_by.message or str(status.stopped_by.code))}")
    if status.superseded_by:
        lines.append(f"superseded by {status.superseded_by}")
    for number, regions in enumerate(status.phases, 1):
        members = [s for s in status.sets if s.phase == number]
        done = sum(s.state == RolloutSetState.COMPLETED for s in members)
        lines.append("")
        lines.append(f"Phase {number} ({', '.join(regions)}): {done} of {len(members)} scale sets upgraded")
        for item in members:
            target = item.workflow_id or upgrade_workflow_id(item.scale_set)
            link = f"/namespaces/{namespace}/workflows/{target.replace('/', '%2F')}"
            lines.append(f"- [{item.scale_set}]({link}) ({item.region}): {item.state.value}{item.retry_note}")
    return "\n".join(lines)
