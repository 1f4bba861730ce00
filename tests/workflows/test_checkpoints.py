"""Checkpoints (rollingUpgradePolicy.checkpoints): on the time-skipping server, through the Azure
SDK to the emulator, an upgrade stops at each checkpoint's instance count, bakes, and waits for
`approve` where asked."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from models.fleet import OperationKind
from models.status import RollingUpgradeStatusCode, UpgradeWaitKind
from models.upgrade import APPROVE_SIGNAL, ApproveRequest, InstanceProgress
from starter.upgrades import get_status
from tests.helpers.upgrades import count_ops, eventually, finish, make_scale_set, upgrade

POLICY = {
    "maxBatchInstancePercent": 20,
    "checkpoints": [{"percent": 10, "approval": True}, {"percent": 50, "bakeTime": "PT1H"}],
}


async def test_an_upgrade_stops_at_each_checkpoint_bakes_and_resumes_on_approve(ts_env, ts_worker, fleet):
    client = ts_env.client
    name = await make_scale_set(fleet, 10, update_domains=1)
    handle, _ = await upgrade(client, ts_worker.task_queue, name, policy=POLICY)

    held = await eventually(
        lambda: get_status(client, name),
        lambda s: (
            s.properties is not None
            and s.properties.wait is not None
            and "approval" in s.properties.wait.reason
        ),
    )
    assert held.properties is not None and held.properties.wait is not None
    assert held.properties.wait.kind == UpgradeWaitKind.CHECKPOINT
    assert "checkpoint 1 (10%) reached after 1 instance(s)" in held.properties.wait.reason
    await asyncio.sleep(1)
    assert sum(count_ops(await fleet.operations(name), OperationKind.REIMAGE).values()) == 1  # 10% of 10

    await handle.signal(APPROVE_SIGNAL, ApproveRequest(by="carol"))
    report = await finish(ts_env, handle)  # time skips through the hour's bake at 50%
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    passed = report.status.properties.checkpoints or []
    assert len(passed) == 2 and "checkpoint 1 (10%) reached after 1 instance(s)" in passed[0]
    assert "approved by carol" in passed[0] and "checkpoint 2 (50%) reached after 5 instance(s)" in passed[1]
    batches: dict[int, list[InstanceProgress]] = {}
    for instance in report.instances:
        batches.setdefault(instance.batch or 0, []).append(instance)
    assert [len(batches[b]) for b in sorted(batches)] == [1, 2, 2, 2, 2, 1]
    # The batch after the 50% checkpoint started once the hour's bake was over.
    baked = max(i.end_time for b in (1, 2, 3) for i in batches[b] if i.end_time)
    after = min(i.start_time for i in batches[4] if i.start_time)
    assert after - baked >= timedelta(hours=1)
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {str(i): 1 for i in range(10)}
