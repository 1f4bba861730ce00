"""What the command line tests share: a command's result, running `upgradectl`'s entry point in
the test's own process, and what may never reach a terminal raw."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.models import TyperInfo

from starter import cli as cli_module
from starter.auto_commands import auto_app, rollout_app


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


# What may never reach a terminal raw: ESC, a C1 CSI, BEL, a bidi override.
HOSTILE = ("\x1b", "\x9b", "\x07", "\u202e")


def call(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    code = cli_module.cli(list(args))
    out, err = capsys.readouterr()
    return Result(code, out, err)


def assert_harmless(result: Result) -> None:
    text = result.out + result.err
    assert "Traceback" not in text
    for char in HOSTILE:
        assert char not in text, f"{char!r} echoed raw: {text!r}"
    assert "╭" not in text  # no panels: one line, plus a hint for usage errors


def assert_one_line(result: Result, code: int, *expected: str) -> None:
    assert result.code == code, result
    assert_harmless(result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    for text in expected:
        assert text in lines[0], result.err


def one_error(err: str) -> str:
    """The one line of an error (nothing else on stderr)."""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def wired_groups() -> list[TyperInfo]:
    """The command groups with `auto` and `rollout` added where starter/cli.py does not add them
    (the `wired` fixture, and the shim the end-to-end tests run `upgradectl` through)."""
    groups = list(cli_module.app.registered_groups)
    names = {group.name for group in groups}
    if "auto" not in names:
        groups.append(TyperInfo(auto_app, name="auto"))
    if "rollout" not in names:
        groups.append(TyperInfo(rollout_app, name="rollout"))
    return groups
