"""`upgradectl start --extensions` (Azure's Start Extension Upgrade) as users run it: a separate
process against the dev server, the emulator and a worker. The change an upgrade carries shows in
what `start` prints, `status`, `watch`, `history`, `plan` and the Web UI; cancel works mid-way;
refusals are one line with the documented exit code (bad input: tests/cli/test_extension_input.py)."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata

from fleet.emulator.admin import EmulatorAdmin
from models.fleet import OperationKind, ScaleSetSpec, TimingSpec
from models.upgrade import upgrade_workflow_id
from tests.helpers.commands import one_error
from tests.helpers.upgrades import V1, V2, eventually

PUBLISHER = "Contoso.Monitoring"
QUICK = ["--health-interval", "1", "--health-wait-timeout", "PT2S"]


async def agent_set(
    fleet: EmulatorAdmin, *, capacity: int = 4, extension_seconds: float = 0
) -> tuple[str, str]:
    """A scale set on V1 whose model has extension `agent` 1.2 (each instance on 1.2.0), with
    1.3.0 and a new major 2.0.0 published: (scale set, extension type)."""
    type_ = f"Agent{uuid.uuid4().hex[:6]}"  # the emulator's versions are global: a type of its own
    await fleet.publish_extension_version(PUBLISHER, type_, "1.2.0")
    name = f"extcli-{uuid.uuid4().hex[:8]}"
    await fleet.create_scale_set(
        ScaleSetSpec.model_validate(
            {
                "name": name,
                "capacity": capacity,
                "zones": ["1", "2"],
                "updateDomainCount": 1,
                "imageReference": V1.to_json(),
                "timing": TimingSpec(
                    reimage_seconds=[0, 0],
                    restore_seconds=[0, 0],
                    boot_seconds=[0, 0],
                    extension_seconds=[extension_seconds, extension_seconds],
                ).to_json(),
                "extensions": [
                    {
                        "name": "agent",
                        "publisher": PUBLISHER,
                        "type": type_,
                        "typeHandlerVersion": "1.2",
                        "autoUpgradeMinorVersion": False,
                    }
                ],
            }
        )
    )
    for version in ("1.3.0", "2.0.0"):
        await fleet.publish_extension_version(PUBLISHER, type_, version)
    return name, type_


async def agent_versions(fleet: EmulatorAdmin, name: str) -> dict[str, str | None]:
    view = await fleet.show_scale_set(name)
    return {
        i.instance_id: (e.type_handler_version if (e := i.extension("agent")) else None)
        for i in view.instances
    }


async def installs(fleet: EmulatorAdmin, name: str) -> dict[str, list[str]]:
    """Every install the emulator accepted, per instance, in order: the versions."""
    done: dict[str, list[str]] = {}
    for op in sorted(await fleet.operations(name), key=lambda o: o.start_time):
        if op.kind == OperationKind.INSTALL_EXTENSION:
            done.setdefault(op.instance_id, []).append(op.extension_version or "?")
    return done


async def test_an_extension_upgrade_from_plan_to_history_says_its_change_everywhere(
    upgradectl: Any, fleet: EmulatorAdmin, local_env: Any
) -> None:
    name, _ = await agent_set(fleet)

    # plan: the same planner, the versions resolved as the admission resolves them.
    planned = await upgradectl("plan", "--scale-set", name, "--extensions", "agent")
    assert planned.code == 0, planned.err
    assert planned.out.splitlines()[1] == (
        "change: extension agent 1.2.0 → 1.3.0 (asked: extension agent (newest))"
    )
    assert len([line for line in planned.out.splitlines() if line.startswith("batch ")]) == 4
    unplanned = await upgradectl("plan", "--scale-set", name, "--extensions", "nope")
    assert unplanned.code == 3
    assert one_error(unplanned.err).startswith("error: start would refuse it: ExtensionNotFound: ")
    assert "'nope'" in unplanned.err

    # Refused before anything starts: an unknown extension, a new major version.
    unknown = await upgradectl("start", "--scale-set", name, "--extensions", "agent", "nope")
    assert unknown.code == 3
    assert "ExtensionNotFound" in one_error(unknown.err) and "'nope'" in unknown.err
    major = await upgradectl("start", "--scale-set", name, "--extensions=agent=2.0.0")
    assert major.code == 3
    line = one_error(major.err)
    assert "ExtensionVersionNotFound" in line and "agent 2.0.0 is a new major version" in line
    assert (await upgradectl("status", name)).code == 5  # no upgrade was started
    assert await installs(fleet, name) == {}

    # start --extensions agent --wait: the preflight and the start say the change. --deferral
    # (an OS image setting) holds nothing back, and a note says so.
    result = await upgradectl(
        "start", "--scale-set", name, "--extensions", "agent", "--wait", "--deferral", *QUICK
    )
    assert result.code == 0, result.err
    assert "note: --deferral and --not-before-timeout are OS image settings, not acted on" in result.err
    assert f"preflight of {name}: extension agent 1.2.0 → 1.3.0; 4 of 4 instances to upgrade" in result.err
    assert (
        f"started rolling-upgrade/{name} " in result.err
        and "instances to extension agent 1.3.0" in result.err
    )
    assert result.json()["properties"]["runningStatus"]["code"] == "Completed"
    # Every instance has the newest 1.x (never the new major 2.0.0), installed once.
    assert await agent_versions(fleet, name) == {str(i): "1.3.0" for i in range(4)}
    assert await installs(fleet, name) == {str(i): ["1.3.0"] for i in range(4)}

    status = await upgradectl("status", name)
    assert status.code == 0
    assert "change" in status.out and "extension agent 1.2.0 → 1.3.0" in status.out
    assert "Completed" in status.out
    watched = await upgradectl("watch", name)  # finished: its outcome at once, the header above
    assert watched.code == 0 and "extension agent 1.2.0 → 1.3.0" in watched.err

    # The Web UI: summary, static details and current details name the versions.
    handle = local_env.client.get_workflow_handle(upgrade_workflow_id(name))
    description = await handle.describe()
    assert await description.static_summary() == f"{name}: extension agent 1.2.0 → agent 1.3.0 · 4 instances"
    assert "**Change**: extension agent 1.2.0 → 1.3.0" in (await description.static_details() or "")
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "**Change**: extension agent 1.2.0 → 1.3.0" in metadata.current_details

    # An OS image upgrade of the same set afterwards: history lists both, each with its change.
    await fleet.publish_image(V2)
    os_upgrade = await upgradectl("start", "--scale-set", name, "--image", str(V2), "--wait", *QUICK)
    assert os_upgrade.code == 0, os_upgrade.err
    assert f"preflight of {name}: OS image {V1} → {V2.version}; 4 of 4" in os_upgrade.err
    assert f"OS image {V1} → {V2.version}" in (await upgradectl("status", name)).out

    async def entries() -> list[dict[str, Any]]:
        listed = await upgradectl("history", name, "--json")
        assert listed.code == 0, listed.err
        return list(listed.json()["value"])

    newest, oldest = await eventually(entries, lambda found: len(found) == 2, timeout=30)
    assert "targetImageReference" not in oldest["properties"]  # (null: left out, as Azure does)
    assert [(e["name"], e["version"]) for e in oldest["properties"]["extensions"]] == [("agent", "1.3.0")]
    assert newest["properties"]["targetImageReference"]["exactVersion"] == V2.version
    table = await upgradectl("history", name)
    assert table.code == 0
    rows = [line for line in table.out.splitlines() if "Completed" in line]
    assert len(rows) == 2
    assert V2.version in rows[0] and "extension" not in rows[0]
    assert "extension agent 1.3.0" in rows[1]


async def test_cancel_stops_an_extension_upgrade_after_its_batch_in_flight(
    upgradectl: Any, fleet: EmulatorAdmin
) -> None:
    # Installs take 2 s each, one instance a batch: four batches, stopped after the first.
    name, _ = await agent_set(fleet, extension_seconds=2)

    # --extensions alone: every extension of the model with a version to move to.
    started = await upgradectl("start", "--scale-set", name, "--extensions", *QUICK)
    assert started.code == 0, started.err
    assert f"preflight of {name}: extension agent 1.2.0 → 1.3.0" in started.err
    await eventually(lambda: installs(fleet, name), lambda done: len(done) >= 1, timeout=30)
    assert (await upgradectl("cancel", name)).code == 0

    watched = await upgradectl("watch", name)
    assert watched.code == 2, watched.err
    assert watched.json()["properties"]["runningStatus"]["lastAction"] == "Cancel"
    status = await upgradectl("status", name)
    assert "Cancelled" in status.out and "extension agent 1.2.0 → 1.3.0" in status.out
    # The batch in flight finished; no later batch started.
    done = await installs(fleet, name)
    versions = await agent_versions(fleet, name)
    assert 1 <= len(done) < 4 and all(v == ["1.3.0"] for v in done.values())
    assert {i for i, v in versions.items() if v == "1.3.0"} == set(done)
    assert {v for i, v in versions.items() if i not in done} == {"1.2.0"}

    table = await upgradectl("history", name)
    assert "Cancelled" in table.out and "extension agent 1.3.0" in table.out


async def test_status_says_which_of_two_extensions_moved_when_one_fails_to_install(
    upgradectl: Any, fleet: EmulatorAdmin
) -> None:
    """`start --extensions agent logs` where every install of agent 1.3.0 fails: logs still
    moves on every instance; `status` (and `--json`) say per extension which moved."""
    failing, working = f"Failing{uuid.uuid4().hex[:6]}", f"Logs{uuid.uuid4().hex[:6]}"
    for type_ in (failing, working):
        for version in ("1.2.0", "1.3.0"):
            await fleet.publish_extension_version(PUBLISHER, type_, version)
    name = f"extcli-{uuid.uuid4().hex[:8]}"
    model = [
        {
            "name": n,
            "publisher": PUBLISHER,
            "type": t,
            "typeHandlerVersion": "1.2",
            "autoUpgradeMinorVersion": False,
        }
        for n, t in (("agent", failing), ("logs", working))
    ]
    await fleet.create_scale_set(
        ScaleSetSpec.model_validate(
            {
                "name": name,
                "capacity": 4,
                "imageReference": V1.to_json(),
                "timing": TimingSpec(
                    reimage_seconds=[0, 0],
                    restore_seconds=[0, 0],
                    boot_seconds=[0, 0],
                    extension_seconds=[0, 0],
                ).to_json(),
                "extensions": model,
                "faults": {"failingExtensionVersions": [f"{failing}:1.3.0"]},
            }
        )
    )

    result = await upgradectl("start", "--scale-set", name, "--extensions", "agent", "logs", "--wait", *QUICK)

    assert result.code == 1, result.err  # Faulted: agent did not reach the set
    extensions = {e["name"]: e for e in result.json()["properties"]["extensions"]}
    assert extensions["logs"]["code"] == "Completed"
    assert extensions["logs"]["progress"]["successfulInstanceCount"] == 4
    assert extensions["agent"]["code"] == "Faulted" and "VMExtensionProvisioningError" in str(
        extensions["agent"]
    )
    view = await fleet.show_scale_set(name)
    assert {(e.type_handler_version if (e := i.extension("logs")) else None) for i in view.instances} == {
        "1.3.0"
    }
    assert {(e.type_handler_version if (e := i.extension("agent")) else None) for i in view.instances} == {
        "1.2.0"
    }

    status = await upgradectl("status", name)
    assert status.code == 0
    assert "logs → 1.3.0 Completed: 4 succeeded, 0 failed, 0 in progress, 0 pending" in status.out
    assert "agent → 1.3.0 Faulted: 0 succeeded, 1 failed, 0 in progress, 3 pending" in status.out
