"""`upgradectl auto` and `upgradectl rollout` against bad input: one line naming the option and what
it allows, with the documented exit code, never a traceback, nothing echoed that drives a terminal.

They run the real entry point in-process (`starter.cli.cli`) with Temporal pointed at a closed
port; until starter/cli.py adds the two sub-apps itself, the `wired` fixture adds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from starter import processes
from tests.helpers.commands import assert_harmless, assert_one_line, call
from tests.helpers.upgrades import CLOSED

pytestmark = [pytest.mark.fast, pytest.mark.usefixtures("wired")]  # `make test-fast`: pure, in-process


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED)
    monkeypatch.setenv("COLUMNS", "200")


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PT30M", "--extension-retry-interval: must be from PT1H to PT720H (got PT30M)"),
        ("P31D", "--extension-retry-interval: must be from PT1H to PT720H (got PT744H)"),
        ("every few days\x1b[2J", "--extension-retry-interval: must be an ISO 8601 duration from PT1H"),
    ],
)
def test_a_bad_retry_interval_is_one_line_naming_the_option_exit_3(monkeypatch, capsys, value, expected):
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{processes.free_port()}")  # never reached
    result = call(capsys, "auto", "settings", "--extension-retry-interval", value)
    code, out, err = result.code, result.out, result.err
    assert code == 3, (out, err)
    [line] = err.strip().splitlines()
    assert expected in line and "\x1b" not in line and "Traceback" not in err
