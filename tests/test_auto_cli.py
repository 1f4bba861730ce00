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

import pytest
from typer.models import TyperInfo

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


def call(capsys, *args: str) -> Result:
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
        (["rollout", "show", "1.0\x1b[31m"], ["VERSION: '1.0\\x1b[31m' is not an image version"]),
        (["rollout", "cancel", "../x"], ["VERSION: '../x' is not an image version"]),
        (["rollout", "hold", "1.0.0", "--reason", "  "], ["--reason: must say why, in 1 to 500 characters"]),
        (["rollout", "hold", "1.0.0", "--reason", "x" * 501], ["--reason: must say why"]),
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


def test_an_invalid_policy_names_every_field_exit_3(offline, capsys, tmp_path: Path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("rollingUpgradePolicy:\n  maxBatchInstancePercent: 1\n  bogus: 1\n")
    result = call(capsys, "auto", "enable", "web", "--policy", str(policy))
    assert result.code == 3
    assert_harmless(result)
    assert "invalid upgrade policy in --policy" in result.err
    assert "rollingUpgradePolicy.bogus: is not a known field" in result.err


def test_a_policy_that_turns_automatic_upgrades_off_is_refused_exit_3(offline, capsys, tmp_path: Path):
    policy = tmp_path / "policy.json"
    policy.write_text('{"upgradePolicy": {"automaticOSUpgradePolicy": {"EnableAutomaticOSUpgrade": false}}}')
    result = call(capsys, "auto", "enable", "web", "--policy", str(policy))
    assert_one_line(result, 3, "enableAutomaticOSUpgrade is false", "upgradectl auto disable")


def test_a_binary_policy_file_is_refused_exit_3(offline, capsys, tmp_path: Path):
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
    fleet, image: ImageReference, location: str, capacity: int = 2, timing: TimingSpec = INSTANT
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

    async def listed() -> list[dict]:
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

    async def status() -> dict:
        return (await auto_cli("rollout", "show", "1.1.0", "--json")).json()["value"][0]

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
