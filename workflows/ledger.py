"""The ledger of one upgrade: every instance's progress, and the status derived from it.

Pure and deterministic (no clocks, no I/O): the workflow passes in `now`, so the ledger can be
unit-tested and replays identically. The status is always derived from the instances, so the
four progress counts add up to the instances being upgraded at every moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from models.errors import FailureCause, UpgradeErrorCode
from models.fleet import HealthReading, HealthState, ScaleSetView
from models.image import ImageReference
from models.notifications import NotificationRecord
from models.policy import format_duration
from models.sorting import natural_key
from models.status import (
    ApiError,
    ApiErrorBase,
    InnerError,
    RollingUpgradeActionType,
    RollingUpgradeProgressInfo,
    RollingUpgradeRunningStatus,
    RollingUpgradeStatusCode,
    RollingUpgradeStatusInfo,
    RollingUpgradeStatusProperties,
    RollbackStatusInfo,
)
from models.upgrade import (
    ATTEMPTED,
    FINAL_FAILURES,
    InstanceOutcome,
    InstanceProgress,
    InstanceState,
    UpgradeReport,
    UpgradeRequest,
)
from workflows import gates
from workflows.planner import Candidate, plan_batches

SKIP_ALREADY_ON_TARGET = "AlreadyOnTargetImage"
SKIP_CUSTOM_METRIC = "SkipUpgradeCustomMetric"
SKIP_GONE = "InstanceNoLongerExists"
UNHEALTHY_SINCE_UPGRADE = "UnhealthySinceUpgrade"


class UpgradeLedger:
    def __init__(self, request: UpgradeRequest, now: datetime) -> None:
        self.request = request
        self.target_image: ImageReference = request.target_image
        self.instances: dict[str, InstanceProgress] = {}
        self.resource_id: str | None = None
        self.location: str | None = None
        self.code = RollingUpgradeStatusCode.ROLLING_FORWARD
        self.start_time = now
        self.last_action = RollingUpgradeActionType.START
        self.last_action_time = now
        self.fault: ApiError | None = None
        self.batches = 0
        self._phases: dict[str, int | None] = {}
        self._gone: set[str] = set()
        self.notifications: list[NotificationRecord] = []
        timeout = request.upgrade_timeout
        self.deadline: datetime | None = now + timeout if timeout else None

    # --- admission and health ---------------------------------------------------------------

    def admit(self, scale_set: ScaleSetView, target_image: ImageReference) -> None:
        """Record every instance; skip those already on the target image or opted out."""
        self.target_image = target_image
        self.resource_id = f"{scale_set.id}/rollingUpgrades/latest"
        self.location = scale_set.location
        for view in scale_set.instances:
            progress = InstanceProgress.of(view)
            if view.image_reference.same_image(target_image):
                self._skip(progress, SKIP_ALREADY_ON_TARGET, f"already on {target_image}")
            elif view.custom_metrics.skip_upgrade:
                self._skip(progress, SKIP_CUSTOM_METRIC, "the SkipUpgrade custom metric is set")
            self.instances[view.instance_id] = progress
            self._phases[view.instance_id] = view.custom_metrics.phase_ordering_number

    @staticmethod
    def _skip(progress: InstanceProgress, code: str, message: str) -> None:
        progress.state = InstanceState.SKIPPED
        progress.code = code
        progress.message = message

    def observe(self, reading: HealthReading) -> None:
        """Take fresh health readings. An instance that no longer exists leaves the arithmetic
        of the gates (a scale-in is not an outage); if it was still pending it is skipped."""
        for instance_id, progress in self.instances.items():
            health = reading.health.get(instance_id)
            if health is None:
                self._gone.add(instance_id)
                progress.health = HealthState.UNKNOWN
                if progress.state == InstanceState.PENDING:
                    self._skip(progress, SKIP_GONE, "the instance was deleted during the upgrade")
                continue
            progress.health = health
            self._phases[instance_id] = reading.phases.get(instance_id)

    def unhealthy(self) -> list[str]:
        """Instances of the scale set that are not Healthy right now (deleted ones excluded)."""
        return [
            i
            for i, p in self.instances.items()
            if p.health != HealthState.HEALTHY and i not in self._gone
        ]

    @property
    def total(self) -> int:
        return len(self.instances) - len(self._gone)

    # --- planning ---------------------------------------------------------------------------

    def candidates(self) -> list[Candidate]:
        return [
            Candidate(
                instance_id=p.instance_id,
                zone=p.zone,
                update_domain=p.update_domain,
                unhealthy=p.health != HealthState.HEALTHY,
                phase=self._phases.get(p.instance_id),
            )
            for p in self.instances.values()
            if p.state == InstanceState.PENDING
        ]

    def plan(self) -> list[list[Candidate]]:
        return plan_batches(self.candidates(), self.total, self.unhealthy(), self.request.policy)

    def start_batch(self, instance_ids: Iterable[str], now: datetime) -> int:
        self.batches += 1
        for instance_id in instance_ids:
            progress = self.instances[instance_id]
            progress.state = InstanceState.IN_PROGRESS
            progress.batch = self.batches
            progress.start_time = now
        return self.batches

    def settle(self, outcomes: Iterable[InstanceOutcome]) -> None:
        for outcome in outcomes:
            self.instances[outcome.instance_id].settle(outcome)

    def settle_restores(self, outcomes: Iterable[InstanceOutcome]) -> None:
        """Restores after a policy breach: keep why the instance failed, add how it ended."""
        for outcome in outcomes:
            progress = self.instances[outcome.instance_id]
            progress.state = outcome.state
            progress.message = f"{progress.message}; on the policy breach: {outcome.message}"
            progress.health_after_restore = outcome.health_after_restore
            progress.end_time = outcome.end_time
            if outcome.state == InstanceState.FAILED:
                progress.cause, progress.code = outcome.cause, outcome.code

    # --- gates ------------------------------------------------------------------------------

    def unhealthy_gate(self, *, before_upgrade: bool) -> ApiError | None:
        return gates.unhealthy_gate(
            self.unhealthy(), self.total, self.request.policy, before_upgrade=before_upgrade
        )

    def unhealthy_since_upgrade(self) -> list[InstanceProgress]:
        """Instances upgraded successfully that the latest health reading finds unhealthy."""
        return [
            p
            for p in self.in_state(InstanceState.SUCCEEDED)
            if p.health != HealthState.HEALTHY and p.instance_id not in self._gone
        ]

    def upgraded_gate(self, *, including_later: bool = False) -> ApiError | None:
        """maxUnhealthyUpgradedInstancePercent over the instances upgraded so far.

        `including_later` also counts instances that passed their health wait but have turned
        unhealthy since (Azure: "instances that become unhealthy post an upgrade").
        """
        failed = self.in_state(*FINAL_FAILURES)
        later = self.unhealthy_since_upgrade() if including_later else []
        unhealthy = failed + later
        if not unhealthy:
            return None
        breach = gates.upgraded_gate(
            [p.instance_id for p in unhealthy],
            len(self.in_state(*ATTEMPTED)),
            self.request.policy,
            self.describe_failure(failed[0]) if failed else self.describe_later(later[0]),
        )
        if breach:
            breach.details = self._failure_details() + [
                ApiErrorBase(code=UNHEALTHY_SINCE_UPGRADE, target=p.instance_id, message=self.describe_later(p))
                for p in later
            ]
        return breach

    @staticmethod
    def describe_later(progress: InstanceProgress) -> str:
        health = progress.health.value if progress.health else "Unknown"
        return f"{progress.instance_id} (upgraded in batch {progress.batch}, {health} since)"

    def internal_failures(self) -> ApiError | None:
        """An operation that failed in a way nobody planned for stops the upgrade."""
        broken = [
            p
            for p in self.in_state(InstanceState.FAILED)
            if p.code == UpgradeErrorCode.INTERNAL_EXECUTION_ERROR
        ]
        if not broken:
            return None
        return ApiError(
            code=UpgradeErrorCode.INTERNAL_EXECUTION_ERROR,
            message=(
                f"the upgrade stopped after an unexpected error on {len(broken)} instance(s): "
                f"{self.describe_failure(broken[0])}"
            ),
            details=[ApiErrorBase(code=p.code, target=p.instance_id, message=p.message) for p in broken],
        )

    def deadline_gate(self, now: datetime) -> ApiError | None:
        """The upgrade's own time limit, checked once the batch in flight has settled."""
        if self.deadline is None or now < self.deadline:
            return None
        attempted = len(self.in_state(*ATTEMPTED))
        return ApiError(
            code=UpgradeErrorCode.TIMEOUT,
            message=(
                f"the upgrade did not finish within its timeout of "
                f"{format_duration(self.request.upgrade_timeout)} (started "
                f"{self.start_time.isoformat()}, deadline {self.deadline.isoformat()}); it "
                f"stopped after the batch in flight settled, with {attempted} of "
                f"{attempted + len(self.candidates())} instances upgraded"
            ),
        )

    @staticmethod
    def describe_failure(progress: InstanceProgress) -> str:
        return f"{progress.instance_id} ({progress.message or progress.code})"

    # --- status -----------------------------------------------------------------------------

    def in_state(self, *states: InstanceState) -> list[InstanceProgress]:
        """In the order they were upgraded: by batch, then instance id."""
        return sorted(
            (p for p in self.instances.values() if p.state in states),
            key=lambda p: (p.batch or 0, natural_key(p.instance_id)),
        )

    def progress(self) -> RollingUpgradeProgressInfo:
        counts = {state: 0 for state in InstanceState}
        for progress in self.instances.values():
            counts[progress.state] += 1
        return RollingUpgradeProgressInfo(
            successful_instance_count=counts[InstanceState.SUCCEEDED],
            failed_instance_count=sum(counts[s] for s in FINAL_FAILURES),
            in_progress_instance_count=counts[InstanceState.IN_PROGRESS],
            pending_instance_count=counts[InstanceState.PENDING]
            + counts[InstanceState.NOT_STARTED],
        )

    def _failure_details(self) -> list[ApiErrorBase]:
        return [
            ApiErrorBase(
                code=p.code,
                target=p.instance_id,
                message=f"{p.cause.value if p.cause else 'Unknown'} failure: {p.message}",
            )
            for p in self.in_state(*FINAL_FAILURES)
        ]

    def error(self) -> ApiError | None:
        if self.fault is not None:
            return self.fault
        failed = self.in_state(*FINAL_FAILURES)
        if not failed:
            return None
        attempted = len(self.in_state(*ATTEMPTED))
        limit = self.request.policy.max_unhealthy_upgraded_instance_percent
        outcome = {
            RollingUpgradeStatusCode.ROLLING_FORWARD: "so the upgrade goes on",
            RollingUpgradeStatusCode.COMPLETED: "so the upgrade completed",
        }.get(self.code, f"and the upgrade was {self.code.value.lower()}")
        return ApiError(
            code=UpgradeErrorCode.IN_PROGRESS_WITH_FAILED_VMS,
            message=(
                f"{len(failed)} of {attempted} upgraded instances "
                f"({gates.share(len(failed), attempted)}) failed, within the {limit}% the policy "
                f"allows (maxUnhealthyUpgradedInstancePercent), {outcome}. "
                f"First failed instance: {self.describe_failure(failed[0])}."
            ),
            details=self._failure_details(),
        )

    def status(self) -> RollingUpgradeStatusInfo:
        return RollingUpgradeStatusInfo(
            id=self.resource_id,
            name=self.request.scale_set,
            location=self.location,
            properties=RollingUpgradeStatusProperties(
                policy=self.request.policy,
                running_status=RollingUpgradeRunningStatus(
                    code=self.code,
                    start_time=self.start_time,
                    last_action=self.last_action,
                    last_action_time=self.last_action_time,
                ),
                progress=self.progress(),
                error=self.error(),
            ),
        )

    def report(self) -> UpgradeReport:
        rolled_back = self.in_state(InstanceState.ROLLED_BACK)
        restore_failed = [
            p
            for p in self.in_state(InstanceState.FAILED)
            if p.cause == FailureCause.INFRASTRUCTURE and p.previous_os_disk
        ]
        return UpgradeReport(
            status=self.status(),
            target_image=self.target_image,
            rollback_info=RollbackStatusInfo(
                successfully_rolledback_instance_count=len(rolled_back),
                failed_rolledback_instance_count=len(restore_failed),
            ),
            skipped_instance_count=len(self.in_state(InstanceState.SKIPPED)),
            batches=self.batches,
            instances=list(self.instances.values()),
            request=self.request,
            notifications=self.notifications,
        )

    # --- endings ----------------------------------------------------------------------------

    def _stop_pending(self) -> None:
        for progress in self.instances.values():
            if progress.state == InstanceState.PENDING:
                progress.state = InstanceState.NOT_STARTED

    def faulted(self, error: ApiError) -> None:
        self.code = RollingUpgradeStatusCode.FAULTED
        self.fault = error
        self._stop_pending()

    def cancel_requested(self, now: datetime) -> None:
        self.last_action = RollingUpgradeActionType.CANCEL
        self.last_action_time = now

    def cancelled(self) -> None:
        self.code = RollingUpgradeStatusCode.CANCELLED
        self._stop_pending()

    def completed(self) -> None:
        self.code = RollingUpgradeStatusCode.COMPLETED


def internal_error(err: BaseException) -> ApiError:
    """InternalExecutionError: something failed that the upgrade has no rule for.

    The chain of causes (an activity's, a child workflow's) goes in `details`, so the user sees
    what actually broke, not just that something did.
    """
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and len(chain) < 5:
        chain.append(current)
        current = getattr(current, "cause", None) or current.__cause__
    details = []
    for error in chain:
        code = getattr(error, "type", None)
        details.append(
            ApiErrorBase(
                code=code if isinstance(code, str) and code else type(error).__name__,
                message=getattr(error, "message", None) or str(error),
            )
        )
    root = details[-1]
    return ApiError(
        code=UpgradeErrorCode.INTERNAL_EXECUTION_ERROR,
        message=f"the upgrade stopped on an unexpected error: {root.code}: {root.message}",
        details=details,
        innererror=InnerError(exceptiontype=type(err).__name__, errordetail=str(err)),
    )
