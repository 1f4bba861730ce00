"""Worker logs: JSON lines with the upgrade's context, written once however often it replays."""

from __future__ import annotations

import io
import json
import logging
import uuid

from temporalio import activity, workflow

from models.fleet import FaultSpec
from models.upgrade import upgrade_workflow_id
from tests.helpers.upgrades import finish, make_scale_set, upgrade
from worker.assembly import build_worker
from worker.logs import configure_logging


async def test_logs_carry_context_and_replays_never_repeat_them(ts_env, fleet, azure):
    root = logging.getLogger()
    saved = (
        root.handlers[:],
        root.level,
        workflow.logger.workflow_info_on_message,
        activity.logger.activity_info_on_message,
    )
    buffer = io.StringIO()
    configure_logging("INFO", stream=buffer, json_lines=True)
    try:
        name = await make_scale_set(
            fleet, 6, update_domains=1, faults=FaultSpec(unhealthy_after_upgrade=["2"])
        )
        # No workflow cache: every workflow task replays the whole history from the start.
        async with build_worker(ts_env.client, azure, f"tq-{uuid.uuid4()}", max_cached_workflows=0) as worker:
            handle, _ = await upgrade(
                ts_env.client, worker.task_queue, name, policy={"maxUnhealthyUpgradedInstancePercent": 50}
            )
            await finish(ts_env, handle)
    finally:
        (
            root.handlers[:],
            level,
            workflow.logger.workflow_info_on_message,
            activity.logger.activity_info_on_message,
        ) = saved
        root.setLevel(level)

    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    parent = upgrade_workflow_id(name)
    mine = [line for line in lines if str(line.get("workflow_id", "")).startswith(parent)]

    admitted = [line for line in mine if line["event"].startswith("upgrade admitted")]
    assert len(admitted) == 1
    assert admitted[0]["run_id"] == (await handle.describe()).run_id
    assert admitted[0]["scale_set"] == name and admitted[0]["level"] == "info"

    started = [line for line in mine if line["event"] == "batch started"]
    assert [line["batch"] for line in started] == [1, 2, 3, 4, 5, 6]
    assert [line["instance"] for line in started] == [[str(i)] for i in range(6)]

    outcomes = [line for line in mine if line["event"].startswith("instance ")]
    assert sorted(line["instance"] for line in outcomes) == [str(i) for i in range(6)]
    rolled_back = next(line for line in outcomes if line["instance"] == "2")
    assert rolled_back["event"].startswith("instance RolledBack")
    assert rolled_back["workflow_id"] == f"{parent}/batch-3" and rolled_back["batch"] == 3

    # Activity lines carry the SDK's context too: one line per reimage done, and the health waits.
    reimages = [line for line in mine if line.get("activity") == "reimage_instance"]
    assert sorted(line["instance"] for line in reimages) == [str(i) for i in range(6)]
    assert all(line["attempt"] == 1 and line["run_id"] for line in reimages)
    healthy = [line for line in mine if line.get("activity") == "wait_for_health"]
    # Instance 2 is healthy again after its restore.
    assert sorted({line["instance"] for line in healthy}) == [str(i) for i in range(6)]
    assert all(line["attempt"] == 1 and line["run_id"] and line["scale_set"] == name for line in healthy)
    assert len([line for line in mine if line["event"].startswith("upgrade ended")]) == 1
