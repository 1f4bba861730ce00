"""The maintenance window `upgradectl auto enable` takes: a JSON or YAML file in the shape of Azure's
maintenance configuration (`--maintenance-window FILE`: the whole OSImage configuration, its
properties, or just its maintenanceWindow), and flags on top of it (`--window-start`,
`--window-duration`, `--window-time-zone`; the recurrence is Day, the only one Azure allows for
OS image upgrades). A bad value is refused (exit 3), one line per field, naming the flag that
gave it, or the file and the field's path in it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from models.base import describe_validation_error, without_docs_link
from models.maintenance import MaintenanceWindow, window_from_user
from starter.common import fail, load_document
from starter.terminal import PATH_LIMIT, clean

WindowFile = Annotated[
    Path | None,
    typer.Option(
        "--maintenance-window",
        metavar="FILE",
        help="JSON/YAML: an OSImage maintenance configuration (as `az maintenance configuration show` "
        "prints it, or just its maintenanceWindow): automatic upgrades run only inside the window.",
    ),
]
WindowStart = Annotated[
    str | None,
    typer.Option(help="The first window's start, local time: 'yyyy-MM-dd hh:mm' (24-hour); daily after."),
]
WindowDuration = Annotated[str | None, typer.Option(help="hh:mm, 05:00-23:59 (Azure: at least 5 hours).")]
WindowTimeZone = Annotated[
    str | None, typer.Option(help="A Windows time zone name, such as 'Pacific Standard Time' or UTC.")
]
# The window's fields each flag gives.
FLAGS = {"startDateTime": "--window-start", "duration": "--window-duration", "timeZone": "--window-time-zone"}


def window_flags(
    maintenance_window: WindowFile = None,
    window_start: WindowStart = None,
    window_duration: WindowDuration = None,
    window_time_zone: WindowTimeZone = None,
) -> MaintenanceWindow | None:
    """The window the options give (None: none given): `with_options(maintenance_window=window_flags)`."""
    flags = {
        field: value
        for field, value in zip(FLAGS, (window_start, window_duration, window_time_zone), strict=True)
        if value is not None
    }
    if maintenance_window is None and not flags:
        return None
    document: dict[str, object] = {}
    where = f"--maintenance-window {clean(maintenance_window, PATH_LIMIT)}"
    if maintenance_window is not None:
        try:
            document = window_from_user(load_document(maintenance_window, "--maintenance-window")).to_json()
        except ValidationError as err:
            fail("\n".join(f"{where}: {line}" for line in describe_validation_error(err).splitlines()))
    else:
        missing = [flag for field, flag in FLAGS.items() if field not in flags]
        if missing:
            fail(
                f"{', '.join(missing)}: required with {', '.join(FLAGS[f] for f in flags)} (a window "
                "is a start, a duration and a time zone; or give --maintenance-window FILE)"
            )
    try:
        return MaintenanceWindow.from_user({**document, **flags})
    except ValidationError as err:
        lines = []
        for problem in err.errors(include_url=False):
            field = str(problem["loc"][0]) if problem["loc"] else ""
            message = without_docs_link(problem["msg"].removeprefix("Value error, "))
            lines.append(f"{FLAGS[field]}: {message}" if field in flags else f"{where}: {message}")
        fail("\n".join(lines))
