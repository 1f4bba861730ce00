"""Where health comes from (seed 000): the Application Health extension, else the load balancer
health probe (networkProfile.healthProbe), else power and provisioning state. Read through the
Azure SDK back end from the emulator over HTTPS, then through upgrades on the time-skipping
server."""

from __future__ import annotations

from models.errors import UpgradeErrorCode
from models.fleet import FaultSpec, HealthExtensionSpec, HealthSource, HealthState, OperationKind
from models.policy import ApplicationHealthSettings
from models.status import RollingUpgradeStatusCode
from models.upgrade import InstanceState
from tests.helpers.upgrades import V1, count_ops, finish, make_scale_set, upgrade

HEALTHY, UNHEALTHY = HealthState.HEALTHY, HealthState.UNHEALTHY


async def test_a_set_with_a_load_balancer_probe_reads_health_from_the_probe(fleet, azure):
    name = await make_scale_set(fleet, 4, health_source="loadBalancerProbe")
    await fleet.set_health(name, "2", UNHEALTHY)

    view = await azure.get_scale_set(name)
    assert view.health_source == HealthSource.LOAD_BALANCER_PROBE
    assert view.health_probe_id is not None and view.health_probe_id.endswith(
        f"/loadBalancers/{name}-lb/probes/health"
    )
    assert view.health_extension is None
    assert {i.instance_id: i.health for i in view.instances} == {
        "0": HEALTHY,
        "1": HEALTHY,
        "2": UNHEALTHY,
        "3": HEALTHY,
    }
    assert (await azure.read_health(name)).health == {
        "0": HEALTHY,
        "1": HEALTHY,
        "2": UNHEALTHY,
        "3": HEALTHY,
    }
    probe = await azure.probe_health(name, "2", ApplicationHealthSettings())
    assert probe.state == UNHEALTHY and "load balancer probe: Down" in (probe.detail or "")
    assert (await azure.probe_health(name, "1", ApplicationHealthSettings())).state == HEALTHY


async def test_a_set_without_either_source_reads_power_and_provisioning_state(fleet, azure):
    name = await make_scale_set(fleet, 3, health_source="none")
    # The application's own health means nothing without a probe: the VM runs.
    await fleet.set_health(name, "1", UNHEALTHY)
    view = await azure.get_scale_set(name)
    assert view.health_source == HealthSource.POWER_STATE
    assert view.health_probe_id is None and view.health_extension is None
    assert [i.health for i in view.instances] == [HEALTHY, HEALTHY, HEALTHY]
    reading = await azure.read_health(name)
    assert set(reading.health.values()) == {HEALTHY}


async def test_the_extensions_settings_are_read_from_the_model(fleet, azure):
    spec = HealthExtensionSpec(
        protocol="https", port=8443, request_path="/ready", number_of_probes=3, rich=False
    )
    name = await make_scale_set(fleet, 2, health_extension=spec)
    view = await azure.get_scale_set(name)
    assert view.health_source == HealthSource.EXTENSION
    settings = view.health_extension
    assert settings is not None
    assert (settings.protocol, settings.port, settings.request_path) == ("https", 8443, "/ready")
    assert (settings.number_of_probes, settings.health_states) == (3, "binary")


async def test_an_upgrade_of_a_load_balanced_set_completes_and_says_where_health_came_from(
    ts_env, ts_worker, fleet
):
    """Before health sources, every instance read Unknown and the gate before the upgrade faulted
    with "N of N unhealthy"."""
    name = await make_scale_set(fleet, 5, health_source="loadBalancerProbe")
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)
    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.COMPLETED, status.error
    assert status.progress.successful_instance_count == 5
    rows = dict(report.request.effective_policy())
    assert rows["health source"] == f"the load balancer health probe {name}-lb/probes/health"
    assert "health extension (the model's)" not in rows


async def test_the_load_balancer_probe_catches_a_bad_image_and_rolls_it_back(ts_env, ts_worker, fleet):
    name = await make_scale_set(
        fleet,
        5,
        update_domains=1,
        health_source="loadBalancerProbe",
        faults=FaultSpec(unhealthy_images=["2024.12.01"]),
    )
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)
    status = report.status.properties
    assert status.running_status.code == RollingUpgradeStatusCode.FAULTED
    assert status.error.code == UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
    rolled_back = [i for i in report.instances if i.state == InstanceState.ROLLED_BACK]
    assert [i.instance_id for i in rolled_back] == ["0"]
    after = await fleet.show_scale_set(name)
    assert all(i.image_reference.same_image(V1) for i in after.instances)
    assert count_ops(await fleet.operations(name), OperationKind.RESTORE) == {"0": 1}


async def test_an_upgrade_of_a_set_without_a_probe_uses_power_state_and_says_so(ts_env, ts_worker, fleet):
    name = await make_scale_set(fleet, 3, health_source="none")
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    rows = dict(report.request.effective_policy())
    assert rows["health source"] == "power state and provisioning state (no health probe)"


async def test_status_shows_the_extensions_own_settings(ts_env, ts_worker, fleet):
    spec = HealthExtensionSpec(port=8080, request_path="/healthz", number_of_probes=2, interval_in_seconds=1)
    name = await make_scale_set(fleet, 2, health_extension=spec)
    handle, _ = await upgrade(ts_env.client, ts_worker.task_queue, name)
    report = await finish(ts_env, handle)
    assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
    rows = dict(report.request.effective_policy())
    assert rows["health source"] == "the Application Health extension (vmHealth)"
    assert rows["health extension (the model's)"] == (
        "http :8080/healthz, every 1 s, 2 probe(s) in a row, gracePeriod 2 s, rich states"
    )
    assert "health probe" not in rows  # the request's probe settings are not what probes
