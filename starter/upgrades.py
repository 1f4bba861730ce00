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
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import VersioningBehavior, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, CancelledError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes
from models.errors import RefusalCode
from models.status import RollingUpgradeStatusCode, RollingUpgradeStatusInfo, RollingUpgradeStatusProperties
from models.upgrade import (
    ADMIT_UPDATE,
    APPROVE_SIGNAL,
    CANCEL_SIGNAL,
    INSTANCES_QUERY,
    PAUSE_SIGNAL,
    PREFLIGHT_WORKFLOW,
    REPORT_QUERY,
    RESUME_SIGNAL,
    ROLLING_UPGRADE_WORKFLOW,
    STATUS_QUERY,
    Admission,
    ApproveRequest,
    CancelRequest,
    InstanceProgress,
    PauseRequest,
    Preflight,
    ResumeRequest,
    UpgradeReport,
    UpgradeRequest,
    upgrade_workflow_id,
)
from rules import presentation
from rules.rollback import RollbackRefused, rollback_request

# `upgradectl`'s exit codes (docs/usage.md: Exit codes), one home for all of them.
EXIT_COMPLETED = 0
EXIT_FAULTED = 1
EXIT_CANCELLED = 2  # also a usage error (click's own code)
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_ERROR = 4
EXIT_NO_UPGRADE = 5
EXIT_CODES = {
    RollingUpgradeStatusCode.COMPLETED: EXIT_COMPLETED,
    RollingUpgradeStatusCode.FAULTED: EXIT_FAULTED,
    RollingUpgradeStatusCode.CANCELLED: EXIT_CANCELLED,
}
# How long `status` and `watch` wait for a just-started upgrade's admission, and for a query.
ADMISSION_WAIT = 60.0
QUERY_TIMEOUT = timedelta(seconds=30)


class UpgradeRefused(Exception):
    """The upgrade was not started, or stopped at admission; nothing was touched."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class UpgradeFailed(Exception):
    """The workflow failed in a way that carries no upgrade report."""


class NoSuchUpgrade(Exception):
    """The scale set has no upgrade (or, for a cancel, no running one)."""


def reported_properties(report: UpgradeReport) -> RollingUpgradeStatusProperties:
    """The report's status properties: the workflows always fill them in (only Azure's minimal
    status document has none), so a report without them is a failure, not an outcome."""
    properties = report.status.properties
    if properties is None:
        raise UpgradeFailed(f"the upgrade of {report.status.name or 'the scale set'} reported no status")
    return properties


async def start_upgrade(
    client: Client,
    request: UpgradeRequest,
    task_queue: str,
    *,
    admission_timeout: float = 60.0,
    on_preflight: Callable[[Preflight], None] | None = None,
) -> tuple[UpgradeHandle, Admission]:
    """Preflight the upgrade, start it, and return once the workflow has admitted it.

    The preflight (a short workflow) reads the scale set and resolves the image or the extension
    versions, so a refusal comes before anything starts, and the upgrade starts with its Web UI
    summary (scale set, from and to image or versions, instance count) and details (the change
    from → to, the effective policy). `on_preflight` sees the preflight before the start.
    """
    workflow_id = upgrade_workflow_id(request.scale_set)
    preflight = await run_preflight(client, request, task_queue, admission_timeout)
    if on_preflight is not None:
        on_preflight(preflight)
    start: WithStartWorkflowOperation[Any, UpgradeReport] = WithStartWorkflowOperation(
        ROLLING_UPGRADE_WORKFLOW,
        request,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        result_type=UpgradeReport,
        static_summary=preflight.summary,
        static_details=presentation.change_details(preflight_change(preflight)) + "\n\n" + preflight.details,
        search_attributes=search_attributes.at_start(
            request.scale_set, str(preflight.change), request.started_by
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
        holder = await upgrade_holder(client, request.scale_set)
        raise UpgradeRefused(
            RefusalCode.UPGRADE_IN_PROGRESS,
            f"scale set {request.scale_set!r} is already being upgraded (workflow "
            f"{workflow_id}{holder}); watch it with `upgradectl watch {request.scale_set}` or "
            f"stop it with `upgradectl cancel {request.scale_set}`",
        ) from None
    except WorkflowUpdateFailedError as err:
        refuse_if_declined(err.cause)
        raise
    except TimeoutError:
        raise UpgradeFailed(
            f"the upgrade was submitted as workflow {workflow_id} but no worker admitted it "
            f"within {admission_timeout:.0f} s: is a worker polling task queue {task_queue!r}?"
        ) from None
    return await start.workflow_handle(), admission


def preflight_change(preflight: Preflight) -> str:
    """The change an upgrade would carry, from → to, as the preflight found it."""
    return presentation.describe_change(preflight.change, preflight.from_images)


def report_change(report: UpgradeReport) -> str:
    """The change an upgrade carries, from → to: `OS image …:2024.11.01 → 2024.12.01` or
    `extension agent 1.2.0 → 1.3.0`; as asked when it was not admitted (refused)."""
    change = report.change
    if not report.instances or (change.image is None and not change.extensions):
        return report.request.change_asked if report.request else "unknown (not admitted)"
    return presentation.describe_change(change, presentation.sources_of(report.instances))


async def upgrade_holder(client: Client, scale_set: str) -> str:
    """Who holds the scale set's running upgrade, as ", run R, started by X" (startedBy: User,
    Platform for an automatic rollout); empty if that cannot be read."""
    try:
        description = await upgrade_handle(client, scale_set).describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError:
        return ""
    started_by = description.typed_search_attributes.get(search_attributes.STARTED_BY)
    text = f", run {description.run_id}" if description.run_id else ""
    if started_by:
        text += f", started by {started_by}"
        if started_by == "Platform":
            text += ": an automatic OS image upgrade holds it"
    return text


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
    except TimeoutError:
        raise UpgradeFailed(
            f"no worker answered the preflight of {request.scale_set!r} within {timeout:.0f} s: "
            f"is a worker polling task queue {task_queue!r}?"
        ) from None


# A rolling upgrade's handle: its result is the UpgradeReport.
UpgradeHandle = WorkflowHandle[Any, UpgradeReport]


def upgrade_handle(client: Client, scale_set: str) -> UpgradeHandle:
    """The latest upgrade of the scale set (running or finished)."""
    return client.get_workflow_handle(upgrade_workflow_id(scale_set), result_type=UpgradeReport)


async def get_status(client: Client, scale_set: str) -> RollingUpgradeStatusInfo:
    status: RollingUpgradeStatusInfo = await upgrade_handle(client, scale_set).query(
        STATUS_QUERY, result_type=RollingUpgradeStatusInfo
    )
    return status


async def get_instances(client: Client, scale_set: str) -> list[InstanceProgress]:
    instances: list[InstanceProgress] = await upgrade_handle(client, scale_set).query(
        INSTANCES_QUERY, result_type=list[InstanceProgress]
    )
    return instances


async def describe_upgrade(handle: UpgradeHandle, scale_set: str) -> WorkflowExecutionDescription:
    """The latest upgrade's execution, or NoSuchUpgrade if the scale set never had one."""
    try:
        return await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NoSuchUpgrade(f"scale set {scale_set!r} has no upgrade") from None
        raise


