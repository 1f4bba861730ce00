"""Extension upgrades on the one batch engine (RollingUpgradeWorkflow on the time-skipping server,
activities through the Azure SDK to the emulator over HTTPS): install a new minor version on
every instance, batch by batch; a version that breaks health or fails to install is rolled back
to the version each instance had; a major version is never taken; nothing is installed twice."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fleet.emulator.admin import EmulatorAdmin
from models.change import ExtensionRequest
from models.fleet import FaultSpec, OperationKind, ScaleSetSpec, TimingSpec
from models.policy import RollingUpgradePolicy
from models.upgrade import InstanceState, UpgradeReport, UpgradeRequest
from starter.upgrades import UpgradeRefused, start_upgrade
from tests.helpers.upgrades import QUICK_HEALTH, V1, finish

PUBLISHER = "Contoso.Monitoring"
TIMING = TimingSpec(
    reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0, 0], extension_seconds=[0, 0]
)


def extension(name: str, type_: str, version: str = "1.2", **properties: Any) -> dict[str, Any]:
    return {
        "name": name,
        "publisher": PUBLISHER,
        "type": type_,
        "typeHandlerVersion": version,
        "autoUpgradeMinorVersion": False,
        "enableAutomaticUpgrade": True,
        **properties,
    }


async def scale_set(
    fleet: EmulatorAdmin, extensions: list[dict[str, Any]], capacity: int = 10, **spec: Any
) -> str:
    name = f"ext-{uuid.uuid4().hex[:10]}"
    await fleet.create_scale_set(
        ScaleSetSpec.model_validate(
            {
                "name": name,
                "location": "westeurope",
                "capacity": capacity,
                "zones": ["1", "2"],
                "updateDomainCount": 1,
                "imageReference": V1.to_json(),
                "timing": TIMING.to_json(),
                "extensions": extensions,
                **spec,
            }
        )
    )
    return name


async def agent_fails_logs_works(fleet: EmulatorAdmin, capacity: int = 10) -> str:
    """A set with two extensions at 1.2.0: `agent`'s 1.3.0 fails to install, `logs`' installs."""
    failing, working = unique_type("Failing"), unique_type("Logs")
    for type_ in (failing, working):
        for version in ("1.2.0", "1.3.0"):
            await fleet.publish_extension_version(PUBLISHER, type_, version)
    return await scale_set(
        fleet,
        [extension("agent", failing), extension("logs", working)],
        capacity=capacity,
        faults=FaultSpec(failing_extension_versions=[f"{failing}:1.3.0"]).to_json(),
    )


def unique_type(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


async def run(
    env: WorkflowEnvironment, worker: Worker, name: str, *extensions: ExtensionRequest, **fields: Any
) -> UpgradeReport:
    request = UpgradeRequest(
        scale_set=name,
        extensions=list(extensions),
        health=QUICK_HEALTH,
        policy=RollingUpgradePolicy.model_validate(fields.pop("policy", {})),
        **fields,
    )
    handle, _ = await start_upgrade(env.client, request, worker.task_queue)
    return await finish(env, handle)


async def installs(fleet: EmulatorAdmin, name: str) -> dict[str, list[str]]:
    """Every accepted install per instance, in order: the versions."""
    done: dict[str, list[str]] = {}
    for op in sorted(await fleet.operations(name), key=lambda o: o.start_time):
        if op.kind == OperationKind.INSTALL_EXTENSION:
            done.setdefault(op.instance_id, []).append(op.extension_version or "?")
    return done


async def versions(fleet: EmulatorAdmin, name: str, extension_name: str) -> dict[str, str | None]:
    view = await fleet.show_scale_set(name)
    return {
        i.instance_id: (e.type_handler_version if (e := i.extension(extension_name)) else None)
        for i in view.instances
    }


async def test_a_new_minor_version_reaches_every_instance_once_batch_by_batch(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    type_ = unique_type("Agent")
    for version in ("1.2.0", "1.3.0", "2.0.0"):
        await fleet.publish_extension_version(PUBLISHER, type_, version)
    name = await scale_set(fleet, [extension("agent", type_)])
    assert set((await versions(fleet, name, "agent")).values()) == {"1.2.0"}

    report = await run(ts_env, ts_worker, name, ExtensionRequest(name="agent"))

    assert report.status.properties is not None
    assert report.status.properties.running_status.code == "Completed"
    assert [str(t) for t in report.extensions] == ["agent 1.3.0"]  # never the new major 2.0.0
    assert report.target_image is None
    assert set((await versions(fleet, name, "agent")).values()) == {"1.3.0"}
    assert await installs(fleet, name) == {str(i): ["1.3.0"] for i in range(10)}
    # At most 20% (two) at a time, one zone at a time: 2 + 2 + 1 in each of the two zones.
    assert report.batches == 6
    for batch in range(1, 7):
        members = [p for p in report.instances if p.batch == batch]
        assert 1 <= len(members) <= 2 and len({p.zone for p in members}) == 1
    assert {p.from_image for p in report.instances} == {"agent 1.2.0"}
    # The OS image was not touched.
    assert not [op for op in await fleet.operations(name) if op.kind != OperationKind.INSTALL_EXTENSION]


async def test_a_version_that_breaks_health_is_reinstalled_back_and_the_upgrade_faults(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    type_ = unique_type("Broken")
    for version in ("1.2.0", "1.3.0"):
        await fleet.publish_extension_version(PUBLISHER, type_, version)
    name = await scale_set(
        fleet,
        [extension("agent", type_)],
        faults=FaultSpec(unhealthy_extension_versions=[f"{type_}:1.3.0"]).to_json(),
    )

    report = await run(ts_env, ts_worker, name, ExtensionRequest(name="agent"))

    assert report.status.properties is not None
    assert report.status.properties.running_status.code == "Faulted"
    rolled = [p for p in report.instances if p.state == InstanceState.ROLLED_BACK]
    assert rolled and all(p.restored for p in rolled)
    assert all("reinstalled agent 1.2.0" in (p.message or "") for p in rolled)
    # Each upgraded instance: the new version once, then its previous version once; no other
    # instance was touched after the first batch faulted the upgrade.
    assert {i: v for i, v in (await installs(fleet, name)).items()} == {
        p.instance_id: ["1.3.0", "1.2.0"] for p in rolled
    }
    assert set((await versions(fleet, name, "agent")).values()) == {"1.2.0"}


async def test_a_version_that_fails_to_install_is_rolled_back_without_waiting_for_health(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    type_ = unique_type("Failing")
    for version in ("1.2.0", "1.3.0"):
        await fleet.publish_extension_version(PUBLISHER, type_, version)
    name = await scale_set(
        fleet,
        [extension("agent", type_)],
        capacity=5,
        faults=FaultSpec(failing_extension_versions=[f"{type_}:1.3.0"]).to_json(),
    )

    report = await run(ts_env, ts_worker, name, ExtensionRequest(name="agent"))

    [first] = [p for p in report.instances if p.state == InstanceState.ROLLED_BACK]
    assert first.code == "VMExtensionProvisioningError"
    assert first.cause == "Install"
    assert first.restored
    assert await installs(fleet, name) == {first.instance_id: ["1.3.0", "1.2.0"]}
    view = await fleet.show_scale_set(name)
    [instance] = [i for i in view.instances if i.instance_id == first.instance_id]
    found = instance.extension("agent")
    assert found is not None and found.succeeded and found.type_handler_version == "1.2.0"


async def test_instances_already_on_the_version_are_skipped_and_refusals_name_the_extension(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    type_ = unique_type("Current")
    await fleet.publish_extension_version(PUBLISHER, type_, "1.2.0")
    name = await scale_set(fleet, [extension("agent", type_)], capacity=3)

    # No extension named: every extension of the model with a version to move to (the
    # Application Health extension has none published here).
    report = await run(ts_env, ts_worker, name)
    assert report.status.properties is not None
    assert report.status.properties.running_status.code == "Completed"
    assert [str(t) for t in report.extensions] == ["agent 1.2.0"]
    assert report.skipped_instance_count == 3
    assert await installs(fleet, name) == {}

    with pytest.raises(UpgradeRefused, match=r"ExtensionNotFound.*no extension 'nope'.*agent"):
        await run(ts_env, ts_worker, name, ExtensionRequest(name="nope"))
    with pytest.raises(UpgradeRefused, match="new major version"):
        await run(ts_env, ts_worker, name, ExtensionRequest(name="agent", version="2.0.0"))
    assert await installs(fleet, name) == {}


async def test_os_deferral_asks_no_approval_of_an_extension_upgrade(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    """osRollingUpgradeDeferral defers OS image upgrades only: an extension does not reboot the VM."""
    type_ = unique_type("Deferred")
    await fleet.publish_extension_version(PUBLISHER, type_, "1.2.0")
    name = await scale_set(fleet, [extension("agent", type_)], capacity=2)
    await fleet.publish_extension_version(PUBLISHER, type_, "1.2.1")  # a patch, after the set

    report = await run(ts_env, ts_worker, name, ExtensionRequest(name="agent"), deferral=True)

    assert report.status.properties is not None
    assert report.status.properties.running_status.code == "Completed"
    assert all(p.approved_by is None for p in report.instances)
    assert await installs(fleet, name) == {"0": ["1.2.1"], "1": ["1.2.1"]}


async def test_a_failed_install_rolls_back_that_extension_only_and_the_other_still_moves(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    """Seed 003: "if two extensions are scheduled for an upgrade, and the first extension
    upgrade fails, the second extension is still upgraded". `agent` 1.3.0 fails to install
    everywhere; `logs` 1.3.0 installs. `agent` is reinstalled at 1.2.0 where it failed and stops
    on its own policy breach; `logs` goes on to every instance; the result names both."""
    name = await agent_fails_logs_works(fleet)

    report = await run(ts_env, ts_worker, name, ExtensionRequest(name="agent"), ExtensionRequest(name="logs"))

    # The second extension moved on every instance, the first is back where it was everywhere.
    assert set((await versions(fleet, name, "logs")).values()) == {"1.3.0"}
    assert set((await versions(fleet, name, "agent")).values()) == {"1.2.0"}
    view = await fleet.show_scale_set(name)
    assert all((e := i.extension("agent")) is not None and e.succeeded for i in view.instances)
    # agent was tried on the first batch only (2 of 2 failed: past the 20% its policy allows),
    # each time reinstalled at once; logs was installed once on each instance.
    done = await installs(fleet, name)
    first = sorted(p.instance_id for p in report.instances if p.batch == 1)
    assert len(first) == 2
    for instance_id, versions_sent in done.items():
        expected = ["1.3.0", "1.2.0", "1.3.0"] if instance_id in first else ["1.3.0"]
        assert versions_sent == expected, instance_id
    assert len(done) == 10
    # Every instance got logs and stayed healthy: none failed the upgrade as a whole.
    assert {p.state for p in report.instances} == {InstanceState.SUCCEEDED}
    for p in report.instances:
        outcomes = p.extension_outcomes or {}
        assert outcomes["logs"].state == InstanceState.SUCCEEDED
        if p.instance_id in first:
            assert outcomes["agent"].state == InstanceState.ROLLED_BACK
            assert outcomes["agent"].code == "VMExtensionProvisioningError"
        else:
            assert "agent" not in outcomes  # stopped before their batch
    # The result says per extension which moved.
    properties = report.status.properties
    assert properties is not None
    assert properties.running_status.code == "Faulted"  # agent did not reach the set
    assert properties.error is not None and properties.error.code == (
        "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade"
    )
    assert "agent" in (properties.error.message or "") and "logs" in (properties.error.message or "")
    per_extension = {e.name: e for e in properties.extensions or []}
    assert set(per_extension) == {"agent", "logs"}
    logs, agent = per_extension["logs"], per_extension["agent"]
    assert (logs.code, logs.version, logs.error) == ("Completed", "1.3.0", None)
    assert logs.progress.successful_instance_count == 10 and logs.progress.failed_instance_count == 0
    assert (agent.code, agent.version) == ("Faulted", "1.3.0")
    assert agent.progress.successful_instance_count == 0
    assert agent.progress.failed_instance_count == 2 and agent.progress.pending_instance_count == 8
    assert agent.error is not None and "VMExtensionProvisioningError" in (agent.error.message or "")


async def test_without_automatic_rollback_a_breach_reinstalls_only_the_extension_left_failed(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    """disableAutomaticRollback leaves `agent` failed where it failed to install; its breach
    with rollbackFailedInstancesOnPolicyBreach reinstalls agent there at the end, never logs."""
    name = await agent_fails_logs_works(fleet, capacity=5)

    report = await run(
        ts_env,
        ts_worker,
        name,
        ExtensionRequest(name="agent"),
        ExtensionRequest(name="logs"),
        disable_automatic_rollback=True,
        policy={"rollbackFailedInstancesOnPolicyBreach": True},
    )

    assert set((await versions(fleet, name, "logs")).values()) == {"1.3.0"}
    assert set((await versions(fleet, name, "agent")).values()) == {"1.2.0"}
    [first] = [p for p in report.instances if p.batch == 1]
    assert (await installs(fleet, name))[first.instance_id] == ["1.3.0", "1.3.0", "1.2.0"]
    outcome = (first.extension_outcomes or {})["agent"]
    assert outcome.state == InstanceState.ROLLED_BACK and "on the policy breach" in (outcome.message or "")
    assert {p.state for p in report.instances} == {InstanceState.SUCCEEDED}
