"""`upgradectl auto` and `upgradectl rollout`: bad input is one line naming the option and what it
allows, with the documented exit code, never a traceback, nothing echoed that drives a terminal;
and, end to end (dev server, worker, emulator through the Azure SDK), enable, show, settings,
disable and the rollouts of a published version.

The offline tests run the real entry point in-process (`starter.cli.cli`) with Temporal pointed at
a closed port; until starter/cli.py adds the two sub-apps itself, the `wired` fixture adds them for
the test (and the end-to-end tests run `upgradectl` through a shim that does the same)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.models import TyperInfo

from fleet.emulator.admin import EmulatorAdmin
from models.automatic import CHECK_NOW_SIGNAL, watcher_workflow_id
from models.fleet import ScaleSetSpec, TimingSpec
from models.image import ImageReference
from starter import cli as cli_module
from starter.auto_commands import auto_app, rollout_app
from tests.conftest import Result
from tests.helpers import CLOSED, INSTANT, eventually

HOSTILE = ("\x1b", "\x9b", "\x07", "\u202e")


def wired_groups() -> list[TyperInfo]:
    groups = list(cli_module.app.registered_groups)
    names = {group.name for group in groups}
    if "auto" not in names:
        groups.append(TyperInfo(auto_app, name="auto"))
    if "rollout" not in names:
        groups.append(TyperInfo(rollout_app, name="rollout"))
    return groups


@pytest.fixture(autouse=True)
def wired(monkeypatch):
    monkeypatch.setattr(cli_module.app, "registered_groups", wired_groups())


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED)
    monkeypatch.setenv("COLUMNS", "200")


def call(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    code = cli_module.cli(list(args))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def assert_harmless(result: Result) -> None:
    text = result.out + result.err
    assert "Traceback" not in text
    for char in HOSTILE:
        assert char not in text, f"{char!r} echoed raw: {text!r}"
    assert "╭" not in text


def assert_one_line(result: Result, code: int, *expected: str) -> None:
    assert result.code == code, result
    assert_harmless(result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for text in expected:
        assert text in lines[0], result.err


# --- offline: bad input is refused before anything is asked ---------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["auto", "enable", "bad name\x1b[2J"], ["SCALE_SET: 'bad name\\x1b[2J' is not a scale set name"]),
        (["auto", "disable", "\u202eweb"], ["SCALE_SET:", "\\u202eweb"]),
        (["auto", "show", "a/b"], ["SCALE_SET: 'a/b' is not a scale set name"]),
        (
            ["auto", "enable", "web", "--not-before-timeout", "PT1M"],
            ["--not-before-timeout: must be from PT5M to PT2H (got PT1M)"],
        ),
        (
            ["auto", "enable", "web", "--not-before-timeout", "15 minutes"],
            ["--not-before-timeout: must be an ISO 8601 duration from PT5M to PT2H"],
        ),
        (
            ["auto", "enable", "web", "--extension", "agent\x1b[2J"],
            ["--extension: 'agent\\x1b[2J' is not an extension name"],
        ),
        (
            ["auto", "disable", "web", "--extension", "agent", "--extension", "AGENT"],
            ["--extension: AGENT is named twice"],
        ),
        (["auto", "settings", "--poll-interval", "PT10S"], ["--poll-interval: must be from PT1M to PT24H"]),
        (
            ["auto", "settings", "--replication-poll-interval", "often"],
            ["--replication-poll-interval: must be an ISO 8601 duration from PT1M to PT6H"],
        ),
        (
            ["auto", "settings", "--phase", "east us"],
            ["--phase: 'east us' is not a comma-separated list of Azure regions such as eastus,westus2"],
        ),
        (["auto", "settings", "--phase", "eastus,", "--phase", "westus"], ["--phase: 'eastus,'"]),
        (
            ["auto", "settings", "--phase", "eastus", "--phase", "westus,EastUS"],
            ["--phase: region 'eastus' is in phase 1 and phase 2"],
        ),
        (
            ["auto", "settings", "--phase", "eastus", "--derived-phases"],
            ["--phase and --derived-phases: give one or the other"],
        ),
        (
            ["auto", "settings", "--max-sets-per-region", "0"],
            ["--max-sets-per-region: must be a whole number from 1 to 100 (got 0)"],
        ),
        (
            ["auto", "settings", "--max-sets-per-region", "101"],
            ["--max-sets-per-region: must be a whole number from 1 to 100 (got 101)"],
        ),
        (
            ["auto", "settings", "--max-instances-per-region", "100001"],
            ["--max-instances-per-region: must be a whole number from 1 to 100000 (got 100001)"],
        ),
        (
            ["auto", "settings", "--max-instances-per-region", "-5"],
            ["--max-instances-per-region: must be a whole number from 1 to 100000 (got -5)"],
        ),
        (
            ["auto", "settings", "--phase-bake-time", "P8D"],
            ["--phase-bake-time: must be from PT0S to PT168H (got PT192H)"],
        ),
        (
            ["auto", "settings", "--phase-bake-time", "a day\x1b[2J"],
            ["--phase-bake-time: must be an ISO 8601 duration from PT0S to PT168H", "\\x1b[2J"],
        ),
        (
            ["auto", "settings", "--replication-timeout", "PT30M"],
            ["--replication-timeout: must be from PT1H to PT720H (got PT30M)"],
        ),
        (
            ["auto", "settings", "--replication-timeout", "P31D"],
            ["--replication-timeout: must be from PT1H to PT720H (got PT744H)"],
        ),
        (
            ["rollout", "plan", "--image", "x", "--extension", "y"],
            ["--image and --extension: give one or the other"],
        ),
        (
            ["rollout", "plan", "--image", "contoso/\x1b[2Jshop"],
            ["--image: 'contoso/\\x1b[2Jshop' is not an image or extension name"],
        ),
        (["rollout", "plan", "--extension", " "], ["--extension: ' ' is not an image or extension name"]),
        (["rollout", "show", "1.0\x1b[31m"], ["VERSION: '1.0\\x1b[31m' is not an image version"]),
        (["rollout", "cancel", "../x"], ["VERSION: '../x' is not an image version"]),
        (
            ["rollout", "hold", "1.0.0", "--reason", "  "],
            ["--reason: must not be empty (say why the rollout is held)"],
        ),
        (["rollout", "hold", "1.0.0", "--reason", "x" * 501], ["--reason: at most 500 characters (got 501)"]),
        (
            ["rollout", "hold", "1.0.0", "--reason", "soak\x1b[2J\u202e"],
            ["--reason: control characters are not allowed (got 'soak\\x1b[2J\\u202e')"],
        ),
    ],
)
def test_bad_values_are_one_line_naming_the_option_exit_3(offline, capsys, args, expected):
    assert_one_line(call(capsys, *args), 3, *expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--use-rolling-upgrade-policy", "--max-batch-instance-percent", "200"],
            "rollingUpgradePolicy.maxBatchInstancePercent: must be a whole number from 5 to 100",
        ),
        (
            ["--pause-time-between-batches", "PT49H"],
            "rollingUpgradePolicy.pauseTimeBetweenBatches: must be from PT0S to PT48H",
        ),
        (["--health-protocol", "ftp\x1b"], "applicationHealth.protocol:"),
    ],
)
def test_invalid_policy_flags_name_the_field_exit_3(offline, capsys, args, expected):
    result = call(capsys, "auto", "enable", "web", *args)
    assert result.code == 3, result
    assert_harmless(result)
    assert result.err.startswith("error: invalid upgrade policy:")
    assert expected in result.err


def test_an_invalid_policy_names_every_field_exit_3(
    offline: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rollingUpgradePolicy:\n  maxBatchInstancePercent: 1\n  bogus: 1\n")
    result = call(capsys, "auto", "enable", "web", "--policy", str(policy))
    assert result.code == 3
    assert_harmless(result)
    assert "invalid upgrade policy in --policy" in result.err
    assert "rollingUpgradePolicy.bogus: is not a known field" in result.err


def test_a_policy_that_turns_automatic_upgrades_off_is_refused_exit_3(
    offline: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text('{"upgradePolicy": {"automaticOSUpgradePolicy": {"EnableAutomaticOSUpgrade": false}}}')
    result = call(capsys, "auto", "enable", "web", "--policy", str(policy))
    assert_one_line(result, 3, "enableAutomaticOSUpgrade is false", "upgradectl auto disable", "--extension")
    both = call(
        capsys, "auto", "enable", "web", "--os-image", "--extension", "agent", "--policy", str(policy)
    )
    assert_one_line(both, 3, "enableAutomaticOSUpgrade is false")
    # Extensions only: the file's false is what they want (offline: refused only by no Temporal).
    assert_one_line(call(capsys, "auto", "enable", "web", "--extension", "agent", "--policy", str(policy)), 4)


def test_a_binary_policy_file_is_refused_exit_3(
    offline: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.bin"
    policy.write_bytes(b"\xff\xfe\x00\x1b[2J")
    assert_one_line(call(capsys, "auto", "enable", "web", "--policy", str(policy)), 3, "not a text file")


@pytest.mark.parametrize(
    "args",
    [
        ["auto", "enable", "web", "--max-batch-instance-percent", "abc"],
        ["auto", "bogus"],
        ["auto", "enable"],
        ["rollout", "hold", "1.0.0"],
        ["rollout", "show", "1.0.0", "--bogus\x1b"],
        ["auto", "settings", "--max-sets-per-region", "many"],
        ["rollout", "plan", "1.0.0"],
    ],
)
def test_usage_errors_exit_2_with_a_hint(offline, capsys, args):
    result = call(capsys, *args)
    assert result.code == 2, result
    assert_harmless(result)
    assert "try `upgradectl" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ["auto", "show"],
        ["auto", "settings"],
        ["auto", "disable", "web"],
        ["rollout", "list"],
        ["rollout", "show", "1.0.0"],
        ["rollout", "resume", "1.0.0"],
        ["rollout", "plan"],
        ["auto", "settings", "--max-sets-per-region", "5", "--phase-bake-time", "PT12H"],
    ],
)
def test_no_temporal_is_one_line_exit_4(offline, capsys, args):
    assert_one_line(call(capsys, *args), 4, "cannot reach Temporal")


@pytest.mark.parametrize(
    "args",
    [
        ["auto", "--help"],
        ["auto", "enable", "--help"],
        ["auto", "settings", "--help"],
        ["rollout", "--help"],
        ["rollout", "show", "--help"],
        ["rollout", "plan", "--help"],
    ],
)
def test_help_is_plain_text(offline, capsys, args):
    result = call(capsys, *args)
    assert result.code == 0
    assert "Traceback" not in result.out + result.err
    assert "Usage:" in result.out


# --- end to end: dev server, worker, emulator ------------------------------------------------------

# Runs `upgradectl` as the tests' `upgradectl` fixture does, with the two sub-apps added when
# starter/cli.py does not add them itself yet.
SHIM = (
    "import sys; from starter import cli; from tests.test_auto_cli import wired_groups; "
    "cli.app.registered_groups = wired_groups(); cli.main()"
)


@pytest.fixture
def auto_cli(local_env, local_worker, emulator):
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
        **emulator.env(),
        "UPGRADE_TASK_QUEUE": local_worker.task_queue,
        "COLUMNS": "200",
    }

    async def run(*args: str) -> Result:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SHIM,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        return Result(process.returncode, out.decode(), err.decode())

    return run


async def make_set(
    fleet: EmulatorAdmin,
    image: ImageReference,
    location: str,
    capacity: int = 2,
    timing: TimingSpec = INSTANT,
) -> str:
    name = f"auto-cli-{uuid.uuid4().hex[:8]}"
    await fleet.create_scale_set(
        ScaleSetSpec(name=name, location=location, capacity=capacity, image_reference=image, timing=timing)
    )
    return name


@pytest.fixture
async def fresh_watcher(local_env, local_worker):
    """The test's own watcher (one per task queue), stopped at the end: the session's dev server
    outlives the test's worker."""
    workflow_id = watcher_workflow_id(local_worker.task_queue)

    async def stop() -> None:
        handle = local_env.client.get_workflow_handle(workflow_id)
        with contextlib.suppress(Exception):  # none running
            await handle.terminate("a test's watcher")

    await stop()
    yield local_env.client.get_workflow_handle(workflow_id)
    await stop()


