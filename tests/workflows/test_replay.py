"""Every recorded history in tests/histories replays against today's workflow code.

A change to workflow code that alters the commands it issues (a new activity, a timer moved,
a child started in another order) fails here unless it is guarded with workflow.patched; see
docs/maintaining.md, "Changing workflow code safely". `make histories` records new scenarios.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.record_histories import HISTORIES, SCENARIOS, workflow_id_of
from worker.assembly import WORKFLOWS

RECORDED = sorted(HISTORIES.rglob("*.json"))


def test_every_scenario_has_a_recording():
    assert {path.name.partition(".")[0] for path in RECORDED} >= set(SCENARIOS)


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: str(p.relative_to(HISTORIES)))
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(workflow_id_of(path), path.read_text())
    replayer = Replayer(workflows=WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name} no longer replays: {result.replay_failure}"
