"""`upgradectl auto enable`'s maintenance window (starter/maintenance_options.py) against bad input:
one line per problem naming the flag, or the file and the field's path in it, exit 3, never a
traceback, nothing echoed that drives a terminal. And how `auto show` presents a set's window
(starter/auto_view.py): its next occurrence in the window's time zone and UTC, or no window.

In-process, with Temporal at an address where nothing answers: valid input gets as far as
Temporal (exit 4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from models.automatic import Enrollment
from models.maintenance import MaintenanceWindow
from starter.auto_view import window_rows
from tests.helpers.commands import assert_harmless, assert_one_line, call

pytestmark = [pytest.mark.fast, pytest.mark.usefixtures("wired")]

FLAGS = ["--window-start", "2025-01-01 22:00", "--window-duration", "05:00"]
ZONE = ["--window-time-zone", "Pacific Standard Time"]
NIGHTLY = {"startDateTime": "2025-01-01 22:00", "duration": "05:00", "timeZone": "Pacific Standard Time"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--window-start", "2025-01-01 22:00", "--window-duration", "04:00", *ZONE],
            "--window-duration: must be hh:mm from 05:00 to 23:59: Azure's OSImage windows last at least "
            "5 hours (got '04:00')",
            id="too short",
        ),
        pytest.param(
            [*FLAGS, "--window-time-zone", "Mars\x1b[2J"],
            "--window-time-zone: must be a Windows time zone name such as Pacific Standard Time",
            id="unknown time zone, escaped",
        ),
        pytest.param(
            [*FLAGS, "--window-time-zone", "America/Los_Angeles"],
            "Windows calls America/Los_Angeles 'Pacific Standard Time'",
            id="an IANA name",
        ),
        pytest.param(
            ["--window-start", "tonight", "--window-duration", "05:00", *ZONE],
            "--window-start: must be a local date and time as yyyy-MM-dd hh:mm (24-hour)",
            id="bad start",
        ),
        pytest.param(
            ["--window-start", "2025-01-01 22:00"],
            "--window-duration, --window-time-zone: required with --window-start",
            id="a start alone",
        ),
    ],
)
def test_bad_window_flags_are_one_line_naming_the_flag_exit_3(offline, capsys, args, expected):
    assert_one_line(call(capsys, "auto", "enable", "web", *args), 3, expected)


def write(tmp_path: Path, document: object, name: str = "window.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def test_a_bad_window_file_names_the_file_and_each_field_exit_3(offline, capsys, tmp_path):
    weekly = {
        "location": "westus2",
        "properties": {
            "maintenanceScope": "OSImage",
            "maintenanceWindow": {**NIGHTLY, "recurEvery": "Week Saturday,Sunday"},
        },
    }
    path = write(tmp_path, weekly)
    result = call(capsys, "auto", "enable", "web", "--maintenance-window", str(path))
    assert_one_line(
        result,
        3,
        f"--maintenance-window {path}: properties.maintenanceWindow.recurEvery: must be Day (or 1Day)",
    )
    two = write(tmp_path, {**NIGHTLY, "duration": "1:00", "timeZone": "Atlantis"}, "two.json")
    result = call(capsys, "auto", "enable", "web", "--maintenance-window", str(two))
    assert result.code == 3
    assert_harmless(result)
    lines = result.err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: --maintenance-window") and "duration:" in lines[0]
    assert lines[1].startswith(f"--maintenance-window {two}: timeZone: must be a Windows time zone name")
    guest = write(tmp_path, {"maintenanceScope": "InGuestPatch", "maintenanceWindow": NIGHTLY}, "guest.json")
    assert_one_line(
        call(capsys, "auto", "enable", "web", "--maintenance-window", str(guest)),
        3,
        "maintenanceScope: must be OSImage",
    )
    binary = tmp_path / "window.bin"
    binary.write_bytes(b"\xff\x1b[2J")
    assert_one_line(
        call(capsys, "auto", "enable", "web", "--maintenance-window", str(binary)), 3, "not a text file"
    )


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(NIGHTLY, id="the window"),
        pytest.param(
            {"properties": {"maintenanceScope": "OSImage", "maintenanceWindow": NIGHTLY}}, id="REST"
        ),
        pytest.param({"maintenanceScope": "OSImage", "name": "nightly", **NIGHTLY}, id="az flattened"),
    ],
)
def test_a_good_window_gets_as_far_as_temporal(offline, capsys, tmp_path, document):
    path = write(tmp_path, document)
    assert_one_line(call(capsys, "auto", "enable", "web", "--maintenance-window", str(path)), 4, "Temporal")
    # Flags on top of a file: its duration replaced.
    longer = call(
        capsys, "auto", "enable", "web", "--maintenance-window", str(path), "--window-duration", "06:00"
    )
    assert_one_line(longer, 4, "Temporal")
    assert_one_line(call(capsys, "auto", "enable", "web", *FLAGS, *ZONE), 4, "Temporal")


# --- how `auto show` presents it ------------------------------------------------------------------

MARCH_8 = datetime(2025, 3, 8, 20, 0, tzinfo=UTC)  # 12:00 PST


def rows(enrollment: Enrollment, now: datetime = MARCH_8) -> list[tuple[str, str]]:
    return [(label, text.plain) for label, text in window_rows(enrollment, now)]


def test_auto_show_prints_the_next_window_in_its_time_zone_and_utc() -> None:
    enrolled = Enrollment(
        scale_set="web", policy={}, maintenance_window=MaintenanceWindow.model_validate(NIGHTLY)
    )
    assert rows(enrolled) == [
        ("maintenance window", "daily 22:00 for 05:00 (Pacific Standard Time) from 2025-01-01 (enrolled)"),
        ("next window", "2025-03-08 22:00 PST to 2025-03-09 04:00 PDT (2025-03-09 06:00 to 11:00 UTC)"),
    ]
    assert rows(enrolled, datetime(2025, 3, 9, 7, 0, tzinfo=UTC))[1][0] == "open now"


def test_auto_show_says_no_window_and_which_window_governs() -> None:
    assert rows(Enrollment(scale_set="web", policy={})) == [
        ("maintenance window", "no window: automatic upgrades start when a version is found")
    ]
    assigned = MaintenanceWindow.model_validate(
        {**NIGHTLY, "timeZone": "UTC", "expirationDateTime": "2025-03-01 00:00"}
    )
    both = Enrollment(
        scale_set="web",
        policy={},
        maintenance_window=MaintenanceWindow.model_validate(NIGHTLY),
        assigned_maintenance_window=assigned,
    )
    assert rows(both) == [
        (
            "maintenance window",
            "daily 22:00 for 05:00 (UTC) from 2025-01-01, until 2025-03-01 00:00 (the OSImage maintenance "
            "configuration assigned to it in Azure)",
        ),
        ("not used", "the enrolled window, daily 22:00 for 05:00 (Pacific Standard Time) from 2025-01-01"),
        ("next window", "none: the window expired at 2025-03-01 00:00"),
    ]
