"""`upgradectl`: start, inspect, watch and cancel upgrades; run the worker and the fleet emulator.

The app assembles the command groups (each in a module of its own, none importing another):
the upgrade commands, the launchers, `fleet`, `auto` and `rollout`. What they share (error
mapping, exit codes, option helpers, output) is starter/common.py.
"""

from __future__ import annotations

import sys

import typer
from rich.text import Text

from starter.auto_commands import auto_app, rollout_app
from starter.common import CommandLineError, errors
from starter.fleet_commands import fleet_app
from starter.launch_commands import launch_app
from starter.terminal import clean, clean_message
from starter.upgrade_commands import extensions_equals, upgrade_app
from starter.upgrades import EXIT_ERROR, EXIT_USAGE
from worker.process_exit import exit_after

# Help texts are plain text: "[:VERSION|latest]" is an image reference's syntax, not markup.
app = typer.Typer(
    help="Durable rolling OS image and extension upgrades for VM scale sets, on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(upgrade_app)  # no name: start, plan, status, ... at the top level
app.add_typer(launch_app)  # worker, demo
app.add_typer(fleet_app, name="fleet")
app.add_typer(auto_app, name="auto")
app.add_typer(rollout_app, name="rollout")


def cli(args: list[str] | None = None) -> int:
    """Run `upgradectl` with these arguments; returns the exit code. Usage errors (an unknown
    option, a missing or malformed value) are one line plus a hint, exit 2, with the user's
    text made harmless; click's own panel would echo it raw."""
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=extensions_equals(sys.argv[1:] if args is None else args),
            prog_name="upgradectl",
            standalone_mode=False,
        )
    except CommandLineError as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            return EXIT_USAGE  # typer printed the help while raising it
        errors.print(
            Text.assemble(("error: ", "bold red"), clean_message(err.format_message())), soft_wrap=True
        )
        context = getattr(err, "ctx", None)
        where = context.command_path if context is not None else "upgradectl"
        errors.print(Text(f"try `{clean(where)} --help`", "grey50"), soft_wrap=True)
        return getattr(err, "exit_code", EXIT_USAGE)
    except typer.Abort:
        errors.print(Text("aborted", "bold red"))
        return EXIT_ERROR
    return code if isinstance(code, int) else 0


def main() -> None:
    """The `upgradectl` entry point."""
    exit_after(lambda: sys.exit(cli()))


if __name__ == "__main__":
    main()