class Image:
    """A marketplace image of the test's own (the emulator's gallery is the session's)."""

    def __init__(self) -> None:
        self.latest = ImageReference.parse(f"Contoso:cli-{uuid.uuid4().hex[:8]}:2024:latest")

    def at(self, version: str) -> ImageReference:
        return self.latest.model_copy(update={"version": version})


async def test_enable_show_settings_and_disable(auto_cli, fresh_watcher, fleet):
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    follows = await make_set(fleet, image.latest, "westeurope")
    pinned = await make_set(fleet, image.at("1.0.0"), "northeurope")

    result = await auto_cli(
        "auto", "enable", follows, "--use-rolling-upgrade-policy", "--max-batch-instance-percent", "50",
        "--max-unhealthy-instance-percent", "50", "--not-before-timeout", "PT15M",
    )  # fmt: skip
    assert result.code == 0, result
    assert f"enrolled {follows} in automatic OS image upgrades" in result.err
    assert "notBeforeTimeout PT15M" in result.err
    assert "westeurope" in result.err
    result = await auto_cli("auto", "enable", pinned)
    assert result.code == 0, result
    assert "note: pinned to version 1.0.0: left alone" in result.err

    shown = await auto_cli("auto", "show", "--json")
    assert shown.code == 0, shown
    document = shown.json()
    assert document["watcher"] == "running"
    assert document["settings"]["pollInterval"] == "PT15M"
    by_name = {e["scaleSet"]: e for e in document["enrollments"]}
    assert set(by_name) == {follows, pinned}
    assert by_name[follows]["location"] == "westeurope"
    assert by_name[follows]["notBeforeTimeout"] == "PT15M"
    assert by_name[follows]["policy"]["rollingUpgradePolicy"]["maxBatchInstancePercent"] == 50
    # What was given is recorded: the scale set's own rolling policy decides the rest.
    assert by_name[follows]["policyGiven"] == ["maxBatchInstancePercent", "maxUnhealthyInstancePercent"]
    assert "note" not in by_name[follows]
    assert by_name[pinned]["note"].startswith("pinned to version 1.0.0")

    table = await auto_cli("auto", "show", pinned)
    assert table.code == 0, table
    assert "pinned to version 1.0.0" in table.out
    assert "northeurope" in table.out
    assert follows not in table.out
    assert "pollInterval" in table.out

    changed = await auto_cli(
        "auto",
        "settings",
        "--poll-interval",
        "PT2M",
        "--phase",
        "northeurope",
        "--phase",
        "westeurope",
        "--json",
    )
    assert changed.code == 0, changed
    assert changed.json()["pollInterval"] == "PT2M"
    assert changed.json()["phases"] == [["northeurope"], ["westeurope"]]
    again = await auto_cli("auto", "settings", "--replication-poll-interval", "PT3M", "--json")
    assert again.json() == {**changed.json(), "replicationPollInterval": "PT3M"}  # the rest kept

    refused = await auto_cli("auto", "settings", "--phase", "westeurope,northeurope")  # a geo-pair
    assert refused.code == 3, refused
    assert_harmless(refused)
    assert "phases" in refused.err

    missing = await auto_cli("auto", "enable", f"nope-{uuid.uuid4().hex[:6]}")
    assert missing.code == 3, missing
    assert len(missing.err.strip().splitlines()) == 1

    assert (await auto_cli("auto", "disable", pinned)).code == 0
    gone = await auto_cli("auto", "disable", pinned)
    assert gone.code == 5, gone
    assert "is not enrolled" in gone.err
    assert (await auto_cli("auto", "show", pinned)).code == 5


