"""When a maintenance window is open: its daily occurrences as UTC instants, across daylight
saving changes (pure; aware UTC datetimes in and out).

A window recurs every day at the wall clock time of its startDateTime in its time zone, from
that date on, so a window at 22:00 local stays at 22:00 local on both sides of a DST change
(23 or 25 hours apart in UTC). A wall clock time that a change skips (spring forward: 02:30
does not exist) starts at the first instant after it (03:00, the change itself); one that
happens twice (fall back: 01:30) takes the first. A window lasts `duration` of real elapsed
time from its start, also when it spans midnight or a DST change: the duration is what Azure
promises the platform for its work, so a 5-hour window is 5 hours of upgrading on a DST night
too (ending on the wall clock would give 4 or 6), and an end in real time can never itself fall
in a skipped or doubled hour. No window starts at or after expirationDateTime, and one open then
closes there.

For an upgrade: start a set's upgrade only when `window_at(window, now)` is an occurrence; a
batch in flight when it ends finishes, then the upgrade holds until `next_window(window,
now)[0]`. `next_window` is None once the window has expired: it restricts nothing any more.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from models.maintenance import MaintenanceWindow

Occurrence = tuple[datetime, datetime]  # (start, end), aware UTC: open from start, closed at end


def zone_of(window: MaintenanceWindow) -> ZoneInfo:
    return _zone(window.iana_time_zone)


@cache
def _zone(key: str) -> ZoneInfo:
    """The zone's rules from the pinned tzdata package, never the machine's own files: workflow
    code computes windows, and every worker (and every replay) must agree on them."""
    with resources.files("tzdata.zoneinfo").joinpath(*key.split("/")).open("rb") as data:
        return ZoneInfo.from_file(data, key=key)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def instant_of(local: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a wall clock time names in `zone`: the first of two when the clock falls
    back, the first instant after it when the clock springs forward over it."""
    first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == local:
        return first  # it exists (fold=0: the earlier of a doubled time)
    # Skipped: fold=1 reads it with the offset after the change (an instant before the change),
    # fold=0 with the offset before (one after it). The change is the first second between them
    # whose wall clock time reaches `local`.
    before, after = local.replace(tzinfo=zone, fold=1).astimezone(UTC), first
    while after - before > timedelta(seconds=1):
        middle = before + timedelta(seconds=(after - before).total_seconds() // 2)
        if _wall(middle, zone) >= local:
            after = middle
        else:
            before = middle
    return after


def occurrence(window: MaintenanceWindow, day: date) -> Occurrence | None:
    """The window that starts on local date `day` (None before the first or once expired)."""
    zone = zone_of(window)
    first = window.local_start
    if day < first.date():
        return None
    start = instant_of(datetime.combine(day, first.time()), zone)
    end = start + window.length
    if window.local_expiration is not None:
        expires = instant_of(window.local_expiration, zone)
        if start >= expires:
            return None
        end = min(end, expires)
    return start, end


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


def window_at(window: MaintenanceWindow, now: datetime) -> Occurrence | None:
    """The occurrence open at `now` (start <= now < end), if one is."""
    now = _utc(now)
    today = _wall(now, zone_of(window)).date()
    # A window lasts under a day of real time, and a local day can be 23 hours: one that opened
    # two local dates ago may still be open.
    for back in (2, 1, 0):
        found = occurrence(window, today - timedelta(days=back))
        if found is not None and found[0] <= now < found[1]:
            return found
    return None


def next_window(window: MaintenanceWindow, now: datetime) -> Occurrence | None:
    """The occurrence open at `now`, else the next one to open; None once the window has expired
    (no occurrence opens any more)."""
    now = _utc(now)
    if (current := window_at(window, now)) is not None:
        return current
    day = max(_wall(now, zone_of(window)).date(), window.local_start.date())
    for _ in range(3):  # today's may be over already; tomorrow's opens after now
        found = occurrence(window, day)
        if found is None:
            return None  # expired: no later one either
        if found[0] > now:
            return found
        day += timedelta(days=1)
    return None  # unreachable: tomorrow's occurrence opens after now


def occurrence_text(window: MaintenanceWindow, found: Occurrence) -> str:
    """An occurrence in the window's time zone and in UTC:
    `2025-03-09 22:00 PDT to 2025-03-10 03:00 PDT (2025-03-10 05:00 to 10:00 UTC)`."""
    zone = zone_of(window)
    start, end = (moment.astimezone(zone) for moment in found)
    utc_start, utc_end = (moment.astimezone(UTC) for moment in found)
    end_utc = f"{utc_end:%H:%M}" if utc_end.date() == utc_start.date() else f"{utc_end:%Y-%m-%d %H:%M}"
    return (
        f"{start:%Y-%m-%d %H:%M} {start.tzname()} to {end:%Y-%m-%d %H:%M} {end.tzname()} "
        f"({utc_start:%Y-%m-%d %H:%M} to {end_utc} UTC)"
    )
