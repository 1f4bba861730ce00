"""The upgrade as Azure reports it: RollingUpgradeStatusInfo, and the final report.

Derived from the ledger every time it is asked, so the four progress counts always add up to the
instances being upgraded, and the error always says what the next gate decided: once the upgrade
has decided to stop, the error is the reason it stops, from then on.
"""

from __future__ import annotations

from models.errors import UpgradeErrorCode
from models.status import (
    ROLLBACK_DESCRIPTIONS,
    ApiError,
    ExtensionUpgradeStatus,
    RollbackMethod,
    RollbackStatusInfo,
    RollingUpgradeProgressInfo,
    RollingUpgradeRunningStatus,
    RollingUpgradeStatusCode,
    RollingUpgradeStatusInfo,
    RollingUpgradeStatusProperties,
)
from models.upgrade import FINAL_FAILURES, InstanceProgress, InstanceState, UpgradeReport
from rules import failures, gates
from rules.change_kinds import kind_of
from rules.ledger import UpgradeLedger
from rules.planner import upgraded_limit

GOES_ON = {
    RollingUpgradeStatusCode.ROLLING_FORWARD: "so the upgrade goes on",
    RollingUpgradeStatusCode.COMPLETED: "so the upgrade completed",
}


def progress(ledger: UpgradeLedger) -> RollingUpgradeProgressInfo:
    counts = {state: 0 for state in InstanceState}
    for instance in ledger.instances.values():
        counts[instance.state] += 1
    return RollingUpgradeProgressInfo(
        successful_instance_count=counts[InstanceState.SUCCEEDED],
        failed_instance_count=sum(counts[s] for s in FINAL_FAILURES),
        in_progress_instance_count=counts[InstanceState.IN_PROGRESS],
        pending_instance_count=(
            counts[InstanceState.PENDING]
            + counts[InstanceState.PENDING_APPROVAL]
            + counts[InstanceState.NOT_STARTED]
        ),
    )


def error(ledger: UpgradeLedger) -> ApiError | None:
    """The reason the upgrade stops, or failures within what the policy allows."""
    if ledger.fault is not None:
        return ledger.fault
    if stopped := gates.extensions_stopped(ledger):
        return stopped
    failed = ledger.in_state(*FINAL_FAILURES)
    if not failed:
        return None
    attempted = len(ledger.attempted())
    counted = len(ledger.failed())
    limit = upgraded_limit(attempted, ledger.request.policy)
    outcome = GOES_ON.get(ledger.code, f"and the upgrade was {ledger.code.value.lower()}")
    summary = (
        f"Most common error: {failures.most_common((p.code, failures.describe(p)) for p in failed)}."
        if ledger.rules.exact_core
        else f"First failed instance: {failures.describe(failed[0])}."
    )
    return ApiError(
        code=UpgradeErrorCode.IN_PROGRESS_WITH_FAILED_VMS,
        message=(
            f"{counted} of {attempted} upgraded instances ({gates.share(counted, attempted)}) "
            f"failed, within the {limit.shown} the policy allows ({limit.field}), {outcome}. {summary}"
        ),
        details=gates.failure_details(ledger),
    )


def status(ledger: UpgradeLedger) -> RollingUpgradeStatusInfo:
    return RollingUpgradeStatusInfo(
        id=ledger.resource_id,
        name=ledger.request.scale_set,
        location=ledger.location,
        properties=RollingUpgradeStatusProperties(
            policy=ledger.request.policy,
            running_status=RollingUpgradeRunningStatus(
                code=ledger.code,
                start_time=ledger.start_time,
                last_action=ledger.last_action,
                last_action_time=ledger.last_action_time,
            ),
            progress=progress(ledger),
            error=error(ledger),
            wait=ledger.wait,
            paused=ledger.paused,
            extensions=extension_statuses(ledger),
            rollback_info=rolled_back(ledger),
            alarms=list(ledger.alarms.values()) or None,
            checkpoints=ledger.checkpoint_log or None,
            rollback_of=ledger.request.rollback_of,
        ),
    )


