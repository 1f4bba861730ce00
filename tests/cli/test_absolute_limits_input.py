"""The absolute limits at the command line (`--max-batch-instance-count`,
`--max-unhealthy-instance-count`, `--max-unhealthy-upgraded-instance-count`, and a policy file's
fields) for `start`, `plan` and `auto enable`: a bad value is refused naming the field and its
range, exit 3 (a value that is not a number: a usage error, exit 2), never a traceback; good ones
reach the request. In-process, with Temporal and the fleet at a closed port (`offline`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.upgrade import UpgradeRequest
from starter.upgrade_commands import build_request
from tests.helpers.commands import assert_harmless, call
from tests.helpers.upgrades import V2

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process

COMMANDS = {
    "start": ["start", "--scale-set", "web", "--image", str(V2)],
    "plan": ["plan", "--scale-set", "web", "--image", str(V2)],
    "auto enable": ["auto", "enable", "web", "--use-rolling-upgrade-policy"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--max-batch-instance-count", "0"],
            "rollingUpgradePolicy.maxBatchInstanceCount: must be a whole number from 1 to 10000 (got 0)",
        ),
        (
            ["--max-unhealthy-instance-count", "-1"],
            "rollingUpgradePolicy.maxUnhealthyInstanceCount: must be a whole number from 0 to 10000 (got -1)",
        ),
        (
            ["--max-unhealthy-upgraded-instance-count", "10001"],
            "rollingUpgradePolicy.maxUnhealthyUpgradedInstanceCount: must be a whole number from 0 to "
            "10000 (got 10001)",
        ),
        (
            ["--max-batch-instance-count", "5", "--max-unhealthy-instance-count", "3"],
            "rollingUpgradePolicy.maxBatchInstanceCount (5) may not exceed maxUnhealthyInstanceCount (3): "
            "a batch counts as unhealthy while it upgrades (with 0, one instance at a time)",
        ),
    ],
)
def test_a_bad_count_is_refused_naming_the_field_and_its_range_exit_3(offline, capsys, command, args, line):
    result = call(capsys, *COMMANDS[command], *args)
    assert result.code == 3, result
    # The policy's refusal: its heading, then one line for the field.
    assert result.err.splitlines() == ["error: invalid upgrade policy:", line], result.err
    assert_harmless(result)
    assert "batch 1:" not in result.out


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    "option",
    [
        "--max-batch-instance-count",
        "--max-unhealthy-instance-count",
        "--max-unhealthy-upgraded-instance-count",
    ],
)
def test_a_count_that_is_not_a_number_is_a_usage_error_exit_2(offline, capsys, command, option):
    result = call(capsys, *COMMANDS[command], option, "many\x1b[2J")
    assert result.code == 2, result
    lines = result.err.splitlines()
    assert lines[0].startswith(f"error: Invalid value for '{option}': ") and "integer" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("try `upgradectl")
    assert_harmless(result)


def test_a_bad_count_in_a_policy_file_names_the_file_and_the_field(
    offline: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("upgradePolicy:\n  RollingUpgradePolicy:\n    MaxUnhealthyUpgradedInstanceCount: 2.5\n")
    result = call(capsys, *COMMANDS["start"], "--policy", str(policy))
    assert result.code == 3, result
    assert result.err.splitlines() == [
        f"error: invalid upgrade policy in --policy {policy}:",
        "rollingUpgradePolicy.maxUnhealthyUpgradedInstanceCount: must be a whole number from 0 to "
        "10000 (got 2.5)",
    ]


def test_good_counts_reach_the_request_as_given(
    offline: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rollingUpgradePolicy:\n  maxBatchInstanceCount: 3\n  maxUnhealthyInstanceCount: 4\n")
    flags = {"rollingUpgradePolicy": {"maxUnhealthyUpgradedInstanceCount": 0, "maxBatchInstanceCount": 2}}
    request = build_request("web", str(V2), policy, flags, "User")
    assert isinstance(request, UpgradeRequest)
    rolling = request.policy
    assert (
        rolling.max_batch_instance_count,  # the flag over the file
        rolling.max_unhealthy_instance_count,
        rolling.max_unhealthy_upgraded_instance_count,
    ) == (2, 4, 0)
    assert {"maxBatchInstanceCount", "maxUnhealthyInstanceCount", "maxUnhealthyUpgradedInstanceCount"} <= set(
        request.policy_given or []
    )
    assert ("maxBatchInstanceCount", "2 (given)") in request.rolling_policy()
    # Past the policy, `start` goes on to Temporal (closed here): the counts were taken.
    counts = ("--max-batch-instance-count", "1", "--max-unhealthy-instance-count", "0")
    result = call(capsys, *COMMANDS["start"], *counts)
    assert result.code == 4 and "cannot reach Temporal" in result.err, result
