"""Alarm gates end to end on the time-skipping server, through the Azure SDK to the emulator: an
alarm that fires mid-batch stops the upgrade and rolls back exactly the batch in flight (the
emulator's operations log), one that fires between batches stops it before the next, and one that
cannot be read holds the upgrade, then faults it after alarmUnreachableTimeout. Sources: an HTTP
endpoint and a Prometheus server (a tiny local server), an Azure Monitor metric alert (the
emulator's, through ARM).

Until `finish` the time-skipping server runs in real time, so a test sets the alarm once the batch
it means is in flight; `finish` then skips to the next read (every 10 s of the health wait)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fleet.emulator.admin import EmulatorAdmin
from models.alarms import Alarm, AlarmState
from models.errors import AlarmErrorCode, FailureCause
from models.fleet import FaultSpec, OperationKind
from models.policy import ApplicationHealthSettings
from models.status import RollingUpgradeStatusCode, UpgradeWaitKind
from models.upgrade import InstanceState
from starter.upgrades import get_status
from tests.helpers.alarms import alarm_server
from tests.helpers.upgrades import CLOSED, V1, V2, count_ops, eventually, finish, make_scale_set, upgrade

FAULTED = RollingUpgradeStatusCode.FAULTED
# Instance 3 (batch 2 of 2-instance batches) stays unhealthy on the new image: its batch stays in
# flight for the minute-long health wait, long enough for an alarm read (every 10 s).
SLOW_BATCH_2 = FaultSpec(unhealthy_after_upgrade=["3"])
MINUTE_WAIT = ApplicationHealthSettings(interval_in_seconds=1, health_wait_timeout=timedelta(minutes=1))


async def batch_2_in_flight(fleet: EmulatorAdmin, name: str) -> None:
    """Instance 2 of batch 2 upgraded (healthy) and instance 3 reimaged, waiting for health."""
    await eventually(lambda: fleet.operations(name), lambda ops: {op.instance_id for op in ops} >= {"2", "3"})


async def test_an_http_alarm_fired_mid_batch_rolls_back_exactly_the_batch_in_flight(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10, update_domains=1, faults=SLOW_BATCH_2)
    with alarm_server() as server:
        app = Alarm.model_validate({"name": "app", "http": {"url": f"{server.url}/state"}})
        handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, health=MINUTE_WAIT, alarms=[app])
        await batch_2_in_flight(fleet, name)
        server.state = "firing"
        report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == FAULTED
    assert status.error.code == AlarmErrorCode.FIRED
    assert "alarm app (value firing) fired while batch 2 was in flight" in status.error.message
    assert "rolled back (rollbackOnAlarm)" in status.error.message
    assert [(a.name, a.state, a.value) for a in status.alarms] == [("app", AlarmState.FIRING, "firing")]
    states = {i.instance_id: i for i in report.instances}
    assert [states[i].state for i in ("0", "1")] == [InstanceState.SUCCEEDED] * 2
    assert [states[i].state for i in ("2", "3")] == [InstanceState.ROLLED_BACK] * 2
    assert {states[i].cause for i in ("2", "3")} == {FailureCause.ALARM}
    assert "on the alarm:" in states["2"].message
    assert all(states[str(i)].state == InstanceState.NOT_STARTED for i in range(4, 10))
    # The operations log: batch 1 untouched, batch 2 (the healthy 2 too) restored once, no other.
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {"0": 1, "1": 1, "2": 1, "3": 1}
    assert count_ops(ops, OperationKind.RESTORE) == {"2": 1, "3": 1}
    after = {i.instance_id: i.image_reference for i in (await fleet.show_scale_set(name)).instances}
    assert after["0"].same_image(V2) and after["1"].same_image(V2)
    assert after["2"].same_image(V1) and after["3"].same_image(V1)
    # The health wait was cut short: the minute had not passed.
    assert states["3"].end_time - states["3"].start_time < timedelta(minutes=1)


async def test_an_azure_monitor_alert_fired_mid_batch_without_rollback_lets_the_batch_finish(
    ts_env, ts_worker, fleet
):
    name = await make_scale_set(fleet, 10, update_domains=1, faults=SLOW_BATCH_2)
    rule = f"high-cpu-{uuid.uuid4().hex[:6]}"
    await fleet.set_metric_alert(rule, "Healthy", throttle_calls=1)  # ARM throttles a read: retried
    cpu = Alarm.model_validate({"name": "cpu", "azureMonitor": {"metricAlert": rule}})
    handle, _ = await upgrade(
        ts_env.client, ts_worker.task_queue, name, health=MINUTE_WAIT, alarms=[cpu], rollback_on_alarm=False
    )
    await batch_2_in_flight(fleet, name)
    await fleet.set_metric_alert(rule, "Unhealthy")
    report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.error.code == AlarmErrorCode.FIRED
    assert (
        "alarm cpu (value Unhealthy (1 of 1 series)) fired while batch 2 was in flight"
        in status.error.message
    )
    assert "it finished (rollbackOnAlarm is false)" in status.error.message
    states = {i.instance_id: i.state for i in report.instances}
    # Batch 2 finished as the health wait said: 2 healthy and kept, 3 rolled back for its health.
    assert (states["2"], states["3"]) == (InstanceState.SUCCEEDED, InstanceState.ROLLED_BACK)
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.RESTORE) == {"3": 1}
    assert (await fleet.metric_alert(rule))["reads"] >= 3  # before batch 1, before batch 2, during it


async def test_a_prometheus_alarm_that_fires_between_batches_stops_before_the_next(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 10, update_domains=1)
    with alarm_server() as server:
        server.value = 0.01
        errors = Alarm.model_validate(
            {
                "name": "errors",
                "prometheus": {"url": server.url, "query": "rate(errors[5m])", "threshold": 0.05},
            }
        )
        handle, _ = await upgrade(
            ts_env.client,
            ts_worker.task_queue,
            name,
            alarms=[errors],
            policy={"pauseTimeBetweenBatches": "PT1H"},
        )
        await eventually(
            lambda: get_status(ts_env.client, name),
            lambda s: s.properties.progress.successful_instance_count == 2,
        )
        server.value = 0.5
        report = await finish(ts_env, handle)
        assert all(path.startswith("/api/v1/query?query=rate%28errors") for path in server.reads)

    status = report.status.properties
    assert status.error.code == AlarmErrorCode.FIRED
    assert "alarm errors (value 0.5) fired before the next batch started" in status.error.message
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.REIMAGE) == {"0": 1, "1": 1}
    assert count_ops(ops, OperationKind.RESTORE) == {}


async def test_an_unreachable_alarm_holds_the_upgrade_then_faults_after_its_bound(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)
    app = Alarm.model_validate({"name": "app", "http": {"url": f"http://{CLOSED}/state"}})
    handle, _ = await upgrade(
        ts_env.client,
        ts_worker.task_queue,
        name,
        alarms=[app],
        alarm_unreachable_timeout=timedelta(minutes=2),
    )
    held = await eventually(lambda: get_status(ts_env.client, name), lambda s: s.properties.wait is not None)
    wait = held.properties.wait
    assert wait.kind == UpgradeWaitKind.ALARM_UNREACHABLE
    assert wait.reason.startswith("holding: alarm app (ConnectError")
    assert wait.until - wait.since == timedelta(minutes=2)
    assert held.properties.alarms[0].state == AlarmState.UNREACHABLE
    assert await fleet.operations(name) == []  # no batch starts while it holds

    report = await finish(ts_env, handle)
    status = report.status.properties
    assert status.running_status.code == FAULTED
    assert status.error.code == AlarmErrorCode.UNREACHABLE
    assert "alarm app (ConnectError" in status.error.message
    assert "for the alarmUnreachableTimeout of PT2M" in status.error.message
    assert await fleet.operations(name) == []


async def test_an_alarm_that_can_be_read_again_releases_the_hold(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 4, update_domains=1)
    with alarm_server() as server:
        server.status = 503
        app = Alarm.model_validate({"name": "app", "http": {"url": f"{server.url}/state"}})
        handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name, alarms=[app])
        held = await eventually(
            lambda: get_status(ts_env.client, name), lambda s: s.properties.wait is not None
        )
        assert "answered HTTP 503" in held.properties.wait.reason
        server.status = 200
        report = await finish(ts_env, handle)

    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED
    assert status.wait is None
    assert [(a.name, a.state) for a in status.alarms] == [("app", AlarmState.OK)]
    assert count_ops(await fleet.operations(name), OperationKind.REIMAGE) == {str(i): 1 for i in range(4)}
