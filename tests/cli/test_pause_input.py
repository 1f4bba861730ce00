"""`upgradectl pause`, `resume`, `approve`, `cancel` and `start --not-before-timeout` in-process, Temporal
unreachable: bad input is one line naming the option, with the documented exit code."""

from __future__ import annotations

import pytest

from starter.cli import cli
from tests.helpers.commands import HOSTILE
from tests.helpers.upgrades import CLOSED, V2

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("TEMPORAL_ADDRESS", CLOSED)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pause", "web", "--reason", ""], 3, "--reason: must not be empty"),
        (["pause", "web", "--reason", "x" * 501], 3, "--reason: at most 500 characters (got 501)"),
        (["pause", "web", "--reason", "\x1b[2Jgone"], 3, "--reason: control characters are not allowed"),
        (["pause", "web", "--reason", "ok", "--by", "\u202eeve"], 3, "--by: control characters"),
        (["pause", "web"], 2, "Missing option '--reason'"),
        (["cancel", "web", "--by", "\x1b[2Jeve"], 3, "--by: control characters are not allowed"),
        (["cancel", "web", "--by", " "], 3, "--by: must not be empty (who cancels it)"),
        (["cancel", "web", "--by", "x" * 65], 3, "--by: at most 64 characters (got 65)"),
        (["pause", "bad name\x1b", "--reason", "x"], 3, "SCALE_SET: 'bad name\\x1b' is not a scale set name"),
        (
            ["approve", "web", "--instances", "0;3"],
            3,
            "--instances: must be instance ids separated by commas",
        ),
        (["approve", "web", "--instances", "0,,3"], 3, "--instances: must be instance ids"),
        (["approve", "web", "--instances", "\x9b0"], 3, "--instances: must be instance ids"),
        (
            ["start", "--scale-set", "web", "--image", str(V2), "--not-before-timeout", "PT1M"],
            3,
            "--not-before-timeout: must be from PT5M to PT2H (got PT1M)",
        ),
        (
            ["start", "--scale-set", "web", "--image", str(V2), "--not-before-timeout", "soon"],
            3,
            "--not-before-timeout: must be an ISO 8601 duration from PT5M to PT2H",
        ),
        (["resume", "web"], 4, "cannot reach Temporal"),
    ],
)
def test_bad_input_is_one_line_naming_the_option(offline, capsys, args, code, message):
    result = cli(args)
    out, err = capsys.readouterr()
    assert result == code, err
    assert message in err
    assert "Traceback" not in err and not any(c in err + out for c in HOSTILE)
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
