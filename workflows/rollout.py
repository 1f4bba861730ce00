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
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import (
    ChildWorkflowError,
)

with workflow.unsafe.imports_passed_through():
    from models import steps
    from models.automatic import (
        COHORT_NEWS_SIGNAL,
        COHORT_WORKFLOW,
        HOLD_SIGNAL,
        PING_SIGNAL,
        RESUME_SIGNAL,
        ROLLOUT_CANCEL_SIGNAL,
        ROLLOUT_ENDED_SIGNAL,
        ROLLOUT_QUERY,
        ROLLOUT_WORKFLOW,
        STEER_SIGNAL,
        SUPERSEDE_SIGNAL,
        WITHDRAWN_SIGNAL,
        CohortNews,
        CohortRequest,
        CohortStatus,
        Hold,
        HoldRequest,
        RolloutEnded,
        RolloutRequest,
        RolloutSet,
        RolloutSetState,
        RolloutState,
        RolloutStatus,
        Steering,
        SupersedeRequest,
        WithdrawnNotice,
    )
    from models.change import version_key
    from models.policy import format_duration
    from models.status import ApiError
    from models.upgrade import (
        upgrade_workflow_id,
    )
    from rules.phases import paired
    from rules.planner import upgraded_limit
    from rules.presentation import escaped, workflow_link
    from rules.waves import cohorts
    from workflows import activity_calls
    from workflows.set_upgrades import SetUpgrades, rolling_policy

# Patches: each id guards a change to the commands the workflow issues (docs/maintaining.md:
# "Changing workflow code safely").
# 2026-12: the sets of a region upgrade at once in zone waves (cohorts of maxSetsPerRegion);
# a region the version has not reached holds back no other region and is skipped after the
# replication timeout; a set a user cancelled holds the rollout; the bake time between phases.
ZONE_WAVES = "zone-waves"

# Where a region is in a staged rollout: waiting for the version, for a geo-pair, upgrading, done.
REGION_REPLICATING, REGION_CLAIMING = "replicating", "claiming"
REGION_RUNNING, REGION_DONE = "running", "done"
# The Web UI's details list at most this many sets per phase (the rest are counted).
DETAILS_SETS_PER_PHASE = 25
# The longest pause between two looks whether a version reached the regions waiting for it.
REPLICATION_POLL_CEILING = timedelta(hours=1)
# The code of a stop after the bake time (no Azure code: Azure's rollout has no bake check).
UNHEALTHY_AFTER_BAKE = "UnhealthyAfterBakeTime"

# A set in one of these states has not started: when the rollout ends it is skipped.
WAITING = (
    RolloutSetState.PENDING,
    RolloutSetState.WAITING_FOR_REPLICATION,
    RolloutSetState.WAITING_FOR_SCALE_SET,
)


