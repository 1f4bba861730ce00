"""RolloutCohortWorkflow: one cohort (at most maxSetsPerRegion sets) of one region in a rollout,
upgraded at once in zone waves. A child of RolloutWorkflow, so each run's history grows with one
cohort's sets, never with the whole fleet: a rollout over a thousand sets is a few dozen cohorts.

Each set's upgrade (a RollingUpgradeWorkflow, the set's lock, startedBy Platform) asks this
workflow for each zone (`wave_report`) and upgrades it only when permitted (`zone_permit`); the
pure decisions are `rules.waves.RegionWaves`. The rollout steers it (`steer`: hold, halt,
no new sets, opt-outs) and hears at once from it when a set faults or someone else cancels one
(`cohort_news`); the cohort's sets as they ended are its result.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from models.automatic import (
        COHORT_NEWS_SIGNAL,
        COHORT_QUERY,
        COHORT_WORKFLOW,
        STEER_SIGNAL,
        CohortNews,
        CohortRequest,
        CohortStatus,
        Hold,
        RolloutSet,
        RolloutSetState,
        Steering,
    )
    from models.status import ApiError
    from models.upgrade import (
        WAVE_REPORT_SIGNAL,
        ZONE_PERMIT_SIGNAL,
        WaveCoordination,
        WaveReport,
        ZoneOpening,
        ZonePermit,
        upgrade_workflow_id,
    )
    from rules.presentation import escaped, workflow_link
    from rules.waves import OPENING_ZONE, Decision, RegionWaves
    from workflows.set_upgrades import SetUpgrades

# Patches (docs/maintaining.md: "Changing workflow code"). 2026-12: a wave's permits go out
# together, in one workflow task, instead of one after another (each waited for the server's
# acknowledgement: the eighth set of a wave started half a second after the first).
PERMITS_TOGETHER = "permits-together"
# 2026-12: a wave's permits go to the sets with the largest batch in the zone first (name order
# before): the permits reach their sets one after another, and the set likely to take longest
# should not be the last to start. Decided at the cohort's start.
LARGEST_FIRST = "largest-first"
# 2026-12: the first zone wave is permitted with each set's start (RegionWaves.open), not after
# its report: a report and a permit less before the first batch of every set of a phase.
# Decided at the cohort's start.
OPENING = "zone-opening"


# Auto-upgrade, like the rollout it belongs to.
@workflow.defn(name=COHORT_WORKFLOW, versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class RolloutCohortWorkflow(SetUpgrades):
    _cancel_holds = True

    @workflow.init
    def __init__(self, request: CohortRequest) -> None:
        self._request = request
        self._enrollments = {e.scale_set: e for e in request.enrollments}
        self._version = request.version
        self._extension = request.extension
        self._rollout_id = request.rollout_id
        self._steering = request.steering
        self._cancelled = request.steering.halted
        self._cancel_on_start = set(request.steering.cancel_in_flight)
        self._cancel_sent: set[str] = set()
        self._fault: ApiError | None = None  # a set of this cohort faulted: it halts at once
        self._hold: Hold | None = None  # a set of this cohort was cancelled by someone else
        self._hold_told = False  # the rollout holds for it: its resume ends this hold too
        self._sets = {item.scale_set: item for item in request.sets}
        self._waves = RegionWaves(request.region, list(self._sets), request.max_instances_per_region)
        self._largest_first = False  # (decided when the run starts: LARGEST_FIRST)
        self._opening = False  # (decided when the run starts: OPENING)

    # --- messages -----------------------------------------------------------------------------

    @workflow.query(name=COHORT_QUERY)
    def cohort(self) -> CohortStatus:
        return CohortStatus(
            workflow_id=workflow.info().workflow_id,
            region=self._request.region,
            number=self._request.number,
            wave=self._waves.text() if not self._waves.finished else None,
            sets=list(self._sets.values()),
            fault=self._fault,
        )

    @workflow.signal(name=STEER_SIGNAL)
    def steer(self, steering: Steering) -> None:
        self._steering = steering
        self._cancelled = self._cancelled or steering.halted
        self._cancel_on_start.update(steering.cancel_in_flight)
        if steering.hold is not None and self._hold is not None:
            self._hold_told = True
        elif steering.hold is None and self._hold_told:
            self._hold, self._hold_told = None, False  # resumed: on without the cancelled set
        self._publish()

    @workflow.signal(name=WAVE_REPORT_SIGNAL)
    def wave_report(self, report: WaveReport) -> None:
        """An upgrade says which zones it has left (after admission, after each zone)."""
        self._waves.report(report)
        self._publish()

    # --- the cohort -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: CohortRequest) -> CohortStatus:
        self._largest_first = workflow.patched(LARGEST_FIRST)
        self._opening = workflow.patched(OPENING)
        self._publish()
        await asyncio.gather(self._coordinate(), *(self._member(item) for item in self._sets.values()))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.cohort()

    async def _member(self, item: RolloutSet) -> None:
        """One set: its upgrade, started when the rollout may start sets. (No `finally`: a
        workflow evicted from the worker's cache closes its coroutines outside its loop.)"""
        if await self._may_start(item):
            waves = WaveCoordination(
                rollout_id=workflow.info().workflow_id, region=item.region, opening=self._open(item)
            )
            handle = await self._start(item, waves)
            if handle is not None:
                self._waves.started(item.scale_set)
                await self._follow(item, handle)
        self._waves.ended(item.scale_set)
        self._publish()

    async def _coordinate(self) -> None:
        """Send what the zone waves decide (permits; cancels when the rollout halts) each time
        something changes, until every set of the cohort has ended."""
        waves = self._waves
        while True:
            await workflow.wait_condition(lambda: waves.finished or bool(self._decision()))
            if waves.finished:
                return
            decision = self._decision()
            waves.apply(decision)
            self._publish()
            for name in decision.cancels:
                await self._cancel_set(self._sets[name])
            permits = [
                self._signal(upgrade_workflow_id(name), ZONE_PERMIT_SIGNAL, ZonePermit(zone=zone))
                for name, zone in decision.permits
            ]
            if permits and workflow.patched(PERMITS_TOGETHER):
                await asyncio.gather(*permits)
            else:
                for permit in permits:
                    await permit

    def _open(self, item: RolloutSet) -> ZoneOpening | None:
        """The first zone wave, permitted with the set's start when the waves allow (not while
        held, halting or cancelling it)."""
        if not self._opening or self._held() or self._halting():
            return None
        if item.scale_set in self._cancel_on_start:
            return None
        share = self._waves.open(item.scale_set)
        return ZoneOpening(zone=OPENING_ZONE, instances=share) if share is not None else None

    def _close_opening(self, item: RolloutSet) -> None:
        self._waves.close(item.scale_set)

    def _halting(self) -> bool:
        """The rollout was cancelled or a set of this cohort faulted: no set goes further."""
        return self._cancelled or self._fault is not None

    def _decision(self) -> Decision:
        """A fault or a cancel stops the sets in flight after their batch (and an opt-out with
        cancel, its set); a newer version or an opt-out only keeps new sets from starting."""
        return self._waves.decide(
            held=self._held(),
            stopping=self._halting(),
            cancel=self._cancel_on_start,
            largest_first=self._largest_first,
        )

    # --- SetUpgrades' hooks -------------------------------------------------------------------

    def _stop_reason(self, scale_set: str | None = None) -> str | None:
        if self._fault is not None:
            return "not started: the rollout stopped at " + (self._fault.target or "a fault")
        if self._steering.stop_reason is not None:
            return self._steering.stop_reason
        if scale_set is not None and scale_set in self._steering.withdrawn:
            return "not started: the scale set opted out of automatic upgrades"
        return None

    def _held(self) -> bool:
        return self._steering.hold is not None or self._hold is not None

    async def _faulted(self, item: RolloutSet, error: ApiError) -> None:
        if self._fault is None:
            self._fault = error
        await self._signal(self._rollout_id, COHORT_NEWS_SIGNAL, CohortNews(item=item, fault=error))

    async def _cancelled_by_someone(self, item: RolloutSet, by: str) -> None:
        self._hold = Hold(
            by=by,
            reason=(
                f"the upgrade of {item.scale_set} ({item.region}) was cancelled by {by}: "
                "`rollout resume` goes on without it, `rollout cancel` ends the rollout"
            ),
            since=workflow.now(),
        )
        await self._signal(self._rollout_id, COHORT_NEWS_SIGNAL, CohortNews(item=item, hold=self._hold))

    async def _cancel_set(self, item: RolloutSet) -> None:
        self._waves.members[item.scale_set].cancelled = True
        await super()._cancel_set(item)

    def _publish(self) -> None:
        request = self._request
        lines = [f"**Cohort {request.number} of {escaped(request.region)}** (rollout {self._rollout_id})"]
        if not self._waves.finished:
            lines.append(escaped(self._waves.text()))
        namespace = workflow.info().namespace
        for item in self._sets.values():
            link = workflow_link(namespace, item.workflow_id or upgrade_workflow_id(item.scale_set))
            state = item.state.value if item.state != RolloutSetState.PENDING else "pending"
            lines.append(f"- [{escaped(item.scale_set)}]({link}): {state}")
        workflow.set_current_details("\n".join(lines))
