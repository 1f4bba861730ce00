"""`upgradectl start --extensions` in-process with Temporal and the fleet unreachable (nothing is ever
called): bad input is one line with the documented exit code; and the change an extension upgrade
carries, as the status and history say it. (End to end: tests/cli/test_extension_commands.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from models.change import Change, ExtensionTarget
from models.image import ImageReference
from models.status import UpgradeOperationHistoricalStatusInfo
from rules.presentation import describe_change
from starter.history import history_target
from tests.helpers.commands import HOSTILE, assert_harmless, call, one_error
from tests.helpers.upgrades import V1, V2

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process

PUBLISHER = "Contoso.Monitoring"


# --- bad input: in-process, Temporal and the fleet unreachable (nothing is ever called) -----------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", str(V2), "--extensions"], "--image and --extensions: give one of them, not both"),
        (["--extensions", "agent", "--image", str(V2)], "give one of them, not both"),
        ([], "Missing option '--image' (or '--extensions')"),
        (["agent"], "unexpected argument 'agent': extension names are taken only after --extensions"),
        (["--image", str(V2), "agent\x1b[2J"], "unexpected argument 'agent\\x1b[2J'"),
    ],
)
def test_image_and_extensions_go_alone_a_usage_error_otherwise(offline, capsys, args, message):
    for command in ("start", "plan"):
        result = call(capsys, command, "--scale-set", "web", *args)
        assert result.code == 2, result.err
        lines = result.err.splitlines()
        assert lines[0].startswith("error: ") and message in lines[0], result.err
        assert len(lines) == 2 and lines[1] == f"try `upgradectl {command} --help`"
        assert_harmless(result)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["agent\x1b[2J\x1b[41m"], "'agent\\x1b[2J\\x1b[41m' is not an extension name"),
        (["[bold red]agent[/]"], "'[bold red]agent[/]' is not an extension name"),
        ([":b:"], "':b:' is not an extension name"),
        (["ag\u202eent\x9b\x07"], "'ag\\u202eent\\x9b\\x07' is not an extension name"),
        (["agent=1.x\x1b[2J"], "agent=1.x\\x1b[2J: VERSION must be an exact version of 2 to 4 numbers"),
        (["agent=2"], "agent=2: VERSION must be an exact version"),
        (["agent,logs", "Agent"], "--extensions: Agent is named twice"),
        ([","], "--extensions: an empty name"),
        (["a" * 65], "is not an extension name (letters, digits, '.', '_', '-'; up to 64)"),
    ],
)
def test_hostile_or_malformed_extension_names_are_one_line_exit_three(offline, capsys, names, message):
    result = call(capsys, "start", "--scale-set", "web", "--extensions", *names)
    assert result.code == 3
    line = one_error(result.err)
    assert line.startswith("error: --extensions: ") and message in line
    assert "🅱" not in line and len(line) < 400
    assert_harmless(result)
    for char in HOSTILE:
        assert char not in result.out


# --- the change, as the status and history say it -------------------------------------------------


def test_the_change_reads_from_to_for_each_extension_and_the_image():
    agent = ExtensionTarget(name="agent", publisher=PUBLISHER, type_="A", version="1.3.0")
    logs = ExtensionTarget(name="logs", publisher=PUBLISHER, type_="L", version="2.1.4")
    sources = {"agent 1.2.0, logs 2.0.1": 5, "agent 1.10.0, logs not installed": 1}
    assert describe_change(Change(extensions=[agent, logs]), sources) == (
        "extension agent 1.2.0/1.10.0 → 1.3.0, logs 2.0.1/not installed → 2.1.4"
    )
    assert describe_change(Change(extensions=[agent]), {}) == "extension agent 1.3.0 (nothing to upgrade)"
    v0 = ImageReference.parse("Contoso:web-os:2024:2024.10.01")
    assert describe_change(Change(image=V2), {str(V1): 4, str(v0): 1}) == (
        f"OS image {V1} (+1 more) → {V2.version}"
    )

    def entry(**properties: Any) -> UpgradeOperationHistoricalStatusInfo:
        document = {
            "runningStatus": {"code": "Completed", "startTime": "2026-01-01T00:00:00Z"},
            "progress": {},
            **properties,
        }
        return UpgradeOperationHistoricalStatusInfo.model_validate({"properties": document})

    pinned = [agent.to_json(), logs.to_json()]
    assert history_target(entry(extensions=pinned)) == "extension agent 1.3.0, logs 2.1.4"
    assert history_target(entry(targetImageReference=V2.to_json())) == V2.version
