"""`upgradectl` as users run it: a separate process against the dev server, emulator and worker."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from models.fleet import FaultSpec
from models.policy import RollingUpgradePolicy
from models.status import ROLLBACK_DESCRIPTIONS, RollbackMethod, RollingUpgradeStatusInfo
from tests.helpers.upgrades import V2, make_scale_set

QUICK = ["--health-interval", "1", "--health-wait-timeout", "PT2S"]


def table_rows(out: str) -> dict[str, str]:
    """A two-column table as printed: each row's text by its first cell, wrapped lines joined."""
    rows: dict[str, str] = {}
    key = None
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 2:
            continue
        if cells[0]:
            key = cells[0]
            rows[key] = cells[1]
        elif key:
            rows[key] += " " + cells[1]
    return rows


async def test_start_wait_prints_the_azure_status_and_exits_zero_when_completed(upgradectl, fleet):
    name = await make_scale_set(fleet, 6, zones=["1", "2"])
    result = await upgradectl(
        "start", "--scale-set", name, "--image", str(V2), "--wait", "--health-port", "8080", *QUICK
    )
    assert result.code == 0, result.err
    assert f"started rolling-upgrade/{name}" in result.err
    # The extension's own settings decide how it probes: told once, the model's shown.
    assert (
        "note: applicationHealth.port (--health-port) describe the Application Health extension" in result.err
    )
    # Seed 000: Azure's manual trigger does not roll back; ours does by default, and says so.
    assert "note: automatic rollback is on" in result.err and "--disable-automatic-rollback" in result.err
    status = RollingUpgradeStatusInfo.model_validate(result.json())
    assert status.properties.running_status.code == "Completed"
    assert status.properties.progress.successful_instance_count == 6

    shown = await upgradectl("status", name, "--json")
    assert shown.code == 0
    assert set(shown.json()["properties"]) == {"policy", "runningStatus", "progress"}
    human = await upgradectl("status", name)
    assert "Completed" in human.out
    # The effective policy, health settings and all.
    for setting in (
        "maxBatchInstancePercent",
        "healthWaitTimeout",
        "PT2S",
        "disableAutomaticRollback",
        "upgradeTimeout",
        "the Application Health extension (vmHealth)",
        "http :80/health, every 5 s",
    ):
        assert setting in human.out
    assert ":8080" not in human.out  # (a bare 8080 may be in a timestamp's microseconds)
    assert (await upgradectl("watch", name)).code == 0  # a finished upgrade: its outcome at once

    instances = (await upgradectl("fleet", "show", name, "--json")).json()["instances"]
    assert {i["imageReference"]["exactVersion"] for i in instances} == {V2.version}
    assert {"zone", "platformUpdateDomain", "platformFaultDomain", "health", "dataDisks"} <= set(instances[0])
    ops = (await upgradectl("fleet", "ops", name, "--json")).json()
    assert sorted(op["instanceId"] for op in ops) == [str(i) for i in range(6)]
    assert {op["kind"] for op in ops} == {"reimage"}


async def test_start_honours_the_scale_sets_own_rolling_policy_and_status_says_so(upgradectl, fleet):
    # Seed 003: "Upgrade policies defined on the scale set are honored": 50% batches from the
    # set's model; the unhealthy limit given on the command line wins over the set's.
    own = RollingUpgradePolicy(max_batch_instance_percent=50, max_unhealthy_instance_percent=50)
    name = await make_scale_set(fleet, 6, update_domains=1, rolling_upgrade_policy=own)
    result = await upgradectl(
        "start",
        "--scale-set",
        name,
        "--image",
        str(V2),
        "--max-unhealthy-instance-percent",
        "60",
        "--wait",
        *QUICK,
    )
    assert result.code == 0, result.err
    status = RollingUpgradeStatusInfo.model_validate(result.json())
    assert status.properties.policy.max_batch_instance_percent == 50
    assert status.properties.policy.max_unhealthy_instance_percent == 60
    ops = (await upgradectl("fleet", "ops", name, "--json")).json()
    assert len(ops) == 6
    human = await upgradectl("status", name)
    assert "50 (scale set)" in human.out and "60 (given)" in human.out and "20 (default)" not in human.out


