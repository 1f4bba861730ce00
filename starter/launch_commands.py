"""`upgradectl worker` and `upgradectl demo`: run the product's processes."""

from __future__ import annotations

from typing import Annotated

import typer

from starter.common import errors

# Commands of the top level (cli.py adds them without a group name).
launch_app = typer.Typer(rich_markup_mode=None)


@launch_app.command("worker")
def worker_command() -> None:
    """Run a worker (same as `python -m worker`)."""
    from worker.main import main

    main()


@launch_app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the servers up afterwards for inspection.")
    ] = False,
    instances: Annotated[int, typer.Option(help="Instances in the demo scale set.")] = 20,
) -> None:
    """Start a dev server, the emulator and a worker, and run a real upgrade with live progress."""
    from starter.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, instances=instances, console=errors))
