"""Starting, inspecting, cancelling and awaiting upgrades: what `upgradectl` does over Temporal.

An upgrade starts with update-with-start: the workflow starts and `upgradectl` waits on its
`admit` update, so an unknown scale set or image is refused at once with the workflow's own
message, and a scale set that is already upgrading is refused by the workflow id's conflict
policy. Both are refusals before any instance is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.errors import RefusalCode
from workflows import search_attributes
from models.status import RollingUpgradeStatusCode, RollingUpgradeStatusInfo
from models.upgrade import (
    ADMIT_UPDATE,
    PREFLIGHT_WORKFLOW,
    Preflight,
    CANCEL_SIGNAL,
    INSTANCES_QUERY,
    REPORT_QUERY,
    ROLLING_UPGRADE_WORKFLOW,
    STATUS_QUERY,
    Admission,
    InstanceProgress,
    UpgradeReport,
    UpgradeRequest,
    upgrade_workflow_id,
)

EXIT_CODES = {
    RollingUpgradeStatusCode.COMPLETED: 0,
    RollingUpgradeStatusCode.FAULTED: 1,
    RollingUpgradeStatusCode.CANCELLED: 2,
}


class UpgradeRefused(Exception):
    """The upgrade was not started, or stopped at admission; nothing was touched."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UpgradeFailed(Exception):
    """The workflow failed in a way that carries no upgrade report."""


async def start_upgrade(
    client: Client,
    request: UpgradeRequest,
    task_queue: str,
    *,
    admission_timeout: float = 60.0,
) -> tuple[WorkflowHandle, Admission]:
    """Preflight the upgrade, start it, and return once the workflow has admitted it.

    The preflight (a short workflow) reads the scale set and resolves the image, so a refusal
    comes before anything starts, and the upgrade starts with its Web UI summary (scale set,
    from and to image, instance count) and details (the effective policy).
    """
    workflow_id = upgrade_workflow_id(request.scale_set)
    preflight = await run_preflight(client, request, task_queue, admission_timeout)
    start = WithStartWorkflowOperation(
        ROLLING_UPGRADE_WORKFLOW,
        request,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        result_type=UpgradeReport,
        static_summary=preflight.summary,
        static_details=preflight.details,
        search_attributes=search_attributes.at_start(
            request.scale_set, str(preflight.target_image), request.started_by
        ),
    )
    try:
        admission = await asyncio.wait_for(
            client.execute_update_with_start_workflow(
                ADMIT_UPDATE, start_workflow_operation=start, result_type=Admission
            ),
            admission_timeout,
        )
    except (WorkflowAlreadyStartedError, RPCError) as err:
        if isinstance(err, RPCError) and err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        # The SDK parks the same failure on the start operation; read it, or asyncio reports
        # "Future exception was never retrieved" when the operation is collected.
        with contextlib.suppress(WorkflowAlreadyStartedError, RPCError):
            await start.workflow_handle()
        raise UpgradeRefused(
            RefusalCode.UPGRADE_IN_PROGRESS,
            f"scale set {request.scale_set!r} is already being upgraded (workflow "
            f"{workflow_id}); watch it with `upgradectl watch {request.scale_set}` or stop it "
            f"with `upgradectl cancel {request.scale_set}`",
        ) from None
    except WorkflowUpdateFailedError as err:
        refuse_if_declined(err.cause)
        raise
    except asyncio.TimeoutError:
        raise UpgradeFailed(
            f"the upgrade was submitted as workflow {workflow_id} but no worker admitted it "
            f"within {admission_timeout:.0f} s: is a worker polling task queue {task_queue!r}?"
        ) from None
    return await start.workflow_handle(), admission


def refuse_if_declined(cause: BaseException | None) -> None:
    """A workflow that declined the upgrade says why in an ApplicationError: its type is the
    refusal code."""
    if isinstance(cause, ApplicationError):
        raise UpgradeRefused(cause.type or "Refused", cause.message) from None


async def run_preflight(
    client: Client, request: UpgradeRequest, task_queue: str, timeout: float
) -> Preflight:
    workflow_id = f"{upgrade_workflow_id(request.scale_set)}/preflight/{uuid.uuid4()}"
    try:
        return await asyncio.wait_for(
            client.execute_workflow(
                PREFLIGHT_WORKFLOW,
                request,
                id=workflow_id,
                task_queue=task_queue,
                result_type=Preflight,
                static_summary=f"preflight of an upgrade of {request.scale_set}",
            ),
            timeout,
        )
    except WorkflowFailureError as err:
        refuse_if_declined(err.cause)
        raise
    except asyncio.TimeoutError:
        raise UpgradeFailed(
            f"no worker answered the preflight of {request.scale_set!r} within {timeout:.0f} s: "
            f"is a worker polling task queue {task_queue!r}?"
        ) from None


def upgrade_handle(client: Client, scale_set: str) -> WorkflowHandle:
    """The latest upgrade of the scale set (running or finished)."""
    return client.get_workflow_handle(upgrade_workflow_id(scale_set), result_type=UpgradeReport)


async def get_status(client: Client, scale_set: str) -> RollingUpgradeStatusInfo:
    return await upgrade_handle(client, scale_set).query(
        STATUS_QUERY, result_type=RollingUpgradeStatusInfo
    )


async def get_instances(client: Client, scale_set: str) -> list[InstanceProgress]:
    return await upgrade_handle(client, scale_set).query(
        INSTANCES_QUERY, result_type=list[InstanceProgress]
    )


async def cancel_upgrade(client: Client, scale_set: str) -> None:
    await upgrade_handle(client, scale_set).signal(CANCEL_SIGNAL)


async def final_report(handle: WorkflowHandle) -> UpgradeReport:
    """Wait for the end. A Faulted upgrade's report travels in its failure's details; one that
    a cancel request ended (Canceled in Temporal) still answers the `report` query."""
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details:
            return UpgradeReport.model_validate(cause.details[0])
        if isinstance(cause, CancelledError):
            return await handle.query(REPORT_QUERY, result_type=UpgradeReport)
        raise UpgradeFailed(str(cause or err)) from err