async def test_a_faulted_upgrade_exits_one(upgradectl, fleet):
    name = await make_scale_set(fleet, 5, faults=FaultSpec(unhealthy_images=[V2.version]))
    result = await upgradectl(
        "start", "--scale-set", name, "--image", str(V2), "--wait", "--automatic-rollback", *QUICK
    )
    assert result.code == 1
    assert "automatic rollback is on" not in result.err  # chosen: no note
    error = result.json()["properties"]["error"]
    assert error["code"] == "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade"
    watched = await upgradectl("watch", name)
    assert watched.code == 1 and watched.json()["properties"]["runningStatus"]["code"] == "Faulted"


async def test_status_and_history_say_a_uniform_rollback_reimages_and_loses_the_os_disk(upgradectl, fleet):
    # Uniform has no call to restore an OS disk: the rollback is a reimage to the old version.
    name = await make_scale_set(fleet, 5, faults=FaultSpec(unhealthy_images=[V2.version]))
    result = await upgradectl(
        "start", "--scale-set", name, "--image", str(V2), "--wait", "--automatic-rollback", *QUICK
    )
    assert result.code == 1
    said = ROLLBACK_DESCRIPTIONS[RollbackMethod.REIMAGE_TO_PREVIOUS_VERSION]
    assert "reimaged back to the image version it had" in said and "contents are lost" in said

    rollback = (await upgradectl("status", name, "--json")).json()["properties"]["rollbackInfo"]
    assert rollback["rollbackMethod"] == "ReimageToPreviousVersion"
    assert rollback["rollbackDescription"] == said
    assert rollback["successfullyRolledbackInstanceCount"] >= 1
    entry = (await upgradectl("history", name, "--json")).json()["value"][0]["properties"]["rollbackInfo"]
    assert (entry["rollbackMethod"], entry["rollbackDescription"]) == ("ReimageToPreviousVersion", said)
    rows = table_rows((await upgradectl("status", name)).out)
    count = rollback["successfullyRolledbackInstanceCount"]
    assert rows["rollback"] == f"{count} ok, 0 failed: {said}"
    assert "(ReimageToPreviousVersion)" in (await upgradectl("history", name)).out


async def test_watch_json_writes_one_status_line_per_change(upgradectl, fleet):
    name = await make_scale_set(fleet, 3, update_domains=1)
    started = await upgradectl(
        "start", "--scale-set", name, "--image", str(V2), "--pause-time-between-batches", "PT1S", *QUICK
    )
    assert started.code == 0
    watched = await upgradectl("watch", name, "--json")
    assert watched.code == 0
    lines = [json.loads(line) for line in watched.out.splitlines()]
    assert len(lines) >= 2 and len({json.dumps(line) for line in lines}) == len(lines)
    assert lines[-1]["properties"]["runningStatus"]["code"] == "Completed"
    assert lines[-1]["properties"]["progress"]["successfulInstanceCount"] == 3
    counts = [line["properties"]["progress"]["successfulInstanceCount"] for line in lines]
    assert counts == sorted(counts) and counts[0] < 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--max-batch-instance-percent", "3"],
            "rollingUpgradePolicy.maxBatchInstancePercent: must be a whole number from 5 to 100 (got 3)",
        ),
        (
            ["--pause-time-between-batches", "5m"],
            "rollingUpgradePolicy.pauseTimeBetweenBatches: must be an ISO 8601 duration from PT0S to PT48H",
        ),
        (["--max-unhealthy-upgraded-instance-percent", "101"], "from 0 to 100 (got 101)"),
        (
            ["--health-interval", "0"],
            "applicationHealth.intervalInSeconds: must be a whole number from 1 to 60",
        ),
        (["--image", "ubuntu"], "--image: image 'ubuntu' is not PUBLISHER:OFFER:SKU:VERSION"),
    ],
)
async def test_invalid_requests_are_refused_naming_the_field_before_anything_starts(
    upgradectl, fleet, flags, message
):
    name = await make_scale_set(fleet, 3)
    args = ["start", "--scale-set", name, "--image", str(V2), *flags]
    result = await upgradectl(*args)
    assert result.code == 3
    assert message in result.err
    assert await fleet.operations(name) == []
    # No upgrade workflow was started either.
    assert (await upgradectl("status", name)).code != 0