async def test_a_published_version_rolls_out_and_the_rollout_can_be_followed_and_steered(
    auto_cli, fresh_watcher, fleet
):
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[0, 0])
    west = await make_set(fleet, image.latest, "westeurope", timing=slow)
    north = await make_set(fleet, image.latest, "northeurope", timing=slow)
    for name in (west, north):
        result = await auto_cli("auto", "enable", name, "--health-interval", "1")
        assert result.code == 0, result
    assert (await auto_cli("rollout", "hold", "1.1.0", "--reason", "soak")).code == 5

    await fleet.publish_image(image.at("1.1.0"), ["westeurope", "northeurope"])
    await fresh_watcher.signal(CHECK_NOW_SIGNAL)

    async def listed() -> list[dict[str, Any]]:
        result = await auto_cli("rollout", "list", "--json")
        assert result.code == 0, result
        return [
            r for r in result.json()["value"] if r["version"] == "1.1.0" and image.latest.offer in r["source"]
        ]

    [summary] = await eventually(listed, bool, timeout=60)
    assert sorted(summary["scaleSets"]) == sorted([west, north])

    held = await auto_cli("rollout", "hold", "1.1.0", "--reason", "soak first")
    assert held.code == 0, held
    assert "hold requested for the rollout of" in held.out
    shown = (await auto_cli("rollout", "show", "1.1.0", "--json")).json()["value"]
    assert len(shown) == 1
    if shown[0]["state"] == "Held":  # else it ended within the hold's round trip
        assert shown[0]["hold"]["reason"] == "soak first"
        assert shown[0]["hold"]["by"]
        resumed = await auto_cli("rollout", "resume", "1.1.0")
        if resumed.code == 5:  # held in its last phase: it ends once the upgrades in flight do
            assert "no running rollout has version '1.1.0'" in resumed.err
        else:
            assert resumed.code == 0, resumed

    async def status() -> dict[str, Any]:
        shown: dict[str, Any] = (await auto_cli("rollout", "show", "1.1.0", "--json")).json()["value"][0]
        return shown

    final = await eventually(status, lambda s: s["state"] not in ("Running", "Held"), timeout=90)
    assert final["state"] == "Completed", final
    assert {s["scaleSet"]: s["state"] for s in final["sets"]} == {west: "Completed", north: "Completed"}
    assert [len(p) for p in final["phases"]] == [1, 1]  # a geo-pair: never one phase

    text = await auto_cli("rollout", "show", "1.1.0")
    assert text.code == 0, text
    for expected in ("phases", "westeurope", "northeurope", west, north, "Completed", "rolling-upgrade/"):
        assert expected in text.out, text.out
    assert (await auto_cli("rollout", "cancel", "1.1.0")).code == 5  # nothing running
    assert (await auto_cli("rollout", "show", "9.9.9")).code == 5
    listed_table = await auto_cli("rollout", "list")
    assert "1.1.0" in listed_table.out

    history = await auto_cli("history", west, "--json")
    assert history.json()["value"][0]["properties"]["startedBy"] == "Platform"


