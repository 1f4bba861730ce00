"""`upgradectl rollback` (issue 22, item 3): the last upgrade's instances back to their previous
version, as an upgrade of its own, on the time-skipping server through the Azure SDK to the
emulator."""

from __future__ import annotations

import pytest

from models.automatic import CHECK_NOW_SIGNAL, RolloutState
from models.fleet import FaultSpec, FleetOperation, OperationKind
from models.rollback import RollbackState, rollout_rollback_id
from models.status import RollingUpgradeStatusCode
from models.upgrade import InstanceState
from starter.history import history_target
from starter.rollout_rollback import rollback_status, start_rollout_rollback
from starter.upgrades import UpgradeRefused, start_rollback
from tests.helpers.automatic import Images, enroll, finished, make_set, rollout_of, watcher
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
    assert report.status.properties.rollback_of == report.request.rollback_of  # status and Web UI show it
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


async def test_a_rollout_is_rolled_back_as_a_whole_phases_in_reverse_order(ts_env, ts_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    west = await make_set(fleet, images.latest, "westeurope", 2)  # the canary: fewest instances
    east = await make_set(fleet, images.latest, "eastus", 3)
    watching = await watcher(ts_env.client, ts_worker.task_queue)
    for name in (west, east):
        await enroll(watching, name)
    await fleet.publish_image(images.at("1.1.0"))
    await watching.signal(CHECK_NOW_SIGNAL)
    rollout = await finished(ts_env, await rollout_of(ts_env.client, images, "1.1.0"))
    assert rollout.state == RolloutState.COMPLETED and rollout.phases == [["westeurope"], ["eastus"]]

    _, request = await start_rollout_rollback(ts_env.client, ts_worker.task_queue, "1.1.0", None, "carol")
    assert [[r.scale_set for r in phase] for phase in request.phases] == [[east], [west]]
    handle = ts_env.client.get_workflow_handle(rollout_rollback_id(rollout.workflow_id))
    async with ts_env.time_skipping_unlocked():
        await handle.result()
    status = await rollback_status(ts_env.client, rollout.workflow_id)
    assert status.state == RollbackState.COMPLETED
    assert {i.scale_set: i.state for i in status.sets} == {
        west: RollbackState.COMPLETED,
        east: RollbackState.COMPLETED,
    }

    def back(ops: list[FleetOperation]) -> list[FleetOperation]:
        return [op for op in ops if op.image_reference and op.image_reference.resolved_version == "1.0.0"]

    west_back, east_back = back(await fleet.operations(west)), back(await fleet.operations(east))
    assert sorted(op.instance_id for op in west_back) == ["0", "1"]
    assert sorted(op.instance_id for op in east_back) == ["0", "1", "2"]
    # The last phase first: east's instances were back before west's rollback began.
    assert max(op.end_time or op.start_time for op in east_back) <= min(op.start_time for op in west_back)
    with pytest.raises(UpgradeRefused) as again:
        await start_rollout_rollback(ts_env.client, ts_worker.task_queue, "1.1.0", None, "carol")
    assert again.value.code == "UpgradedSinceTheRollout"
