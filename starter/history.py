"""`upgradectl history`: past upgrades of a scale set, as Azure's OS upgrade history lists them.

Found through Temporal visibility (the ScaleSet search attribute). A finished upgrade keeps
its history entry in its memo, so listing needs no worker; a running one (or one from before the
memo) is asked for its report. Like Azure, the default is the last five within two months;
`--all` lists everything the namespace still retains.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from models.status import UpgradeOperationHistoricalStatusInfo
from models.upgrade import REPORT_QUERY, ROLLING_UPGRADE_WORKFLOW, UpgradeReport

AZURE_WINDOW = timedelta(days=60)
AZURE_COUNT = 5


def history_query(scale_set: str, *, everything: bool, now: datetime) -> str:
    query = f'WorkflowType = "{ROLLING_UPGRADE_WORKFLOW}" AND ScaleSet = "{scale_set}"'
    if not everything:
        since = (now - AZURE_WINDOW).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        query += f' AND StartTime > "{since}"'
    return query


def history_target(entry: UpgradeOperationHistoricalStatusInfo) -> str:
    """What an upgrade moved to, as `history` lists it: the image's exact version, or
    `extension agent 1.3.0, logs 2.1.4` for an extension upgrade; a rollback and a MaxSurge
    upgrade's instances created and deleted said so."""
    properties = entry.properties
    if properties.extensions:
        target = "extension " + ", ".join(
            f"{e.get('name', '?')} {e.get('version', '?')}" for e in properties.extensions
        )
    else:
        image = properties.target_image_reference or {}
        target = image.get("exactVersion") or image.get("version") or "-"
    if properties.rollback_of:
        target = f"rollback to {target} of {properties.rollback_of}"
    replaced = properties.replaced_instances or {}
    if replaced:  # MaxSurge: `2024.12.01 (created 6, 7; deleted 0, 3)`
        target += f" (created {', '.join(replaced.values())}; deleted {', '.join(replaced)})"
    return target


async def entry_of(client: Client, execution: WorkflowExecution) -> UpgradeOperationHistoricalStatusInfo:
    memo = await execution.memo()
    if "upgrade" in memo:
        return UpgradeOperationHistoricalStatusInfo.model_validate(memo["upgrade"])
    handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
    report: UpgradeReport = await handle.query(REPORT_QUERY, result_type=UpgradeReport)
    ended = execution.close_time if execution.status != WorkflowExecutionStatus.RUNNING else None
    return report.history_entry(ended)


async def upgrade_history(
    client: Client, scale_set: str, *, everything: bool = False, now: datetime | None = None
) -> list[UpgradeOperationHistoricalStatusInfo]:
    """Newest first."""
    now = now or datetime.now(UTC)
    executions = [
        e async for e in client.list_workflows(history_query(scale_set, everything=everything, now=now))
    ]
    executions.sort(key=lambda e: e.start_time, reverse=True)
    if not everything:
        executions = executions[:AZURE_COUNT]
    return [await entry_of(client, execution) for execution in executions]
