"""One scale set's upgrade within a rollout: the request it gets, starting it (waiting while
another upgrade holds the set's lock), following it to its end and recording that end. Shared
by RolloutWorkflow (rollouts started before zone waves) and RolloutCohortWorkflow, which say
through a few hooks whether a set may start, and what a fault or someone's cancel means."""

from __future__ import annotations

import contextlib
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
    from models import search_attributes
    from models.automatic import PLATFORM, Enrollment, RolloutExtension, RolloutSet, RolloutSetState
    from models.change import ExtensionRequest
    from models.errors import RefusalCode
    from models.policy import RollingUpgradePolicy
    from models.status import ApiError
    from models.upgrade import (
        CANCEL_SIGNAL,
        FINAL_FAILURES,
        ROLLING_UPGRADE_WORKFLOW,
        UpgradeReport,
        UpgradeRequest,
        WaveCoordination,
        upgrade_workflow_id,
    )
    from rules.change_kinds import kind_asked

# 2026-11: a set another upgrade holds (its `rolling-upgrade/<set>` lock) waits for its turn,
# trying again after a timer and steerable meanwhile, instead of being skipped.
WAIT_FOR_SET_LOCK = "wait-for-set-lock"

# An upgrade refused at admission touched nothing: the set is skipped, the rollout goes on.
REFUSALS = frozenset(code.value for code in RefusalCode)
# How often a set waiting for another upgrade of it to end tries to start its own: soon at first
# (the other may be about to end), then less and less often, to keep the history short.
SET_LOCK_POLL = (timedelta(seconds=5), timedelta(minutes=5))
# Who cancelled, when a cancel request (not the signal) ended an upgrade.
CANCEL_REQUEST = "a cancel request (the Web UI, or `temporal workflow cancel`)"

UpgradeHandle = workflow.ChildWorkflowHandle[object, UpgradeReport]


def rolling_policy(enrollment: Enrollment) -> RollingUpgradePolicy:
    """The rolling upgrade policy an enrolled set's automatic upgrades follow: its own with
    useRollingUpgradePolicy, else the seed's defaults."""
    policy = enrollment.policy
    if policy.automatic_os_upgrade_policy.use_rolling_upgrade_policy:
        return policy.rolling_upgrade_policy
    return RollingUpgradePolicy()


def upgrade_request(
    enrollment: Enrollment,
    target: str,
    extension: str | None = None,
    waves: WaveCoordination | None = None,
) -> UpgradeRequest:
    """The upgrade one enrolled set gets: its image to version `target`, or (given the
    extension's name in the set's model) that extension to version `target`. Under
    useRollingUpgradePolicy, the scale set's own rolling upgrade policy (read at admission) with
    the fields `auto enable` was given on top, else the seed's defaults; never across zones
    (availability first)."""
    policy = enrollment.policy
    automatic = policy.automatic_os_upgrade_policy
    rolling = rolling_policy(enrollment)
    chosen = policy.model_copy(
        update={"rolling_upgrade_policy": rolling.model_copy(update={"enable_cross_zone_upgrade": False})}
    )
    given = None
    if automatic.use_rolling_upgrade_policy and enrollment.policy_given is not None:
        given = sorted({*enrollment.policy_given, "enableCrossZoneUpgrade"})
    if extension is not None:  # (deferral and notBeforeTimeout are OS image settings)
        wanted = [ExtensionRequest(name=extension, version=target)]
        return UpgradeRequest.from_policy(
            enrollment.scale_set,
            None,
            chosen,
            extensions=wanted,
            started_by=PLATFORM,
            waves=waves,
            policy_given=given,
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
        policy_given=given,
        # Maintenance windows hold OS image upgrades only (scope OSImage).
        respect_maintenance_window=True,
        maintenance_window=enrollment.maintenance_window,
    )


