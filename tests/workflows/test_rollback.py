"""`upgradectl rollback` (issue 22, item 3): the last upgrade's instances back to their previous
version, as an upgrade of its own, on the time-skipping server through the Azure SDK to the
emulator."""

from __future__ import annotations

import pytest

from models.fleet import FaultSpec, OperationKind
from models.status import RollingUpgradeStatusCode
from models.upgrade import InstanceState
from starter.history import history_target
from starter.upgrades import UpgradeRefused, start_rollback
from tests.helpers.upgrades import V1, V2, count_ops, finish, make_scale_set, upgrade

HALF = {
    "maxBatchInstancePercent": 50,
    "maxUnhealthyInstancePercent": 50,
    "maxUnhealthyUpgradedInstancePercent": 50,
}


async def test_rollback_returns_every_instance_the_last_upgrade_moved_exactly_once(ts_env, ts_worker, fleet):
    # Instance 3 fails health on V2 and is rolled back by the upgrade itself: not moved.
    name = await make_scale_set(fleet, 4, update_domains=1, faults=FaultSpec(unhealthy_after_upgrade=["3"]))
    await fleet.publish_image(V1)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=HALF)
    first = await finish(ts_env, handle)
    assert first.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    moved = {i.instance_id for i in first.instances if i.state == InstanceState.SUCCEEDED}
    assert moved == {"0", "1", "2"}

    rollback, admission = await start_rollback(ts_env.client, name, "carol", ts_worker.task_queue)
    assert admission.to_upgrade == 3 and admission.target_image is not None
    assert admission.target_image.resolved_version == V1.version
    report = await finish(ts_env, rollback)

    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert report.request is not None and report.request.started_by == "carol"
    assert report.request.rollback_of and report.request.rollback_of.startswith(f"rolling-upgrade/{name}")
    assert history_target(report.history_entry(None)).startswith(
        f"rollback to {V1.version} of rolling-upgrade/"
    )
    [untouched] = [i for i in report.instances if i.state == InstanceState.SKIPPED]
    assert untouched.instance_id == "3"  # back on V1 already: not moved (and on the target anyway)
    ops = [op for op in await fleet.operations(name) if op.kind == OperationKind.REIMAGE]
    back = [op for op in ops if op.image_reference and op.image_reference.resolved_version == V1.version]
    assert sorted(op.instance_id for op in back if op.instance_id != "3") == ["0", "1", "2"]
    assert count_ops(ops, OperationKind.REIMAGE, V2) == {"0": 1, "1": 1, "2": 1, "3": 1}


async def test_rollback_is_refused_while_an_upgrade_runs_and_when_nothing_was_moved(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 2, update_domains=1, faults=FaultSpec(unhealthy_images=[V2.version]))
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, policy=HALF)
    with pytest.raises(UpgradeRefused) as running:
        await start_rollback(ts_env.client, name, "carol", ts_worker.task_queue)
    assert running.value.code == "RollingUpgradeInProgress" and "cancel it first" in running.value.message
    await finish(ts_env, handle)  # every instance failed health and was rolled back by the upgrade
    with pytest.raises(UpgradeRefused) as nothing:
        await start_rollback(ts_env.client, name, "carol", ts_worker.task_queue)
    assert (
        nothing.value.code == "NothingToRollBack"
        and "moved no instance that is still on its change" in nothing.value.message
    )
