"""`upgradectl rollout rollback VERSION`: a rollout rolled back as a whole. Each of its scale sets'
upgrades is undone by a rollback upgrade of its own (rules/rollback.py), computed now from the
set's last upgrade, and a RolloutRollbackWorkflow runs them phase by phase in reverse order."""

from __future__ import annotations

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from models.automatic import ENDED, PLATFORM, RolloutSetState, RolloutStatus
from models.rollback import (
    ROLLOUT_ROLLBACK_QUERY,
    ROLLOUT_ROLLBACK_WORKFLOW,
    RolloutRollbackRequest,
    RolloutRollbackStatus,
    rollout_rollback_id,
)
from models.upgrade import UpgradeReport, UpgradeRequest
from rules.rollback import RollbackRefused, rollback_request
from starter.automatic import rollout_statuses
from starter.upgrades import UpgradeRefused, describe_upgrade, query_report, upgrade_handle

# Sets of the rollout that may have moved instances (a faulted one may have, before it stopped).
TOUCHED = (RolloutSetState.COMPLETED, RolloutSetState.FAULTED, RolloutSetState.CANCELLED)


def by_the_rollout(report: UpgradeReport, version: str) -> bool:
    """Is this upgrade the rollout's (started by the platform, to its version)?"""
    request = report.request
    if request is None or request.started_by != PLATFORM:
        return False
    if report.target_image is not None:
        return version in (report.target_image.resolved_version, report.target_image.version)
    return any(t.version == version for t in report.extensions)


async def set_rollback(client: Client, scale_set: str, version: str, by: str) -> UpgradeRequest | None:
    """The set's rollback upgrade; None when the rollout's upgrade left nothing on its change."""
    handle = upgrade_handle(client, scale_set)
    description = await describe_upgrade(handle, scale_set)
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise UpgradeRefused(
            "RollingUpgradeInProgress", f"an upgrade of {scale_set!r} is running: cancel it first"
        )
    report = await query_report(handle)
    if not by_the_rollout(report, version):
        raise UpgradeRefused(
            "UpgradedSinceTheRollout",
            f"scale set {scale_set!r} was upgraded again after the rollout: roll it back on its own "
            "(upgradectl rollback)",
        )
    try:
        return rollback_request(report, f"{description.id} (run {description.run_id})", by)
    except RollbackRefused:
        return None


async def start_rollout_rollback(
    client: Client, task_queue: str, version: str, source: str | None, by: str
) -> tuple[RolloutStatus, RolloutRollbackRequest]:
    statuses = await rollout_statuses(client, task_queue, version, source)
    if len(statuses) > 1:
        raise UpgradeRefused(
            "AmbiguousRollout", f"several rollouts have version {version}: name one with --source"
        )
    [rollout] = statuses
    if rollout.state not in ENDED:
        raise UpgradeRefused(
            "RolloutInProgress", f"the rollout of {version} is {rollout.state.value}: cancel it first"
        )
    phases: dict[int, list[UpgradeRequest]] = {}
    for item in rollout.sets:
        if item.state in TOUCHED and (undo := await set_rollback(client, item.scale_set, version, by)):
            phases.setdefault(item.phase, []).append(undo)
    if not phases:
        raise UpgradeRefused("NothingToRollBack", f"the rollout of {version} left no instance on its version")
    request = RolloutRollbackRequest(
        rollout=rollout.workflow_id, by=by, phases=[phases[p] for p in sorted(phases, reverse=True)]
    )
    try:
        await client.start_workflow(
            ROLLOUT_ROLLBACK_WORKFLOW,
            request,
            id=rollout_rollback_id(rollout.workflow_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"rollback of {rollout.workflow_id}, phases in reverse order",
        )
    except WorkflowAlreadyStartedError:
        raise UpgradeRefused(
            "RollbackInProgress", f"a rollback of the rollout of {version} is running"
        ) from None
    return rollout, request


async def rollback_status(client: Client, rollout_id: str) -> RolloutRollbackStatus:
    handle = client.get_workflow_handle(rollout_rollback_id(rollout_id))
    status: RolloutRollbackStatus = await handle.query(
        ROLLOUT_ROLLBACK_QUERY, result_type=RolloutRollbackStatus
    )
    return status