def running_build(description: WorkflowExecutionDescription) -> str | None:
    """The worker build an upgrade runs on (it is pinned to the one that started it), from its
    Temporal description; None when unversioned workers ran it."""
    info = description.raw_description.workflow_execution_info.versioning_info
    version = info.deployment_version
    if not version.build_id:
        return None
    behavior = VersioningBehavior(info.behavior).name.lower().replace("_", "-")
    return f"{version.build_id} of worker deployment {version.deployment_name} ({behavior})"


async def await_admission(handle: UpgradeHandle, timeout: float = ADMISSION_WAIT) -> None:
    """Wait (bounded) until a running upgrade is admitted or refused, so that its status counts
    every instance of the scale set. The `admit` update returns at once when it already is."""
    try:
        await asyncio.wait_for(handle.execute_update(ADMIT_UPDATE, result_type=Admission), timeout)
    except WorkflowUpdateFailedError:
        pass  # refused: the status says why
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:  # it finished meanwhile: its status stands
            raise
    except TimeoutError:
        raise UpgradeFailed(
            f"upgrade {handle.id} was not admitted within {timeout:.0f} s: is a worker running?"
        ) from None


async def start_rollback(
    client: Client, scale_set: str, by: str, task_queue: str
) -> tuple[UpgradeHandle, Admission]:
    """`upgradectl rollback`: the set's last upgrade, ended, undone by an upgrade of its own (the
    preflight refuses it, naming the version, when the previous version no longer exists)."""
    handle = upgrade_handle(client, scale_set)
    description = await describe_upgrade(handle, scale_set)
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise UpgradeRefused(
            RefusalCode.UPGRADE_IN_PROGRESS,
            f"the upgrade of {scale_set!r} is still running: cancel it first (upgradectl cancel)",
        )
    report = await query_report(handle)
    try:
        request = rollback_request(report, f"{description.id} (run {description.run_id})", by)
    except RollbackRefused as err:
        raise UpgradeRefused("NothingToRollBack", str(err)) from None
    return await start_upgrade(client, request, task_queue)