def extension_statuses(ledger: UpgradeLedger) -> list[ExtensionUpgradeStatus] | None:
    """Each extension of an extension upgrade applied on its own: where it moved, where it
    failed, where it is being installed, and where not yet (or no more: it stopped)."""
    if not ledger.rules.independent_extensions or not ledger.change.extensions:
        return None
    going = {t.name for t in ledger.extensions_going()}
    statuses = []
    for target in ledger.change.extensions:
        moved = failed = in_progress = pending = 0
        for p in ledger.instances.values():
            outcome = (p.extension_outcomes or {}).get(target.name)
            if outcome is not None:
                moved += outcome.state == InstanceState.SUCCEEDED
                failed += outcome.state in FINAL_FAILURES
            elif p.state == InstanceState.IN_PROGRESS and target.name in going:
                in_progress += 1
            elif p.state != InstanceState.SKIPPED:
                pending += 1
        stopped = ledger.stopped_extensions.get(target.name)
        code = ledger.code
        if stopped is not None:
            code = RollingUpgradeStatusCode.FAULTED
        elif code == RollingUpgradeStatusCode.FAULTED and ledger.fault == gates.extensions_stopped(ledger):
            code = RollingUpgradeStatusCode.COMPLETED  # the upgrade faulted on another extension alone
        statuses.append(
            ExtensionUpgradeStatus(
                name=target.name,
                version=target.version,
                code=code,
                progress=RollingUpgradeProgressInfo(
                    successful_instance_count=moved,
                    failed_instance_count=failed,
                    in_progress_instance_count=in_progress,
                    pending_instance_count=pending,
                ),
                error=stopped,
            )
        )
    return statuses


def rolled_back(ledger: UpgradeLedger) -> RollbackStatusInfo | None:
    """The status's rollbackInfo, once an instance was rolled back (a status with none keeps
    the shape of Azure's Get Latest)."""
    info = rollback_info(ledger)
    done = info.successfully_rolledback_instance_count + info.failed_rolledback_instance_count
    return info if done else None


def rollback_info(ledger: UpgradeLedger) -> RollbackStatusInfo:
    """Restores that brought an instance back healthy, and those that did not (failed, had no
    previous OS disk, or left the instance unhealthy)."""
    restores = [restored(p) for p in ledger.instances.values()]
    method = rollback_method(ledger)
    return RollbackStatusInfo(
        successfully_rolledback_instance_count=restores.count(True),
        failed_rolledback_instance_count=restores.count(False),
        rollback_method=method,
        rollback_description=ROLLBACK_DESCRIPTIONS[method] if method else None,
    )


def rollback_method(ledger: UpgradeLedger) -> RollbackMethod | None:
    """What a rollback does on this scale set: reinstall extension versions, or bring the OS
    back the way the instances' restore points allow (Uniform: a reimage; Flexible: a disk
    swap). None before admission has read the instances."""
    return kind_of(ledger.change).rollback_method(p.previous_os_disk for p in ledger.instances.values())


def restored(instance: InstanceProgress) -> bool | None:
    if instance.restored is None and instance.state == InstanceState.ROLLED_BACK:
        return True  # an outcome recorded before outcomes said how a restore went
    return instance.restored


def report(ledger: UpgradeLedger) -> UpgradeReport:
    return UpgradeReport(
        status=status(ledger),
        target_image=ledger.change.image,
        extensions=ledger.change.extensions,
        rollback_info=rollback_info(ledger),
        skipped_instance_count=len(ledger.in_state(InstanceState.SKIPPED)),
        batches=ledger.batches,
        instances=list(ledger.instances.values()),
        request=ledger.request,
        notifications=ledger.notifications,
        cancelled_by=ledger.cancelled_by if ledger.code == RollingUpgradeStatusCode.CANCELLED else None,
    )