# --- rollout plan: the phases and zone waves a new version would get now --------------------------


def test_a_plan_lists_phases_regions_sets_cohorts_and_waves():
    from models.automatic import AutomaticSettings
    from starter.rollout_plan import PlannedSet, Rolled, RolloutPlan

    sets = [
        PlannedSet("web-b", "westeurope", ["1", "2", "3"], 30),
        PlannedSet("web-a", "westeurope", ["1", "2"], 20),
        PlannedSet("batch", "westeurope", [], 5),
        PlannedSet("api", "northeurope", ["2"], 10),
        PlannedSet("shop", "eastus", ["1"], 100),
    ]
    plan = RolloutPlan(
        Rolled("contoso/shop-os", "image contoso/shop-os", [s.name for s in sets]),
        AutomaticSettings(max_sets_per_region=2),
        {s.name: s for s in sets},
        {"gone": "not found"},
    )
    # northeurope (10 instances) is the canary; then its geo-pair and eastus (55, 100 instances).
    assert plan.phases == [["northeurope"], ["westeurope", "eastus"]]
    document = plan.to_json()
    west = document["phases"][1]["regions"][0]
    assert west["instances"] == 55
    assert [c["scaleSets"] for c in west["cohorts"]] == [["batch", "web-a"], ["web-b"]]
    assert west["cohorts"][0]["waves"] == [
        {"zone": "1", "scaleSets": ["web-a"]},
        {"zone": "2", "scaleSets": ["web-a"]},
        {"zone": "", "scaleSets": ["batch"]},
    ]
    assert [w["zone"] for w in west["cohorts"][1]["waves"]] == ["1", "2", "3"]
    assert document["leftOut"] == [{"name": "gone", "reason": "not found"}]
    lines = plan.lines()
    assert lines[0].startswith(
        "a new version of image contoso/shop-os: 5 scale set(s) in 3 region(s), 2 phase(s)"
    )
    assert "phase 1: northeurope" in lines
    assert "    web-a: 20 instance(s), zones 1, 2" in lines
    assert "    batch: 5 instance(s), regional" in lines
    assert "    cohort 1 of 2: batch, web-a" in lines
    assert "      wave 3, regional: batch" in lines
    assert "    wave 1, zone 2: api" in lines  # one cohort: no cohort line
    assert lines[-1] == "left out: gone: not found"


