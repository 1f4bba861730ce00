"""What a running upgrade is retrying: its activities, and its batch children's, whose last
attempt failed (a bug in activity code, the fleet out of reach), with the error.

A workflow sees an activity's outcome only once its retries are over, so it cannot put this in
its own status; Temporal's description of each execution can (the Web UI shows the same under
each workflow's pending activities). `upgradectl status` reads it, so while a fixed worker is
awaited the status says what is failing and that it will be tried again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.failure.v1 import Failure
from temporalio.api.workflow.v1 import PendingActivityInfo
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from starter.upgrades import QUERY_TIMEOUT, describe_upgrade, upgrade_handle


@dataclass(frozen=True)
class Retrying:
    """An activity waiting for its next attempt (or running it) after a failed one."""

    activity: str  # its summary ("reimage ss/3 → 2024.12.01"), else its type
    attempt: int  # the attempt that is next (or running): attempt - 1 failed
    error: str  # the last failure
    next_attempt: datetime | None = None

    def text(self) -> str:
        when = f", next at {self.next_attempt:%H:%M:%S}Z" if self.next_attempt else ""
        return f"{self.activity} (attempt {self.attempt}{when}): {self.error}"


async def retrying(client: Client, scale_set: str) -> list[Retrying]:
    """The running upgrade's retried activities, its own (reads) and its batch children's."""
    handle = upgrade_handle(client, scale_set)
    description = await describe_upgrade(handle, scale_set)
    if description.status != WorkflowExecutionStatus.RUNNING:
        return []
    found = await _of(client, handle, description.raw_description.pending_activities)
    for child in description.raw_description.pending_children:
        batch = client.get_workflow_handle(child.workflow_id, run_id=child.run_id)
        batch_description = await batch.describe(rpc_timeout=QUERY_TIMEOUT)
        found += await _of(client, batch, batch_description.raw_description.pending_activities)
    return found


async def _of(
    client: Client, handle: WorkflowHandle[Any, Any], pending: Iterable[PendingActivityInfo]
) -> list[Retrying]:
    failing = [a for a in pending if a.attempt > 1 and a.HasField("last_failure")]
    if not failing:
        return []
    summaries = await _summaries(client, handle, {a.activity_id for a in failing})
    return [
        Retrying(
            activity=summaries.get(a.activity_id) or a.activity_type.name,
            attempt=a.attempt,
            error=_error(a.last_failure),
            next_attempt=a.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
            if a.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
            and a.HasField("next_attempt_schedule_time")
            else None,
        )
        for a in failing
    ]


def _error(failure: Failure) -> str:
    kind = failure.application_failure_info.type if failure.HasField("application_failure_info") else ""
    return f"{kind}: {failure.message}" if kind else failure.message


async def _summaries(
    client: Client, handle: WorkflowHandle[Any, Any], activity_ids: set[str]
) -> dict[str, str]:
    """The summaries the activities were scheduled with (what the Web UI shows), read from the
    history's end: a retried activity was scheduled lately, or in a short batch history."""
    service, converter = client.workflow_service, client.data_converter.payload_converter
    request = GetWorkflowExecutionHistoryReverseRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=handle.id, run_id=handle.run_id or ""),
    )
    found: dict[str, str] = {}
    while True:
        page = await service.get_workflow_execution_history_reverse(request, timeout=QUERY_TIMEOUT)
        for event in page.history.events:
            if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                continue
            activity_id = event.activity_task_scheduled_event_attributes.activity_id
            if activity_id in activity_ids and event.user_metadata.HasField("summary"):
                found[activity_id] = converter.from_payload(event.user_metadata.summary, str)
        if found.keys() >= activity_ids or not page.next_page_token:
            return found
        request.next_page_token = page.next_page_token
