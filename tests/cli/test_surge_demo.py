"""The demo's MaxSurge lines (starter/surge_demo.py): one per batch, from the upgrade's report."""

from __future__ import annotations

import pytest

from models.status import RollingUpgradeStatusInfo
from models.upgrade import InstanceProgress, InstanceState, UpgradeReport
from starter.surge_demo import batch_lines

pytestmark = pytest.mark.fast


def instance(
    new: str, old: str | None, batch: int, zone: str, state: InstanceState, message: str = ""
) -> InstanceProgress:
    return InstanceProgress(
        instance_id=new, replaces=old, batch=batch, zone=zone, state=state, from_image="v1", message=message
    )


def test_each_batch_says_what_was_created_and_deleted_kept_moved_or_done_in_place():
    report = UpgradeReport(
        status=RollingUpgradeStatusInfo(),
        instances=[
            instance("6", "0", 1, "1", InstanceState.SUCCEEDED),
            instance("7", "1", 1, "2", InstanceState.SUCCEEDED),
            instance("10", "5", 2, "2", InstanceState.SUCCEEDED, "in zone 2, not 3: Azure placed it there"),
            instance("2", None, 2, "3", InstanceState.ROLLED_BACK),
            instance("3", None, 3, "1", InstanceState.SUCCEEDED, "upgraded in place: no quota"),
        ],
    )
    assert batch_lines(report) == [
        "batch 1: created 6, 7 (healthy), deleted 0, 1",
        "batch 2: created 10 (healthy), deleted 5; 10 in zone 2: Azure placed it there (the zone had nothing "
        "left to replace); new instance(s) for 2 failed health: deleted, the old kept",
        "batch 3: 3 upgraded in place (no core quota for new instances)",
    ]