async def test_unknown_scale_set_is_refused(upgradectl):
    result = await upgradectl("start", "--scale-set", "nowhere", "--image", str(V2))
    assert result.code == 3
    assert "ScaleSetNotFound: scale set 'nowhere' was not found" in result.err


async def test_second_upgrade_is_refused_and_cancel_ends_the_first(upgradectl, fleet):
    name = await make_scale_set(fleet, 6, update_domains=1)
    first = await upgradectl(
        "start", "--scale-set", name, "--image", str(V2), "--pause-time-between-batches", "PT1H", *QUICK
    )
    assert first.code == 0, first.err
    second = await upgradectl("start", "--scale-set", name, "--image", str(V2))
    assert second.code == 3
    assert "RollingUpgradeInProgress" in second.err and "already being upgraded" in second.err

    assert (await upgradectl("cancel", name)).code == 0
    watched = await upgradectl("watch", name)
    assert watched.code == 2
    assert watched.json()["properties"]["runningStatus"]["lastAction"] == "Cancel"


@pytest.mark.parametrize("signum", [15, 2])
async def test_the_worker_process_stops_cleanly_on_sigterm_and_sigint(local_env, emulator, signum):
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
            **emulator.env(),
            "UPGRADE_TASK_QUEUE": "signal-test",
        },
        stderr=asyncio.subprocess.PIPE,
    )
    logged = b""
    while b"worker started" not in logged:
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert line, f"the worker exited early: {logged.decode()}"
        logged += line
    assert b'"task_queue": "signal-test"' in logged  # JSON lines when not on a terminal
    process.send_signal(signum)
    rest = await asyncio.wait_for(process.stderr.read(), 30)
    assert await process.wait() == 0
    assert b"worker stopped" in rest


async def test_fleet_create_from_a_yaml_file_with_flags_on_top(upgradectl, fleet, tmp_path):
    spec = tmp_path / "web.yaml"
    spec.write_text(
        "capacity: 4\n"
        "zones: ['1', '2']\n"
        "imageReference: {publisher: Contoso, offer: web-os, sku: '2024', version: 2024.11.01}\n"
        "faults: {unhealthyAfterUpgrade: ['3']}\n"
    )
    created = await upgradectl(
        "fleet", "create", "yaml-set", "--file", str(spec), "--instances", "6", "--update-domains", "3"
    )
    assert created.code == 0, created.err
    view = await fleet.show_scale_set("yaml-set")
    assert len(view.instances) == 6
    assert {i.zone for i in view.instances} == {"1", "2"}
    assert max(i.platform_update_domain for i in view.instances) == 2

    published = await upgradectl(
        "fleet", "publish", "Contoso:cli-test:2024:2025.01.01", "--region", "westeurope"
    )
    assert published.code == 0 and "to westeurope" in published.err
    shown = await upgradectl("fleet", "show", "yaml-set")
    assert "2024.11.01" in shown.out and "Healthy" in shown.out

    missing = await upgradectl("fleet", "create", "no-image", "--instances", "2")
    assert missing.code == 3 and "--image is required" in missing.err
    bad = await upgradectl("fleet", "create", "bad", "--image", str(V2), "--instances", "0")
    assert bad.code == 3 and "capacity: must be a whole number from 1 to 10000" in bad.err


async def test_fleet_show_lists_each_instances_extension_versions(upgradectl, fleet, tmp_path):
    await fleet.publish_extension_version("Contoso.Monitoring", "AgentLinux", "1.2.3", ["*"])
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        "capacity: 2\n"
        "imageReference: {publisher: Contoso, offer: web-os, sku: '2024', version: 2024.11.01}\n"
        "extensions:\n"
        "  - {name: agent, publisher: Contoso.Monitoring, type: AgentLinux, typeHandlerVersion: '1.2',"
        " enableAutomaticUpgrade: true}\n"
    )
    created = await upgradectl("fleet", "create", "agents-set", "--file", str(spec))
    assert created.code == 0, created.err

    shown = await upgradectl("fleet", "show", "agents-set")
    assert shown.code == 0, shown.err
    assert "agent Contoso.Monitoring.AgentLinux 1.2 (automatic upgrade)" in shown.out  # the model
    assert shown.out.count("agent 1.2.3") == 2  # what each instance runs