def rolled_back(item: RolloutSet, report: UpgradeReport) -> str:
    """Note the instances a completed upgrade rolled back (fewer than its policy stops at) on the
    set's item; what its message adds: how many, which, and why the first failed."""
    failed = [i for i in report.instances if i.state in FINAL_FAILURES]
    item.rolled_back = [i.instance_id for i in failed]
    if not failed:
        return ""
    why = next((f"{i.code}: {i.message}" for i in failed if i.code or i.message), "")
    return f", but {len(failed)} instance(s) failed and were rolled back ({', '.join(item.rolled_back)})" + (
        f": {why}" if why else ""
    )


def upgrade_summary(item: RolloutSet, request: UpgradeRequest, rollout_id: str) -> str:
    """The Web UI's summary of the upgrade a rollout starts on one set: what it moves, whether it
    is a retry, and the rollout."""
    what = kind_asked(request).asked(request)
    return f"{item.scale_set}: automatic {what}{item.retry_note} (rollout {rollout_id})"


class SetUpgrades:
    """The sets' upgrades of a rollout (a mixin of the workflows that start them)."""

    _enrollments: dict[str, Enrollment]
    _version: str
    _extension: RolloutExtension | None
    _rollout_id: str
    # A cancel someone else sent holds the rollout (zone waves: the cohorts); before them, a
    # cancelled upgrade was only recorded.
    _cancel_holds = False
    _cancelled: bool  # the rollout was cancelled
    _cancel_on_start: set[str]  # sets that opted out with cancel
    _cancel_sent: set[str]  # sets the rollout itself asked to cancel

    # --- hooks ----------------------------------------------------------------------------------

    def _stop_reason(self, scale_set: str | None = None) -> str | None:
        """Why no further set (or this one) starts, if it should not."""
        raise NotImplementedError

    def _held(self) -> bool:
        raise NotImplementedError

    def _publish(self) -> None:
        raise NotImplementedError

    async def _faulted(self, item: RolloutSet, error: ApiError) -> None:
        """A set's upgrade faulted: the rollout stops."""
        raise NotImplementedError

    async def _cancelled_by_someone(self, item: RolloutSet, by: str) -> None:
        """Someone other than the rollout cancelled a set's upgrade: the rollout holds (where
        `_cancel_holds`)."""
        raise NotImplementedError

    # --- one set ------------------------------------------------------------------------------

    async def _may_start(self, item: RolloutSet) -> bool:
        """Wait while the rollout is held; False (the set skipped) if it should not start."""
        await workflow.wait_condition(lambda: not self._held() or self._stop_reason() is not None)
        if (reason := self._stop_reason(item.scale_set)) is not None:
            self._skip(item, reason)
            return False
        return True

    async def _start(self, item: RolloutSet, waves: WaveCoordination | None = None) -> UpgradeHandle | None:
        """Start the set's upgrade; while another upgrade holds the set, wait for its turn.
        None when the set was skipped instead (the rollout stopped, was cancelled or
        superseded, or the set opted out, meanwhile)."""
        extension = self._extension
        name = extension.names.get(item.scale_set) if extension is not None else None
        request = upgrade_request(self._enrollments[item.scale_set], self._version, name, waves)
        summary = upgrade_summary(item, request, self._rollout_id)
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
            if request.waves is not None and request.waves.opening is not None:
                # By the set's turn its first wave may have passed: it reports first after all.
                self._close_opening(item)
                waves = request.waves.model_copy(update={"opening": None})
                request = request.model_copy(update={"waves": waves})
            poll = min(2 * poll, SET_LOCK_POLL[1]) if poll else SET_LOCK_POLL[0]
            if not await self._wait_for_set(item, poll):
                return None

    def _close_opening(self, item: RolloutSet) -> None:
        """A set opened at its start (the first zone wave permitted with it) did not start."""

    async def _wait_for_set(self, item: RolloutSet, poll: timedelta) -> bool:
        """Another upgrade holds the set: wait `poll` (a hold, a stop or a cancel ends the wait
        at once, and a hold lasts until resumed); False if the set was skipped meanwhile."""
        if item.state != RolloutSetState.WAITING_FOR_SCALE_SET:
            item.state = RolloutSetState.WAITING_FOR_SCALE_SET
            item.message = f"waiting for {item.workflow_id} to finish (another upgrade holds the scale set)"
            self._publish()
        with contextlib.suppress(TimeoutError):  # its turn, perhaps: try to start again
            await workflow.wait_condition(
                lambda: self._stop_reason(item.scale_set) is not None or self._held(),
                timeout=poll,
                timeout_summary=f"until {item.workflow_id} finishes",
            )
        return await self._may_start(item)

    async def _follow(self, item: RolloutSet, handle: UpgradeHandle) -> None:
        """Follow a started upgrade to its end and record it."""
        item.state = RolloutSetState.RUNNING
        item.start_time = workflow.now()
        item.message = f"upgrading to {self._version}{item.retry_note}"
        self._publish()
        if self._cancelled or item.scale_set in self._cancel_on_start:
            await self._cancel_set(item)  # asked while it was starting
        try:
            report: UpgradeReport = await handle
        except ChildWorkflowError as err:
            cause = err.cause
            if self._cancel_holds and isinstance(cause, CancelledError):
                await self._cancelled_set(item, CANCEL_REQUEST)
                return
            code = cause.type if isinstance(cause, ApplicationError) and cause.type else "UpgradeFailed"
            message = cause.message if isinstance(cause, FailureError) else str(err)
            if code in REFUSALS:  # refused at admission: nothing was touched, the rollout goes on
                self._skip(item, f"refused, nothing touched: {code}: {message}")
                return
            item.state = RolloutSetState.FAULTED
            item.message = f"{code}: {message}"
            phase = f"phase {item.phase}" if item.phase else "its phase"
            await self._faulted(
                item,
                ApiError(
                    code=code,
                    message=f"the upgrade of {item.scale_set} in {item.region} ({phase}) faulted: {message}",
                    target=item.scale_set,
                ),
            )
        else:
            properties = report.status.properties
            cancelled = properties is not None and properties.running_status.code == "Cancelled"
            if cancelled and self._cancel_holds:
                await self._cancelled_set(item, report.cancelled_by or "someone")
                return
            item.state = RolloutSetState.CANCELLED if cancelled else RolloutSetState.COMPLETED
            item.message = f"{'cancelled' if cancelled else 'upgraded'} to {self._version}{item.retry_note}"
            if not cancelled:
                item.message += rolled_back(item, report)
        item.end_time = workflow.now()
        self._publish()

    async def _cancelled_set(self, item: RolloutSet, by: str) -> None:
        """A set's upgrade ended cancelled: by the rollout (it stopped, the set opted out), or by
        someone else, which holds the rollout."""
        item.state = RolloutSetState.CANCELLED
        item.end_time = workflow.now()
        why = self._stop_reason(item.scale_set)
        if item.scale_set in self._cancel_sent or why is not None:
            item.message = f"cancelled after its batch in flight: {why or 'stopped'}"
        else:
            item.message = f"cancelled by {by}"
            await self._cancelled_by_someone(item, by)
        self._publish()

    async def _cancel_set(self, item: RolloutSet) -> None:
        """Ask a set's upgrade to stop (its batch in flight finishes); the rollout knows it asked."""
        self._cancel_sent.add(item.scale_set)
        if item.workflow_id:
            await self._signal(item.workflow_id, CANCEL_SIGNAL)

    def _skip(self, item: RolloutSet, reason: str) -> None:
        item.state = RolloutSetState.SKIPPED
        item.message = reason
        item.end_time = workflow.now()
        self._publish()

    async def _signal(self, workflow_id: str, signal: str, arg: object = None) -> None:
        try:
            handle = workflow.get_external_workflow_handle(workflow_id)
            await (handle.signal(signal) if arg is None else handle.signal(signal, arg))
        except FailureError as err:  # it ended meanwhile
            workflow.logger.info("could not signal %s: %s", workflow_id, err)
