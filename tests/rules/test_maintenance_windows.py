"""Maintenance window arithmetic (rules/maintenance_windows.py) as tables, across the daylight
saving changes of 2025: US Pacific (9 March, 2 November), W. Europe (30 March, 26 October: the
last Sundays) and AUS Eastern (southern hemisphere: back on 6 April, forward on 5 October).
Every expected instant is UTC; the comments give the wall clock."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from models.maintenance import MaintenanceWindow
from models.time_zones import WINDOWS_TIME_ZONES
from rules.maintenance_windows import next_window, occurrence, occurrence_text, window_at

PACIFIC = "Pacific Standard Time"
EUROPE = "W. Europe Standard Time"
SYDNEY = "AUS Eastern Standard Time"


def window(
    start: str, duration: str = "05:00", zone: str = PACIFIC, expiration: str | None = None
) -> MaintenanceWindow:
    return MaintenanceWindow(
        start_date_time=start, duration=duration, time_zone=zone, expiration_date_time=expiration
    )


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def span(start: str, end: str) -> tuple[datetime, datetime]:
    return utc(start), utc(end)


@pytest.mark.parametrize(
    ("chosen", "day", "expected"),
    [
        # US Pacific: PST is UTC-8, PDT UTC-7; forward 02:00 -> 03:00 on 9 March.
        pytest.param(
            window("2025-01-01 22:00"),
            date(2025, 3, 8),
            span("2025-03-09 06:00", "2025-03-09 11:00"),
            id="pacific 22:00 PST the evening before spring forward",
        ),
        pytest.param(
            window("2025-01-01 22:00"),
            date(2025, 3, 9),
            span("2025-03-10 05:00", "2025-03-10 10:00"),
            id="pacific 22:00 PDT after spring forward: 23 hours later",
        ),
        pytest.param(
            window("2025-01-01 02:30"),
            date(2025, 3, 9),
            span("2025-03-09 10:00", "2025-03-09 15:00"),
            id="pacific 02:30 is skipped: opens at 03:00 PDT, the change",
        ),
        pytest.param(
            window("2025-01-01 02:00"),
            date(2025, 3, 9),
            span("2025-03-09 10:00", "2025-03-09 15:00"),
            id="pacific 02:00 is skipped too: 03:00 PDT",
        ),
        pytest.param(
            window("2025-01-01 03:00"),
            date(2025, 3, 9),
            span("2025-03-09 10:00", "2025-03-09 15:00"),
            id="pacific 03:00 PDT exists: the same instant",
        ),
        pytest.param(
            window("2025-01-01 01:59"),
            date(2025, 3, 9),
            span("2025-03-09 09:59", "2025-03-09 14:59"),
            id="pacific 01:59 PST, the minute before the change",
        ),
        # Back 02:00 -> 01:00 on 2 November.
        pytest.param(
            window("2025-01-01 22:00"),
            date(2025, 11, 1),
            span("2025-11-02 05:00", "2025-11-02 10:00"),
            id="pacific 22:00 PDT before fall back, over it: 5 real hours (02:00 PST)",
        ),
        pytest.param(
            window("2025-01-01 22:00"),
            date(2025, 11, 2),
            span("2025-11-03 06:00", "2025-11-03 11:00"),
            id="pacific 22:00 PST after fall back: 25 hours later",
        ),
        pytest.param(
            window("2025-01-01 01:30"),
            date(2025, 11, 2),
            span("2025-11-02 08:30", "2025-11-02 13:30"),
            id="pacific 01:30 happens twice: the first (PDT)",
        ),
        # W. Europe: CET is UTC+1, CEST UTC+2; forward 02:00 -> 03:00 on 30 March.
        pytest.param(
            window("2025-01-01 22:00", zone=EUROPE),
            date(2025, 3, 29),
            span("2025-03-29 21:00", "2025-03-30 02:00"),
            id="europe 22:00 CET before spring forward, over it",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone=EUROPE),
            date(2025, 3, 30),
            span("2025-03-30 20:00", "2025-03-31 01:00"),
            id="europe 22:00 CEST after spring forward: 23 hours later",
        ),
        pytest.param(
            window("2025-01-01 02:30", zone=EUROPE),
            date(2025, 3, 30),
            span("2025-03-30 01:00", "2025-03-30 06:00"),
            id="europe 02:30 is skipped: 03:00 CEST",
        ),
        # Back 03:00 -> 02:00 on 26 October.
        pytest.param(
            window("2025-01-01 02:30", zone=EUROPE),
            date(2025, 10, 26),
            span("2025-10-26 00:30", "2025-10-26 05:30"),
            id="europe 02:30 happens twice: the first (CEST)",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone=EUROPE),
            date(2025, 10, 25),
            span("2025-10-25 20:00", "2025-10-26 01:00"),
            id="europe 22:00 CEST before fall back",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone=EUROPE),
            date(2025, 10, 26),
            span("2025-10-26 21:00", "2025-10-27 02:00"),
            id="europe 22:00 CET after fall back: 25 hours later",
        ),
        # AUS Eastern: AEDT is UTC+11, AEST UTC+10; back 03:00 -> 02:00 on 6 April.
        pytest.param(
            window("2025-01-01 22:00", zone=SYDNEY),
            date(2025, 4, 5),
            span("2025-04-05 11:00", "2025-04-05 16:00"),
            id="sydney 22:00 AEDT before fall back, over it",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone=SYDNEY),
            date(2025, 4, 6),
            span("2025-04-06 12:00", "2025-04-06 17:00"),
            id="sydney 22:00 AEST after fall back: 25 hours later",
        ),
        pytest.param(
            window("2025-01-01 02:30", zone=SYDNEY),
            date(2025, 4, 6),
            span("2025-04-05 15:30", "2025-04-05 20:30"),
            id="sydney 02:30 happens twice in April: the first (AEDT)",
        ),
        # Forward 02:00 -> 03:00 on 5 October.
        pytest.param(
            window("2025-01-01 02:30", zone=SYDNEY),
            date(2025, 10, 5),
            span("2025-10-04 16:00", "2025-10-04 21:00"),
            id="sydney 02:30 is skipped in October: 03:00 AEDT",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone=SYDNEY),
            date(2025, 10, 5),
            span("2025-10-05 11:00", "2025-10-05 16:00"),
            id="sydney 22:00 AEDT after spring forward: 23 hours later",
        ),
        # No DST, no change.
        pytest.param(
            window("2025-01-01 22:00", "23:59", zone="UTC"),
            date(2025, 3, 30),
            span("2025-03-30 22:00", "2025-03-31 21:59"),
            id="utc, the longest window",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone="India Standard Time"),
            date(2025, 3, 9),
            span("2025-03-09 16:30", "2025-03-09 21:30"),
            id="india, half-hour offset",
        ),
        # Before the first, and expiration.
        pytest.param(window("2025-03-10 22:00"), date(2025, 3, 9), None, id="before the first window"),
        pytest.param(
            window("2025-01-01 22:00", expiration="2025-03-10 00:00"),
            date(2025, 3, 9),
            span("2025-03-10 05:00", "2025-03-10 07:00"),
            id="expiration closes an open window early",
        ),
        pytest.param(
            window("2025-01-01 22:00", expiration="2025-03-10 00:00"),
            date(2025, 3, 10),
            None,
            id="no window opens after expiration",
        ),
    ],
)
def test_occurrence(chosen: MaintenanceWindow, day: date, expected: tuple[datetime, datetime] | None) -> None:
    assert occurrence(chosen, day) == expected


DAILY = window("2025-01-01 22:00")  # Pacific, 22:00 for 5 hours
LONG = window("2025-01-01 22:00", "10:00")  # Pacific, 22:00 to 08:00 the next day


@pytest.mark.parametrize(
    ("chosen", "now", "open_now", "next_one"),
    [
        pytest.param(
            DAILY,
            "2025-03-09 07:00",  # 23:00 PST on 8 March
            span("2025-03-09 06:00", "2025-03-09 11:00"),
            span("2025-03-09 06:00", "2025-03-09 11:00"),
            id="inside: this window is the next",
        ),
        pytest.param(
            DAILY,
            "2025-03-09 06:00",
            span("2025-03-09 06:00", "2025-03-09 11:00"),
            span("2025-03-09 06:00", "2025-03-09 11:00"),
            id="open from its start",
        ),
        pytest.param(
            DAILY,
            "2025-03-09 11:00",  # 04:00 PDT, the end
            None,
            span("2025-03-10 05:00", "2025-03-10 10:00"),
            id="closed at its end; the next is at 22:00 PDT, 18 hours later",
        ),
        pytest.param(
            DAILY,
            "2025-03-09 20:00",  # 13:00 PDT
            None,
            span("2025-03-10 05:00", "2025-03-10 10:00"),
            id="afternoon after spring forward: tonight's",
        ),
        pytest.param(
            DAILY,
            "2025-11-02 09:30",  # 01:30 PST, the second 01:30
            span("2025-11-02 05:00", "2025-11-02 10:00"),
            span("2025-11-02 05:00", "2025-11-02 10:00"),
            id="during the doubled hour, in the window that opened before it",
        ),
        pytest.param(
            DAILY,
            "2025-11-02 10:30",  # 02:30 PST
            None,
            span("2025-11-03 06:00", "2025-11-03 11:00"),
            id="after fall back: tonight's at 22:00 PST",
        ),
        pytest.param(
            LONG,
            "2025-03-09 14:30",  # 07:30 PDT, the morning after spring forward
            span("2025-03-09 06:00", "2025-03-09 16:00"),
            span("2025-03-09 06:00", "2025-03-09 16:00"),
            id="a window over midnight and spring forward is open the next morning",
        ),
        pytest.param(
            LONG,
            "2025-03-09 16:00",  # 09:00 PDT: 10 real hours after 22:00 PST
            None,
            span("2025-03-10 05:00", "2025-03-10 15:00"),
            id="it ends 10 real hours after it opened",
        ),
        pytest.param(
            window("2025-03-20 22:00"),
            "2025-03-09 07:00",
            None,
            span("2025-03-21 05:00", "2025-03-21 10:00"),
            id="before the first: the first",
        ),
        pytest.param(
            window("2025-01-01 22:00", expiration="2025-03-08 23:00"),
            "2025-03-09 08:00",  # 00:00 PST on 9 March
            None,
            None,
            id="expired: none open, none next",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone=SYDNEY),
            "2025-04-05 16:30",  # 02:30 AEST on 6 April, the second 02:30
            None,
            span("2025-04-06 12:00", "2025-04-06 17:00"),
            id="sydney: closed 5 real hours after 22:00 AEDT, though the clock reads 02:00",
        ),
        pytest.param(
            window("2025-01-01 22:00", zone=EUROPE),
            "2025-10-26 00:30",  # 02:30 CEST, the first 02:30
            span("2025-10-25 20:00", "2025-10-26 01:00"),
            span("2025-10-25 20:00", "2025-10-26 01:00"),
            id="europe: open through the first 02:30",
        ),
    ],
)
def test_window_at_and_next_window(
    chosen: MaintenanceWindow,
    now: str,
    open_now: tuple[datetime, datetime] | None,
    next_one: tuple[datetime, datetime] | None,
) -> None:
    assert window_at(chosen, utc(now)) == open_now
    assert next_window(chosen, utc(now)) == next_one
    # Any time zone of `now`: the same instant.
    in_tokyo = utc(now).astimezone(ZoneInfo("Asia/Tokyo"))
    assert window_at(chosen, in_tokyo) == open_now


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_at(DAILY, datetime(2025, 3, 9, 7, 0))


def test_occurrence_text_gives_the_window_s_clock_and_utc() -> None:
    found = occurrence(DAILY, date(2025, 3, 9))
    assert found is not None
    assert occurrence_text(DAILY, found) == (
        "2025-03-09 22:00 PDT to 2025-03-10 03:00 PDT (2025-03-10 05:00 to 10:00 UTC)"
    )
    over = occurrence(window("2025-01-01 22:00", zone="UTC"), date(2025, 3, 9))
    assert over is not None
    assert occurrence_text(window("2025-01-01 22:00", zone="UTC"), over) == (
        "2025-03-09 22:00 UTC to 2025-03-10 03:00 UTC (2025-03-09 22:00 to 2025-03-10 03:00 UTC)"
    )


def test_every_windows_time_zone_has_its_iana_rules() -> None:
    assert len(WINDOWS_TIME_ZONES) >= 40
    for name, iana in WINDOWS_TIME_ZONES.items():
        assert ZoneInfo(iana).utcoffset(datetime(2025, 1, 1)) is not None, name