def test_the_plan_groups_sets_as_the_watcher_rolls_them():
    from models.automatic import Enrollment, ExtensionEnrollment
    from models.policy import UpgradePolicy
    from starter.rollout_plan import chosen_groups, rolled_groups

    gallery = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/contoso/images/shop-os"
    agent = ExtensionEnrollment(
        name="agent",
        publisher="Contoso",
        type_="Agent",
        model_version="1.2",
        automatic=True,
        installed=["1.2.0"],
    )
    latest = ImageReference(id=gallery, version="latest")

    def enrolled(name: str, location: str, image: ImageReference, **more: Any) -> Enrollment:
        return Enrollment(
            scale_set=name, policy=UpgradePolicy(), location=location, image_reference=image, **more
        )

    enrollments = [
        enrolled("b", "eastus", latest),
        enrolled("a", "westus", latest, extensions={"agent": agent}),
        enrolled("pinned", "eastus", ImageReference.parse("P:O:S:1.0.0"), note="pinned"),
    ]
    groups = rolled_groups(enrollments)
    assert [(g.key, g.title, g.scale_sets) for g in groups] == [
        ("contoso/shop-os", "image contoso/shop-os", ["a", "b"]),
        ("ext:contoso.agent/1", "extension Contoso.Agent 1.x", ["a"]),
    ]
    assert [g.key for g in chosen_groups(groups, enrollments, "contoso/shop-os", None)] == ["contoso/shop-os"]
    assert [g.key for g in chosen_groups(groups, enrollments, gallery.upper(), None)] == ["contoso/shop-os"]
    assert [g.key for g in chosen_groups(groups, enrollments, None, "ext:Contoso.Agent")] == [
        "ext:contoso.agent/1"
    ]
    assert chosen_groups(groups, enrollments, "P:O:S", None) == []  # pinned: not rolled


