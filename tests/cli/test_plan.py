"""`upgradectl plan`: the batches an upgrade would run, read through Azure's API (the emulator over
HTTPS), with nothing touched and no Temporal needed; refusals and bad input in one line."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid

from fleet.emulator.admin import EmulatorAdmin
from models.fleet import CustomMetrics, HealthState
from models.image import ImageReference
from models.policy import RollingUpgradePolicy
from starter import processes
from starter.processes import EmulatorAddress
from tests.helpers.commands import Result, assert_harmless
from tests.helpers.upgrades import V1, V2, make_scale_set

# Nothing listens here: plan must not need Temporal.
CLOSED = f"127.0.0.1:{processes.free_port()}"
LATEST = V2.with_version("latest")


async def plan(emulator: EmulatorAddress, *args: str, **env: str) -> Result:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "starter.cli",
        "plan",
        *args,
        env={**os.environ, "COLUMNS": "200", "TEMPORAL_ADDRESS": CLOSED, **emulator.env(), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def batches(out: str) -> list[tuple[str, list[str]]]:
    """(where, instance ids) of every `batch N:` line, in order."""
    found = []
    for number, line in enumerate((line for line in out.splitlines() if line.startswith("batch ")), 1):
        match = re.fullmatch(rf"batch {number}: (\d+) instance\(s\) \((.*)\): (.*)", line)
        assert match, line
        ids = match.group(3).split(", ")
        assert int(match.group(1)) == len(ids), line
        found.append((match.group(2), ids))
    return found


async def untouched(fleet: EmulatorAdmin, name: str) -> None:
    """No operation accepted and no ARM action received: plan only reads."""
    assert await fleet.operations(name) == []
    calls = await fleet.calls(name)
    assert calls.actions == 0 and calls.reads > 0, calls


async def test_plan_prints_every_batch_the_skipped_instances_and_an_estimate(emulator, fleet):
    name = await make_scale_set(
        fleet,
        9,
        zones=["1", "2", "3"],
        update_domains=2,
        custom_metrics={"4": CustomMetrics(skip_upgrade=True)},
    )
    await fleet.scale_out(name, 1, image=V2)  # instance 9 boots on the target: nothing to do there

    result = await plan(emulator, "--scale-set", name, "--image", LATEST)
    assert result.code == 0, result.err
    assert result.err == ""
    lines = result.out.splitlines()
    assert lines[0] == f"scale set {name}: Uniform, westeurope, 10 instances, upgradePolicy.mode Manual"
    assert lines[1] == f"target image: {V2} ('latest' resolved)"
    assert lines[2].startswith("health: read from the Application Health extension (vmHealth)")
    assert lines[3] == "skipped: 2 instance(s): SkipUpgradeCustomMetric (1): 4; AlreadyOnTargetImage (1): 9"
    # Zone by zone (crossZoneUpgrade off), update domain by update domain, 20% at most (2 of 10).
    assert batches(result.out) == [
        ("zone 1; UD 0", ["0", "6"]),
        ("zone 1; UD 1", ["3"]),
        ("zone 2; UD 0", ["1", "7"]),
        ("zone 3; UD 0", ["2", "8"]),
        ("zone 3; UD 1", ["5"]),
    ]
    assert lines[-1].startswith("estimate: 5 batch(es), about ")
    assert "healthWaitTimeout (PT5M)" in lines[-1]
    await untouched(fleet, name)


async def test_plan_takes_the_policy_from_flags_and_a_file(emulator, fleet, tmp_path):
    name = await make_scale_set(fleet, 6, zones=["1", "2"], update_domains=1)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rollingUpgradePolicy:\n  maxBatchInstancePercent: 50\n  maxUnhealthyInstancePercent: 50\n"
    )

    result = await plan(
        emulator,
        "--scale-set",
        name,
        "--image",
        str(V2),
        "--policy",
        str(policy),
        "--enable-cross-zone-upgrade",
        "--pause-time-between-batches",
        "PT10M",
    )
    assert result.code == 0, result.err
    assert "('latest' resolved)" not in result.out  # an exact version was asked for
    planned = batches(result.out)
    # Across zones, half the set per batch: two batches of three over both zones.
    assert [len(ids) for _, ids in planned] == [3, 3]
    assert all(where.startswith("zone 1, 2;") for where, _ in planned), planned
    estimate = result.out.splitlines()[-1]
    assert estimate.startswith(
        "estimate: 2 batch(es), about PT16M"
    )  # 2 batches of (3 min + 5 s), one 10 min pause

    everything = await plan(
        emulator, "--scale-set", name, "--image", str(V2), "--max-batch-instance-percent", "5"
    )
    assert everything.code == 0 and len(batches(everything.out)) == 6
    await untouched(fleet, name)


async def test_plan_says_when_the_gate_before_the_upgrade_would_fault_it(emulator, fleet):
    # Three of ten unhealthy, the default allows 20%: start would fault at once (touching
    # nothing), and plan says so after the batches, exit 3.
    name = await make_scale_set(fleet, 10, update_domains=1)
    for instance_id in ("1", "4", "7"):
        await fleet.set_health(name, instance_id, HealthState.UNHEALTHY)
    result = await plan(emulator, "--scale-set", name, "--image", str(V2))
    assert result.code == 3, result
    assert batches(result.out)  # the plan is still printed
    assert "would fault at once" in result.err
    assert "MaxUnhealthyInstancePercentExceededBeforeRollingUpgrade" in result.err
    assert "3 of 10 instances (30%)" in result.err
    assert_harmless(result)
    allowed = await plan(
        emulator, "--scale-set", name, "--image", str(V2), "--max-unhealthy-instance-percent", "50"
    )
    assert allowed.code == 0, allowed
    await untouched(fleet, name)


async def test_plan_offers_prioritize_unhealthy_instances(emulator, fleet):
    # One of ten unhealthy: plain, it rides along with the first healthy instance; prioritized,
    # it goes first, alone in its priority group.
    name = await make_scale_set(fleet, 10, update_domains=1)
    await fleet.set_health(name, "7", HealthState.UNHEALTHY)
    plain = await plan(emulator, "--scale-set", name, "--image", str(V2))
    first = await plan(emulator, "--scale-set", name, "--image", str(V2), "--prioritize-unhealthy-instances")
    assert plain.code == first.code == 0, (plain, first)
    assert batches(plain.out)[0][1] == ["0", "7"]
    assert batches(first.out)[0][1] == ["7"]
    await untouched(fleet, name)


async def test_the_scale_sets_own_rolling_policy_is_honoured_under_what_is_given(emulator, fleet):
    # Seed 003: "Upgrade policies defined on the scale set are honored". The set's model says
    # 50% batches and 50% unhealthy; a flag overrides one field, the set keeps the other.
    own = RollingUpgradePolicy(max_batch_instance_percent=50, max_unhealthy_instance_percent=50)
    name = await make_scale_set(fleet, 10, update_domains=1, rolling_upgrade_policy=own)
    theirs = await plan(emulator, "--scale-set", name, "--image", str(V2))
    assert theirs.code == 0, theirs
    assert [len(ids) for _, ids in batches(theirs.out)] == [5, 5]
    assert "maxBatchInstancePercent 50 (scale set)" in theirs.out
    flagged = await plan(
        emulator, "--scale-set", name, "--image", str(V2), "--max-batch-instance-percent", "30"
    )
    assert flagged.code == 0, flagged
    assert [len(ids) for _, ids in batches(flagged.out)] == [3, 3, 3, 1]
    assert "maxBatchInstancePercent 30 (given)" in flagged.out
    assert "maxUnhealthyInstancePercent 50 (scale set)" in flagged.out
    await untouched(fleet, name)


async def test_plan_prints_the_limits_in_force_and_an_absolute_count_shrinks_its_batches(emulator, fleet):
    name = await make_scale_set(fleet, 20, update_domains=1)
    default = await plan(emulator, "--scale-set", name, "--image", str(V2))
    assert default.code == 0, default
    assert [len(ids) for _, ids in batches(default.out)] == [4] * 5
    assert (
        "limits over 20 instances: batches of at most 4 (maxBatchInstancePercent 20%); at most 4 "
        "unhealthy at once, the batch included (maxUnhealthyInstancePercent 20%); of the instances "
        "upgraded, at most 20% (maxUnhealthyUpgradedInstancePercent) unhealthy"
    ) in default.out.splitlines()
    # A count below the percent's 4: batches of 3.
    capped = await plan(emulator, "--scale-set", name, "--image", str(V2), "--max-batch-instance-count", "3")
    assert capped.code == 0, capped
    assert [len(ids) for _, ids in batches(capped.out)] == [3, 3, 3, 3, 3, 3, 2]
    assert "batches of at most 3 (maxBatchInstanceCount 3)" in capped.out
    # Half the set at once by the percentages, but at most 6 unhealthy: batches of 6; a batch
    # count above the percent's leaves the percent in force.
    half = ("--max-batch-instance-percent", "50", "--max-unhealthy-instance-percent", "50")
    counted = await plan(
        emulator,
        *("--scale-set", name, "--image", str(V2), *half),
        *("--max-unhealthy-instance-count", "6", "--max-unhealthy-upgraded-instance-count", "1"),
    )
    assert counted.code == 0, counted
    assert [len(ids) for _, ids in batches(counted.out)] == [6, 6, 6, 2]
    assert (
        "batches of at most 10 (maxBatchInstancePercent 50%); at most 6 unhealthy at once, the batch "
        "included (maxUnhealthyInstanceCount 6); of the instances upgraded, at most 20% "
        "(maxUnhealthyUpgradedInstancePercent) and 1 (maxUnhealthyUpgradedInstanceCount) unhealthy"
    ) in counted.out
    await untouched(fleet, name)


async def test_a_small_set_takes_the_batch_size_its_policy_asks_for(emulator, fleet, tmp_path):
    # Five instances or fewer go one at a time under the default 20% (seed 000); 50% is honoured.
    name = await make_scale_set(fleet, 4, update_domains=1)
    default = await plan(emulator, "--scale-set", name, "--image", str(V2))
    assert default.code == 0 and [len(ids) for _, ids in batches(default.out)] == [1, 1, 1, 1]
    policy = tmp_path / "half.json"
    policy.write_text(
        '{"rollingUpgradePolicy": {"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}}'
    )
    half = await plan(emulator, "--scale-set", name, "--image", str(V2), "--policy", str(policy))
    assert half.code == 0 and [len(ids) for _, ids in batches(half.out)] == [2, 2], half.out


async def test_nothing_to_upgrade_is_said_as_such(emulator, fleet):
    name = await make_scale_set(fleet, 2)
    await fleet.scale_out(name, 1, image=V2)
    await fleet.delete_instance(name, "0")
    await fleet.delete_instance(name, "1")
    result = await plan(emulator, "--scale-set", name, "--image", str(V2))
    assert result.code == 0, result.err
    assert "skipped: 1 instance(s): AlreadyOnTargetImage (1): 2" in result.out
    assert "nothing to upgrade: every instance is on the target image or skipped" in result.out
    assert result.out.splitlines()[-1] == "estimate: nothing to do"


async def test_plan_refuses_a_set_azure_rolls_itself_naming_the_field_and_the_az_command(emulator, fleet):
    automatic = await make_scale_set(fleet, 3, upgrade_mode="Automatic")
    result = await plan(emulator, "--scale-set", automatic, "--image", str(V2))
    assert result.code == 3, result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith("error: start would refuse it: UpgradePolicyModeNotManual: ")
    assert "upgradePolicy.mode Automatic" in result.err
    assert f"az vmss update --resource-group <group> --name {automatic} --set upgradePolicy.mode=Manual" in (
        result.err
    )
    assert "batch 1:" in result.out  # the plan is still shown
    await untouched(fleet, automatic)

    rolling_os = await make_scale_set(fleet, 3, automatic_os_upgrade=True)
    result = await plan(emulator, "--scale-set", rolling_os, "--image", str(V2))
    assert result.code == 3, result.err
    assert len(result.err.splitlines()) == 1, result.err
    assert result.err.startswith("error: start would refuse it: AutomaticOSUpgradeEnabled: ")
    assert "upgradePolicy.automaticOSUpgradePolicy.enableAutomaticOSUpgrade=false" in result.err
    assert f"az vmss update --resource-group <group> --name {rolling_os} --set" in result.err
    await untouched(fleet, rolling_os)


async def test_plan_refuses_another_image_definition_as_start_does(emulator, fleet):
    name = await make_scale_set(fleet, 2)
    other = ImageReference.parse(f"Contoso:web-os:plan-{uuid.uuid4().hex[:6]}:2024.12.01")
    await fleet.publish_image(other)  # it exists, but a reimage cannot move an instance to it
    result = await plan(emulator, "--scale-set", name, "--image", str(other))
    assert result.code == 3, result.err
    assert result.err.startswith("error: start would refuse it: ImageDefinitionChangeNotAllowed: ")
    assert V1.with_version("") in result.err and len(result.err.splitlines()) == 1
    assert result.out == ""
    await untouched(fleet, name)


async def test_plan_refuses_bad_input_in_one_line_never_a_traceback(emulator, fleet, tmp_path):
    name = await make_scale_set(fleet, 2)
    cases = [
        # (arguments, extra environment, exit code, the start of the one line)
        (
            ["--scale-set", "nowhere", "--image", str(V2)],
            {},
            3,
            "error: the fleet refused: ResourceNotFound: ",
        ),
        (
            ["--scale-set", name, "--image", "nonsense\x1b[2J"],
            {},
            3,
            "error: --image: image 'nonsense\\x1b[2J'",
        ),
        (["--scale-set", name, "--image", "/gallery/images/web/versions/"], {}, 3, "error: --image: "),
        (
            ["--scale-set", name, "--image", V2.with_version("2099.01.01")],
            {},
            3,
            "error: the fleet refused: ImageNotFound: ",
        ),
        (["--scale-set", "bad\x1b[2J\u202e", "--image", str(V2)], {}, 3, "error: --scale-set: "),
        (
            ["--scale-set", name, "--image", str(V2), "--max-batch-instance-percent", "500"],
            {},
            3,
            "error: invalid upgrade policy:",
        ),
        (
            ["--scale-set", name, "--image", str(V2), "--policy", str(tmp_path / "missing.yaml")],
            {},
            3,
            f"error: --policy {tmp_path / 'missing.yaml'}: cannot read it",
        ),
        (
            ["--scale-set", name, "--image", str(V2)],
            {"AZURE_ARM_ENDPOINT": "http://x"},
            2,
            "error: AZURE_ARM_ENDPOINT must be an https:// URL",
        ),
        (
            ["--scale-set", name, "--image", str(V2)],
            {"AZURE_CA_BUNDLE": str(tmp_path / "nowhere.pem")},
            2,
            "error: AZURE_CA_BUNDLE must name an existing PEM file",
        ),
        (
            ["--scale-set", name, "--image", str(V2)],
            {"AZURE_ARM_ENDPOINT": f"https://{CLOSED}"},
            4,
            "error: cannot reach the fleet: ",
        ),
        (["--scale-set", name], {}, 2, "error: Missing option '--image'"),
        (["--scale-set", name, "--image", str(V2), "--max-batch-instance-percent", "abc"], {}, 2, "error: "),
    ]
    # Side by side: each case is an upgradectl process of its own, most of its time spent starting.
    results = await asyncio.gather(*(plan(emulator, *args, **env) for args, env, _, _ in cases))
    for (args, env, code, start), result in zip(cases, results, strict=True):
        assert result.code == code, (args, env, result.err)
        assert result.err.startswith(start), (args, env, result.err)
        lines = result.err.splitlines()
        if code == 2 and not env:  # a usage error: the line and a hint
            assert len(lines) == 2 and lines[1].startswith("try `upgradectl plan"), result.err
        elif start != "error: invalid upgrade policy:":  # one line per invalid field
            assert len(lines) == 1, result.err
        assert_harmless(result)
        assert "batch 1:" not in result.out
    unreachable = await plan(
        emulator, "--scale-set", name, "--image", str(V2), AZURE_ARM_ENDPOINT=f"https://{CLOSED}"
    )
    assert "AZURE_ARM_ENDPOINT" in unreachable.err
    await untouched(fleet, name)


async def test_plan_says_where_health_is_read_and_how_the_extension_probes(emulator, fleet):
    probed = await make_scale_set(fleet, 5, health_source="loadBalancerProbe")
    await fleet.set_health(probed, "3", HealthState.UNHEALTHY)
    await fleet.set_health(probed, "4", HealthState.UNHEALTHY)
    result = await plan(emulator, "--scale-set", probed, "--image", str(V2))
    # Two of five Down at the probe: the gate would fault, and says where health was read.
    assert result.code == 3, result
    assert "health: read from the load balancer health probe" in result.out
    assert "Health is read from the load balancer health probe." in result.err
    plain = await make_scale_set(fleet, 5, health_source="none")
    result = await plan(emulator, "--scale-set", plain, "--image", str(V2))
    assert result.code == 0, result
    assert "health: read from power state and provisioning state (no health probe)" in result.out
    extension = await make_scale_set(fleet, 5)
    result = await plan(emulator, "--scale-set", extension, "--image", str(V2))
    assert (
        "health: read from the Application Health extension (vmHealth); the extension probes "
        "http :80/health, every 5 s, 1 probe(s) in a row, gracePeriod 5 s, rich states"
    ) in result.out


async def test_plan_shows_surge_batches_and_the_quota_check_touching_nothing(emulator, fleet):
    region = f"r{uuid.uuid4().hex[:8]}"
    name = await make_scale_set(fleet, 4, update_domains=1, location=region, vm_size="Standard_D2s_v3")
    args = (
        *("--scale-set", name, "--image", str(V2), "--max-surge"),
        *("--max-batch-instance-percent", "50", "--max-unhealthy-instance-percent", "50"),
    )
    result = await plan(emulator, *args)
    assert result.code == 0, result.err
    lines = [line for line in result.out.splitlines() if line.startswith("batch ")]
    assert lines == [
        "batch 1: 2 instance(s) (UD 0): create 2 new, then delete 0, 1",
        "batch 2: 2 instance(s) (UD 0): create 2 new, then delete 2, 3",
    ]
    assert "maxSurge quota: " in result.out and "need 4: batches create before they delete" in result.out
    await fleet.set_core_quota(region, "standardDSv3Family", 4 * 2 + 3)  # one new VM's room, not two
    short = await plan(emulator, *args)
    assert short.code == 0, short.err
    assert "maxSurge quota: no room (standardDSv3Family vCPUs" in short.out
    assert "such batches are upgraded in place" in short.out
    await untouched(fleet, name)


async def test_plan_refuses_max_surge_on_a_flexible_set_as_start_would(emulator, fleet):
    name = await make_scale_set(fleet, 2, orchestration_mode="Flexible")
    result = await plan(emulator, "--scale-set", name, "--image", str(V2), "--max-surge")
    assert result.code == 3, result.out
    assert "MaxSurgeNotSupported: rollingUpgradePolicy.maxSurge: scale set" in result.err
    assert_harmless(result)


async def test_plan_shows_where_the_checkpoints_stop_the_upgrade(emulator, fleet, tmp_path):
    name = await make_scale_set(fleet, 10, update_domains=1)
    policy = tmp_path / "canary.yaml"
    policy.write_text(
        "rollingUpgradePolicy:\n  checkpoints:\n    - {percent: 10, approval: true}\n"
        "    - {percent: 50, bakeTime: PT1H}\n"
    )
    result = await plan(emulator, "--scale-set", name, "--image", str(V2), "--policy", str(policy))
    assert result.code == 0, result.err
    assert [len(ids) for _, ids in batches(result.out)] == [1, 2, 2, 2, 2, 1]
    lines = result.out.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("batch 1:")))
    assert lines[first + 1] == "checkpoint 1 (10%, 1 of 10): wait for `upgradectl approve`"
    assert "checkpoint 2 (50%, 5 of 10): bake PT1H" in lines
    bad = tmp_path / "bad.yaml"
    bad.write_text("rollingUpgradePolicy:\n  checkpoints:\n    - {percent: 50}\n    - {percent: 10}\n")
    refused = await plan(emulator, "--scale-set", name, "--image", str(V2), "--policy", str(bad))
    assert refused.code == 3 and "checkpoints[1].percent: must be above the one before (50)" in refused.err
    assert_harmless(refused)


async def test_plan_lists_the_alarm_gates_of_a_policy_file(emulator, fleet, tmp_path):
    name = await make_scale_set(fleet, 4, update_domains=1)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "alarms:\n"
        "  - {name: app, http: {url: 'http://alarms/app'}}\n"
        "  - {name: errors, prometheus: {url: 'http://prom:9090', query: 'rate(e[5m])', threshold: 0.05}}\n"
        "  - {name: cpu, azureMonitor: {metricAlert: high-cpu}}\n"
        "rollbackOnAlarm: false\n"
    )
    result = await plan(emulator, "--scale-set", name, "--image", str(V2), "--policy", str(policy))
    assert result.code == 0, result.err
    assert (
        "alarms: app (http http://alarms/app); errors (prometheus rate(e[5m]) > 0.05); "
        "cpu (azure monitor metric alert high-cpu); rollbackOnAlarm false, alarmUnreachableTimeout PT10M"
    ) in result.out.splitlines()
    await untouched(fleet, name)