async def read_report(
    client: Client, scale_set: str, *, admission_wait: float = ADMISSION_WAIT
) -> UpgradeReport:
    """The latest upgrade's report, once it is admitted (a refused or finished one at once)."""
    handle = upgrade_handle(client, scale_set)
    description = await describe_upgrade(handle, scale_set)
    if description.status == WorkflowExecutionStatus.RUNNING:
        report = await query_report(handle)
        if report.status.id is not None:
            return report  # admitted already: no update (each would add two history events)
        await await_admission(handle, admission_wait)
    return await query_report(handle)


async def query_report(handle: UpgradeHandle) -> UpgradeReport:
    try:
        report: UpgradeReport = await handle.query(
            REPORT_QUERY, result_type=UpgradeReport, rpc_timeout=QUERY_TIMEOUT
        )
        return report
    except RPCError as err:
        if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise UpgradeFailed(
                f"no worker answered for upgrade {handle.id} within "
                f"{QUERY_TIMEOUT.total_seconds():.0f} s: is a worker running?"
            ) from None
        raise


async def cancel_upgrade(client: Client, scale_set: str, request: CancelRequest | None = None) -> None:
    """Ask the running upgrade to stop; NoSuchUpgrade if none is running."""
    handle = await running_upgrade(client, scale_set, "cancel")
    await signal_running(handle, scale_set, "cancel", CANCEL_SIGNAL, request)


async def pause_upgrade(client: Client, scale_set: str, request: PauseRequest) -> None:
    """Hold the running upgrade: the batch in flight finishes, no new batch starts until a
    resume. Durable: the signal waits in the workflow's history if no worker runs now."""
    handle = await running_upgrade(client, scale_set, "pause")
    await signal_running(handle, scale_set, "pause", PAUSE_SIGNAL, request)


async def resume_upgrade(client: Client, scale_set: str, request: ResumeRequest) -> None:
    handle = await running_upgrade(client, scale_set, "resume")
    await signal_running(handle, scale_set, "resume", RESUME_SIGNAL, request)


async def approve_upgrade(client: Client, scale_set: str, request: ApproveRequest) -> UpgradeReport | None:
    """Approve instances of the running upgrade (all pending now and later without ids). Ids
    the upgrade does not know are refused when a worker answers in time; returns the report
    read before approving (None when no worker answered)."""
    handle = await running_upgrade(client, scale_set, "approve")
    try:
        report: UpgradeReport | None = await handle.query(
            REPORT_QUERY, result_type=UpgradeReport, rpc_timeout=APPROVE_CHECK
        )
    except RPCError:
        report = None  # no worker now: the approval waits in the history all the same
    if report is not None and request.instance_ids is not None and report.instances:
        known = {i.instance_id for i in report.instances}
        unknown = [i for i in request.instance_ids if i not in known]
        if unknown:
            raise UpgradeRefused(
                "InstanceNotFound",
                f"--instances: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                f"an instance of the upgrade of {scale_set!r} ({len(known)} instances)",
            )
    await signal_running(handle, scale_set, "approve", APPROVE_SIGNAL, request)
    return report


# How long `approve` waits for the upgrade's instances to check the ids given.
APPROVE_CHECK = timedelta(seconds=5)


async def running_upgrade(client: Client, scale_set: str, action: str) -> UpgradeHandle:
    """The scale set's running upgrade; NoSuchUpgrade if it has none or the latest ended."""
    handle = upgrade_handle(client, scale_set)
    description = await describe_upgrade(handle, scale_set)
    if description.status != WorkflowExecutionStatus.RUNNING:
        raise NoSuchUpgrade(
            f"the latest upgrade of {scale_set!r} already ended ({_ended(description)}): nothing to {action}"
        )
    return handle


async def signal_running(
    handle: UpgradeHandle, scale_set: str, action: str, signal: str, payload: Any = None
) -> None:
    try:
        if payload is None:
            await handle.signal(signal)
        else:
            await handle.signal(signal, payload)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NoSuchUpgrade(
                f"the latest upgrade of {scale_set!r} ended just now: nothing to {action}"
            ) from None
        raise


def _ended(description: WorkflowExecutionDescription) -> str:
    status = description.status.name.replace("_", " ").lower() if description.status else "closed"
    words = {"failed": "Faulted or refused", "canceled": "Cancelled"}
    text = words.get(status, status)
    if description.close_time:
        text += f" at {description.close_time.isoformat(timespec='seconds')}"
    return text


async def final_report(handle: UpgradeHandle) -> UpgradeReport:
    """Wait for the end. A Faulted upgrade's report travels in its failure's details; one that
    a cancel request ended (Canceled in Temporal) still answers the `report` query."""
    try:
        return await handle.result()
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.details:
            return UpgradeReport.model_validate(cause.details[0])
        if isinstance(cause, CancelledError):
            report: UpgradeReport = await handle.query(REPORT_QUERY, result_type=UpgradeReport)
            return report
        raise UpgradeFailed(str(cause or err)) from err