async def test_rollout_plan_and_the_fleet_scale_settings(auto_cli, fresh_watcher, fleet):
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    names = {}
    for key, location, zones, capacity in [
        ("west-big", "westeurope", ["1", "2", "3"], 6),
        ("west-small", "westeurope", ["1", "2"], 2),
        ("west-regional", "westeurope", [], 2),
        ("north", "northeurope", ["2"], 3),
    ]:
        names[key] = f"auto-cli-{key}-{uuid.uuid4().hex[:6]}"
        await fleet.create_scale_set(
            ScaleSetSpec(
                name=names[key], location=location, capacity=capacity, zones=zones,
                image_reference=image.latest, timing=INSTANT,
            )
        )  # fmt: skip
        assert (await auto_cli("auto", "enable", names[key])).code == 0

    changed = await auto_cli(
        "auto", "settings", "--max-sets-per-region", "2", "--max-instances-per-region", "50",
        "--phase-bake-time", "PT12H", "--replication-timeout", "P2D", "--json",
    )  # fmt: skip
    assert changed.code == 0, changed
    assert {k: changed.json()[k] for k in ("maxSetsPerRegion", "maxInstancesPerRegion")} == {
        "maxSetsPerRegion": 2,
        "maxInstancesPerRegion": 50,
    }
    assert changed.json()["phaseBakeTime"] == "PT12H" and changed.json()["replicationTimeout"] == "P2D"
    shown = await auto_cli("auto", "show")
    assert shown.code == 0, shown
    for expected in (
        "maxSetsPerRegion",
        "maxInstancesPerRegion",
        "phaseBakeTime",
        "PT12H",
        "replicationTimeout",
    ):
        assert expected in shown.out, shown.out

    source = f"Contoso:{image.latest.offer}:2024"
    planned = await auto_cli("rollout", "plan", "--image", source, "--json")
    assert planned.code == 0, planned
    [plan] = planned.json()["value"]
    assert plan["rollout"] == source and plan["maxSetsPerRegion"] == 2
    # northeurope (3 instances) is the canary; westeurope, its geo-pair, the next phase.
    assert [[r["region"] for r in p["regions"]] for p in plan["phases"]] == [["northeurope"], ["westeurope"]]
    west = plan["phases"][1]["regions"][0]
    assert west["instances"] == 10
    zones_of = {s["name"]: s["zones"] for s in west["scaleSets"]}
    assert zones_of == {
        names["west-big"]: ["1", "2", "3"],
        names["west-small"]: ["1", "2"],
        names["west-regional"]: [],
    }
    in_order = sorted([names["west-big"], names["west-regional"], names["west-small"]])
    assert [c["scaleSets"] for c in west["cohorts"]] == [in_order[:2], in_order[2:]]
    for cohort in west["cohorts"]:
        waves = [w["zone"] for w in cohort["waves"]]
        assert waves == sorted(waves, key=lambda z: (z == "", z))  # zones in order, regional last

    text = await auto_cli("rollout", "plan")
    assert text.code == 0, text
    assert_harmless(text)
    for expected in (
        f"a new version of image {source}: 4 scale set(s) in 2 region(s), 2 phase(s)",
        "phase 1: northeurope",
        "phase 2: westeurope",
        f"{names['west-regional']}: 2 instance(s), regional",
        "cohort 1 of 2",
        "wave 1, zone 1",
    ):
        assert expected in text.out, text.out

    missing = await auto_cli("rollout", "plan", "--image", "contoso/nothing")
    assert missing.code == 5, missing
    assert "no enrolled scale set follows contoso/nothing" in missing.err
    assert len(missing.err.strip().splitlines()) == 1


async def test_enable_refuses_a_set_without_one_health_source_naming_the_missing_piece(
    auto_cli, fresh_watcher, fleet
):
    """Seed 000: automatic OS image upgrades need application health probes or the Application
    Health extension, one of them."""
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    names = {}
    for source in ("none", "both", "loadBalancerProbe"):
        names[source] = f"auto-health-{uuid.uuid4().hex[:8]}"
        spec = ScaleSetSpec(
            name=names[source], capacity=2, image_reference=image.latest, timing=INSTANT, health_source=source
        )
        await fleet.create_scale_set(spec)

    bare = await auto_cli("auto", "enable", names["none"])
    assert_one_line(
        bare, 3, "has no health source", "networkProfile.healthProbe.id", "ApplicationHealthLinux"
    )
    both = await auto_cli("auto", "enable", names["both"])
    assert_one_line(both, 3, "only one source of health", f"{names['both']}-lb/probes/health")
    probed = await auto_cli("auto", "enable", names["loadBalancerProbe"])
    assert probed.code == 0, probed
    shown = await auto_cli("auto", "show", "--json")
    assert {e["scaleSet"] for e in shown.json()["enrollments"]} == {names["loadBalancerProbe"]}