# Auto-upgrade: a rollout lasts days; it moves to the current build at its next workflow task
# (changes to it go behind workflow.patched). The upgrades it starts are pinned to their build.
@workflow.defn(name=ROLLOUT_WORKFLOW, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class RolloutWorkflow(SetUpgrades):
    @workflow.init
    def __init__(self, request: RolloutRequest) -> None:
        self._request = request
        self._enrollments = {e.scale_set: e for e in request.enrollments}
        self._version = request.version
        self._extension = request.extension
        self._rollout_id = workflow.info().workflow_id
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
        self._cancel_sent: set[str] = set()  # sets the rollout itself asked to cancel
        self._regions: dict[str, str] = {}  # region -> where it is (REGION_* below)
        self._running_regions: set[str] = set()
        self._steered = Steering()  # what the cohorts in flight were last told
        # Regions waiting for the version: since when; and, once the wait ended, how (True: it
        # arrived; a text: skipped, why; None: the rollout stopped).
        self._waiting_since: dict[str, datetime] = {}
        self._replicated_to: dict[str, bool | str | None] = {}
        self._watching: asyncio.Task[None] | None = None
        self._phases_done = False

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

    @workflow.signal(name=COHORT_NEWS_SIGNAL)
    def cohort_news(self, news: CohortNews) -> None:
        """A cohort says at once that a set faulted (the rollout stops) or that someone else
        cancelled one (the rollout holds); the cohorts in flight are told (`_steer`)."""
        self._record(news.item)
        if news.fault is not None and self._status.stopped_by is None:
            self._status.stopped_by = news.fault
        if news.hold is not None and not self._cancelled and self._status.end_time is None:
            self._status.hold, self._status.state = news.hold, RolloutState.HELD
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
        if workflow.patched(ZONE_WAVES):
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

    async def _replicated(self, item: RolloutSet) -> bool:
        """Wait until the version may be rolled in the set's region ('latest' there; an
        extension version: published there); False if stopped first."""
        while True:
            there, waiting = (await self._available([item.region]))[item.region]
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

    async def _available(self, regions: list[str]) -> dict[str, tuple[bool, str]]:
        """Per region, whether the version may be rolled there now, and if not, what its sets
        wait for (one activity for all the regions)."""
        version, extension = self._request.version, self._request.extension
        if extension is not None:
            queries = [
                steps.ExtensionVersionQuery(
                    publisher=extension.publisher, type_=extension.type_, major=extension.major, region=region
                )
                for region in regions
            ]
            found = await activity_calls.newest_extension_versions(queries)
            return {
                region: (
                    version in one.versions,
                    f"waiting for {extension.full_type} {version} to be published in {region} "
                    f"(the newest {extension.major}.x there is {one.newest or 'none'})",
                )
                for region, one in zip(regions, found, strict=True)
            }
        assert self._request.source is not None
        source = self._request.source
        latest = await activity_calls.latest_versions(
            [steps.VersionQuery(source=source, region=region) for region in regions]
        )
        return {
            region: (
                one.version is not None and version_key(one.version) >= version_key(version),
                f"waiting for {version} to reach {region} ('latest' there is {one.version or 'none'})",
            )
            for region, one in zip(regions, latest, strict=True)
        }

    # --- phases, regions and zone waves (the zone-waves patch) -----------------------------------

    async def _phases(self) -> None:
        """Phases one after another. A phase is over when each of its regions is done or still
        waiting for the version to reach it: such a region goes on waiting on its own and
        starts when the version arrives (never while a geo-pair of it is in flight), holding
        back no other region. Between phases, the bake time and a fresh look at health."""
        steering = asyncio.create_task(self._steer())
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
        self._phases_done = True
        await steering

    def _settled(self, regions: list[str]) -> bool:
        """A phase is over: each region done, or waiting for the version on its own."""
        return all(self._regions.get(r) in (REGION_REPLICATING, REGION_DONE) for r in regions)

    async def _waves_in(self, region: str) -> None:
        """One region: the version there, no geo-pair in flight, then its sets in zone waves, a
        cohort (a child workflow) of at most maxSetsPerRegion sets at a time. (No `finally`: a
        workflow evicted from the worker's cache closes its coroutines outside its loop.)"""
        items = [item for item in self._status.sets if item.region == region]
        if await self._reached(region, items):
            self._regions[region] = REGION_CLAIMING
            await workflow.wait_condition(
                lambda: self._stop_reason() is not None or not self._pair_busy(region)
            )
            self._running_regions.add(region)
            self._regions[region] = REGION_RUNNING
            names = (i.scale_set for i in items)
            for number, cohort in enumerate(cohorts(names, self._request.max_sets_per_region), 1):
                if self._stop_reason() is not None:
                    break  # (the end skips the sets left)
                await self._cohort(region, number, [self._set_of(name) for name in cohort])
        self._running_regions.discard(region)
        self._regions[region] = REGION_DONE
        self._publish()

    async def _cohort(self, region: str, number: int, items: list[RolloutSet]) -> None:
        """Run one cohort as a child workflow and take its sets' ends from its result."""
        cohort_id = f"{self._status.workflow_id}/{region}/cohort-{number}"
        request = CohortRequest(
            rollout_id=self._status.workflow_id,
            region=region,
            number=number,
            version=self._request.version,
            extension=self._request.extension,
            enrollments=[self._enrollments[item.scale_set] for item in items],
            sets=[item.model_copy() for item in items],
            max_instances_per_region=self._request.max_instances_per_region,
            steering=self._steering(),
        )
        names = ", ".join(item.scale_set for item in items)
        self._status.cohorts.append(cohort_id)
        for item in items:  # in flight in the cohort: its own status has each set's progress
            if item.state in WAITING:
                item.state, item.start_time = RolloutSetState.RUNNING, workflow.now()
                item.message = f"in cohort {number} of {region} ({cohort_id})"
        self._publish()
        try:
            ended = await workflow.execute_child_workflow(
                COHORT_WORKFLOW,
                request,
                id=cohort_id,
                result_type=CohortStatus,
                static_summary=f"{self._status.subject} in {region}, cohort {number}: {names}",
            )
        except ChildWorkflowError as err:  # terminated, say: its sets' ends are unknown
            for item in (self._set_of(i.scale_set) for i in items):  # (news may have replaced it)
                if item.state == RolloutSetState.RUNNING:
                    self._skip(item, f"its cohort {cohort_id} ended without its end: see its upgrade")
            if self._status.stopped_by is None:
                self._status.stopped_by = ApiError(
                    code="CohortFailed",
                    message=f"cohort {number} of {region} ({cohort_id}) ended without its sets' ends: {err}",
                    target=cohort_id,
                )
        else:
            for done in ended.sets:
                self._record(done)
        self._status.cohorts.remove(cohort_id)
        self._publish()

    def _steering(self) -> Steering:
        """What the cohorts are told: the hold, a halt, why no new set starts, the opt-outs."""
        return Steering(
            hold=self._status.hold,
            halted=self._status.stopped_by is not None or self._cancelled,
            stop_reason=self._stop_reason(),
            withdrawn=sorted(self._withdrawn),
            cancel_in_flight=sorted(self._cancel_on_start),
        )

    async def _steer(self) -> None:
        """Tell the cohorts in flight each change of the steering, until the phases are done."""
        while True:
            await workflow.wait_condition(lambda: self._phases_done or self._steering() != self._steered)
            if self._phases_done:
                return
            self._steered = self._steering()
            for cohort_id in list(self._status.cohorts):
                await self._signal(cohort_id, STEER_SIGNAL, self._steered)

    def _pair_busy(self, region: str) -> bool:
        """A geo-pair of `region` is in flight."""
        return any(paired(region, other, self._request.geo_pairs) for other in self._running_regions)

    async def _reached(self, region: str, items: list[RolloutSet]) -> bool:
        """Wait until the version may be rolled in `region`; False (its sets skipped) if the
        rollout stopped first or the replication timeout passed. The regions waiting are looked
        at together (`_watch_replication`)."""
        there, waiting = (await self._available([region]))[region]
        if there:
            return True
        self._regions[region] = REGION_REPLICATING
        self._waiting_since[region] = workflow.now()
        self._waiting_for(region, waiting)
        if self._watching is None or self._watching.done():  # (it ends when no region waits)
            self._watching = asyncio.create_task(self._watch_replication())
        await workflow.wait_condition(lambda: region not in self._waiting_since)
        outcome = self._replicated_to.pop(region)
        if outcome is True:
            return True
        for item in items:
            self._skip(item, outcome or self._stop_reason(item.scale_set) or "stopped")
        return False

    def _waiting_for(self, region: str, waiting: str) -> None:
        for item in self._status.sets:
            if item.region == region and item.state in (
                RolloutSetState.PENDING,
                RolloutSetState.WAITING_FOR_REPLICATION,
            ):
                item.state = RolloutSetState.WAITING_FOR_REPLICATION
                item.start_time = item.start_time or self._waiting_since[region]
                item.message = waiting
        self._publish()

    async def _watch_replication(self) -> None:
        """Look whether the version reached the regions waiting for it, all in one activity:
        every replicationPollInterval at first, then less and less often (at most hourly), so
        a week's wait adds a few hundred events, not thousands. A region it reached starts; one
        past the replication timeout has its sets skipped; a stop ends every wait."""
        interval = self._request.replication_poll_interval
        ceiling = max(interval, REPLICATION_POLL_CEILING)
        timeout = self._request.replication_timeout
        while self._waiting_since:
            first_deadline = min(self._waiting_since.values()) + timeout
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._stop_reason() is not None,
                    timeout=max(min(interval, first_deadline - workflow.now()), timedelta(seconds=1)),
                    timeout_summary=f"until {self._request.version} reaches "
                    + ", ".join(sorted(self._waiting_since)),
                )
            regions = sorted(self._waiting_since)
            if self._stop_reason() is not None:
                self._replicated_to.update(dict.fromkeys(regions, None))
                self._waiting_since.clear()
                break
            found = await self._available(regions)
            for region in regions:
                there, waiting = found[region]
                if there:
                    self._replicated_to[region] = True
                elif workflow.now() >= self._waiting_since[region] + timeout:
                    what = waiting.removeprefix("waiting for ")
                    self._replicated_to[region] = f"skipped: {what} after {format_duration(timeout)}"
                else:
                    self._waiting_for(region, waiting)
                    continue
                del self._waiting_since[region]
            interval = min(2 * interval, ceiling)

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
        summaries = await activity_calls.summarize_health([s.scale_set for s in done])
        for item, summary in zip(done, summaries, strict=True):
            policy = rolling_policy(self._enrollments[item.scale_set])
            limit = upgraded_limit(summary.instances, policy)
            if summary.unhealthy > limit.allowed and self._status.stopped_by is None:
                percent = 100 * summary.unhealthy // max(1, summary.instances)
                item.message = f"{item.message or ''}; unhealthy after the bake time".lstrip("; ")
                self._status.stopped_by = ApiError(
                    code=UNHEALTHY_AFTER_BAKE,
                    message=(
                        f"after the bake time of {format_duration(bake)}, {item.scale_set} in "
                        f"{item.region} (phase {item.phase}) has {summary.unhealthy} of "
                        f"{summary.instances} instances unhealthy ({percent}%); "
                        f"{limit.field} allows {limit.shown}: phase {phase + 1} not started"
                    ),
                    target=item.scale_set,
                )
        self._publish()
        return self._status.stopped_by is None

    async def _upgrade(self, item: RolloutSet) -> None:
        handle = await self._start(item)
        if handle is not None:
            await self._follow(item, handle)

    # --- SetUpgrades' hooks -------------------------------------------------------------------

    def _held(self) -> bool:
        return self._status.hold is not None

    async def _faulted(self, item: RolloutSet, error: ApiError) -> None:
        if self._status.stopped_by is None:
            self._status.stopped_by = error

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

    def _record(self, news: RolloutSet) -> None:
        """A set as its cohort last said."""
        sets = self._status.sets
        for index, item in enumerate(sets):
            if item.scale_set == news.scale_set:
                sets[index] = news

    def _set_of(self, scale_set: str) -> RolloutSet:
        item = self._set(scale_set)
        assert item is not None
        return item

    def _publish(self) -> None:
        workflow.set_current_details(details(self._status, workflow.info().namespace))


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
    if status.bake_until:
        lines.append(f"baking until {status.bake_until.isoformat(timespec='seconds')}")
    for cohort in status.cohorts:  # each with its sets' progress and its zone wave
        lines.append(f"- cohort in flight: [{escaped(cohort)}]({workflow_link(namespace, cohort)})")
    for number, regions in enumerate(status.phases, 1):
        members = [s for s in status.sets if s.phase == number]
        done = sum(s.state == RolloutSetState.COMPLETED for s in members)
        lines.append("")
        lines.append(f"Phase {number} ({', '.join(regions)}): {done} of {len(members)} scale sets upgraded")
        # At fleet scale the details stay short: the sets not simply done or waiting come first.
        shown = sorted(members, key=lambda s: s.state in (RolloutSetState.COMPLETED, RolloutSetState.PENDING))
        for item in shown[:DETAILS_SETS_PER_PHASE]:
            link = workflow_link(namespace, item.workflow_id or upgrade_workflow_id(item.scale_set))
            lines.append(f"- [{item.scale_set}]({link}) ({item.region}): {item.state.value}{item.retry_note}")
        if len(shown) > DETAILS_SETS_PER_PHASE:
            lines.append(f"- and {len(shown) - DETAILS_SETS_PER_PHASE} more (`upgradectl rollout show`)")
    return "\n".join(lines)
