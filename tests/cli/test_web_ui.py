"""What the Temporal Web UI shows of an upgrade, read back the way the UI reads it: static
summary and details from describe, current details from the `__temporal_workflow_metadata`
query, search attributes from describe and from list queries; for a running and a finished one."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from models import search_attributes
from models.fleet import FaultSpec
from models.upgrade import upgrade_workflow_id
from starter.upgrades import UpgradeHandle, cancel_upgrade, final_report
from tests.helpers.upgrades import V2, eventually, make_scale_set, upgrade, upgrade_paused_after_first_batch


async def current_details(handle: UpgradeHandle) -> str:
    metadata: WorkflowMetadata = await handle.query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return metadata.current_details


async def test_the_web_ui_shows_summary_details_and_live_progress(local_env, local_worker, fleet):
    client = local_env.client
    name, handle, admission = await upgrade_paused_after_first_batch(client, local_worker.task_queue, fleet)

    # Running: a static summary and the effective policy as static details.
    description = await handle.describe()
    assert await description.static_summary() == f"{name}: 2024.11.01 → 2024.12.01 · 6 instances"
    details = await description.static_details()
    assert "**Effective policy**" in details
    assert "| maxBatchInstancePercent | 20 |" in details
    assert "| pauseTimeBetweenBatches | PT1H |" in details
    assert "| healthWaitTimeout | PT2S |" in details
    assert "| health source | the Application Health extension (vmHealth) |" in details
    attributes = description.typed_search_attributes
    assert attributes.get(search_attributes.SCALE_SET) == name
    assert attributes.get(search_attributes.TARGET_IMAGE) == "Contoso:web-os:2024:2024.12.01"
    assert attributes.get(search_attributes.UPGRADE_STATUS) == "RollingForward"
    assert attributes.get(search_attributes.STARTED_BY) == "User"

    # Live current details: a Markdown table of the counts.
    live = await current_details(handle)
    assert live.startswith("**RollingForward** · batch 1 of 6")
    for row in (
        "| succeeded | 1 |",
        "| failed | 0 |",
        "| in progress | 0 |",
        "| pending | 5 |",
        "| skipped | 0 |",
    ):
        assert row in live
    assert "Health read from the Application Health extension (vmHealth)." in live

    # Each batch child has its own summary, each activity its own.
    child = client.get_workflow_handle(f"{upgrade_workflow_id(name)}/batch-1")
    child_description = await child.describe()
    assert await child_description.static_summary() == "batch 1 of 6: 1 instance(s), zone 1, update domain 0"
    history = await child.fetch_history()
    activity_summaries = [
        local_env.client.data_converter.payload_converter.from_payload(e.user_metadata.summary, str)
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert f"reimage {name}/0 → 2024.12.01" in activity_summaries
    assert f"wait for health of {name}/0" in activity_summaries

    # Finished: the status follows in search attributes, list queries and current details.
    await cancel_upgrade(client, name)
    await final_report(handle)
    finished = await handle.describe()
    assert finished.typed_search_attributes.get(search_attributes.UPGRADE_STATUS) == "Cancelled"
    assert (await current_details(handle)).startswith("**Cancelled** · batch 1 of")
    query = f'ScaleSet = "{name}" AND UpgradeStatus = "Cancelled" AND WorkflowType = "RollingUpgradeWorkflow"'
    found = await eventually(lambda: _ids(client, query), lambda ids: len(ids) == 1, timeout=30)
    assert found == [upgrade_workflow_id(name)]
    assert admission.run_id == finished.run_id


async def _ids(client: Client, query: str) -> list[str]:
    return [execution.id async for execution in client.list_workflows(query)]


async def test_a_faulted_upgrade_is_findable_by_status(local_env, local_worker, fleet):
    name = await make_scale_set(fleet, 5, faults=FaultSpec(unhealthy_images=[V2.version]))
    handle, _ = await upgrade(local_env.client, local_worker.task_queue, name)
    report = await final_report(handle)
    assert report.status.properties.running_status.code == "Faulted"
    description = await handle.describe()
    assert description.typed_search_attributes.get(search_attributes.UPGRADE_STATUS) == "Faulted"
    live = await current_details(handle)
    assert live.startswith("**Faulted**")
    assert "`MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade`" in live
