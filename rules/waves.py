"""Zone waves of one region (pure): which zone the region's sets upgrade now, which set may go
next in it, and which must stop. The rollout workflow sends what these decisions say.

At any instant a region's instances in flight belong to one zone: a wave permits its zone to
every set that has instances left there, as many at once as the region's instance cap allows
(a set whose batch alone exceeds it still goes, alone), and the next wave starts only when no
set is left in flight in this one. Zones go in natural order (1, 2, 3, ...); instances without a
zone (regional) form a wave of their own, after the zones. A set that reports instances in a
zone whose wave has passed (a scale-out meanwhile) gets a wave of that zone again later.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from models.sorting import natural_key
from models.upgrade import REGIONAL, WaveReport

# The zone of a cohort's first wave, permitted to its sets as they start (RegionWaves.open):
# Azure numbers a region's zones 1, 2, 3, so zone 1 goes first whenever a set has instances
# there; a set without any reports at once and waits for its zone like every other.
OPENING_ZONE = "1"

# --- the plan: cohorts of a region's sets, each in zone waves -------------------------------------


def zone_text(zone: str) -> str:
    """A zone key as the texts name it: `zone 2`, or `regional` for instances without a zone."""
    return f"zone {zone}" if zone != REGIONAL else "regional"


def set_zones_of(zones: Iterable[str | None]) -> list[str]:
    """A scale set's zones from its instances' zones, in natural order ([]: regional)."""
    return sorted({z for z in zones if z}, key=natural_key)


def zone_waves(set_zones: Mapping[str, Collection[str]]) -> list[str]:
    """The waves of a region's sets (scale set -> its instances' zones), in order: each zone
    in natural order, then REGIONAL ("") if some set has no zones."""
    zones = {zone for chosen in set_zones.values() for zone in chosen if zone}
    regional = any(_regional(chosen) for chosen in set_zones.values())
    return sorted(zones, key=natural_key) + ([REGIONAL] if regional else [])


def _regional(zones: Collection[str]) -> bool:
    """A set with instances outside any zone: no zones at all, or REGIONAL among them."""
    return not zones or REGIONAL in zones


def wave_sets(set_zones: Mapping[str, Collection[str]], wave: str) -> list[str]:
    """The sets that take part in `wave` (a zone: those with instances in it; REGIONAL: those
    without zones), in name order."""
    chosen = [
        name for name, zones in set_zones.items() if (wave in zones if wave != REGIONAL else _regional(zones))
    ]
    return name_order(chosen)


def name_order(sets: Iterable[str]) -> list[str]:
    """Scale sets in name order (Azure's names are case-insensitive: by lowercase, then as
    written, so the order never depends on the input's)."""
    return sorted(set(sets), key=lambda name: (name.lower(), name))


def cohorts(sets: Iterable[str], size: int) -> list[list[str]]:
    """A region's sets in groups of at most `size` (max_sets_per_region), in name order: each
    cohort runs its zone waves, then the next cohort starts."""
    if size < 1:
        raise ValueError(f"a cohort holds at least 1 scale set, not {size}")
    ordered = name_order(sets)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def region_waves(set_zones: Mapping[str, Collection[str]], size: int) -> list[list[tuple[str, list[str]]]]:
    """A region's plan: per cohort (of at most `size` sets, name order), its waves in order, each
    as (zone, or REGIONAL, and the cohort's sets in it)."""
    plan: list[list[tuple[str, list[str]]]] = []
    for cohort in cohorts(set_zones, size):
        members = {name: list(set_zones[name]) for name in cohort}
        plan.append([(wave, wave_sets(members, wave)) for wave in zone_waves(members)])
    return plan


# --- a cohort's waves as they go ------------------------------------------------------------------


@dataclass
class Member:
    """One set of the region's cohort, as its upgrade last reported."""

    scale_set: str
    started: bool = False
    ended: bool = False
    zones: dict[str, int] | None = None  # None: no report yet (admitting, or not started)
    batch: int = 1
    permitted: str | None = None  # the zone it upgrades now
    cancelled: bool = False  # the rollout asked it to stop

    @property
    def waiting(self) -> bool:
        """Started and reported, nothing permitted: it waits for a wave."""
        return self.started and not self.ended and self.zones is not None and self.permitted is None

    def left_in(self, zone: str) -> int:
        return (self.zones or {}).get(zone, 0)

    def in_flight(self) -> int:
        """The most instances it may have in flight: its batch, or what its zone has left (opened
        at its start, before any report: the share it was given)."""
        if self.permitted is None:
            return 0
        if self.zones is None:
            return self.batch
        return min(self.batch, self.left_in(self.permitted))


@dataclass
class Decision:
    """What to send now: permits (set -> zone) and cancels."""

    permits: list[tuple[str, str]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.permits or self.cancels)


class RegionWaves:
    """The zone waves of one cohort of a region's sets."""

    def __init__(self, region: str, scale_sets: Iterable[str], max_instances: int) -> None:
        self.region = region
        self.members = {name: Member(name) for name in scale_sets}
        self.max_instances = max_instances
        self.zone: str | None = None  # the wave in flight
        self.waves = 0  # how many waves have started

    # --- what the upgrades say ----------------------------------------------------------------

    def started(self, scale_set: str) -> None:
        self.members[scale_set].started = True

    def report(self, report: WaveReport) -> None:
        member = self.members.get(report.scale_set)
        if member is None or member.ended:
            return
        member.started = True  # (its report may be handled before its start is)
        if report.again and member.zones is not None:
            return  # it still waits: nothing new
        member.zones = {zone: n for zone, n in report.zones.items() if n > 0}
        member.batch = max(1, report.batch)
        if report.done is None or report.done == member.permitted:
            member.permitted = None

    def open(self, scale_set: str) -> int | None:
        """A set about to start: the instances it may have in flight in OPENING_ZONE from its
        start, without a report first (its even share of the region's cap), while no other wave
        has begun and the cap has room; None: it reports first and waits for a permit."""
        member = self.members[scale_set]
        if member.cancelled or self.zone not in (None, OPENING_ZONE):
            return None
        if self.zone is not None and not self.in_flight():
            return None  # the first wave is over: a late set waits for its zone's turn
        share = max(1, self.max_instances // len(self.members))
        load = sum(m.in_flight() for m in self.in_flight())
        if load and load + share > self.max_instances:
            return None
        if self.zone is None:
            self.zone, self.waves = OPENING_ZONE, self.waves + 1
        # (Not `started` yet: until its start succeeds, a cancel would reach another's upgrade.)
        member.permitted, member.batch = OPENING_ZONE, share
        return share

    def close(self, scale_set: str) -> None:
        """An opened set did not start (another upgrade held the set): it reports first after all."""
        member = self.members[scale_set]
        if member.zones is None and member.permitted is not None:
            member.permitted, member.batch = None, 1

    def ended(self, scale_set: str) -> None:
        member = self.members[scale_set]
        member.ended, member.permitted = True, None

    # --- decisions ----------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return all(m.ended for m in self.members.values())

    def in_flight(self) -> list[Member]:
        return [m for m in self.members.values() if m.permitted is not None and not m.ended]

    def next_zone(self) -> str | None:
        """The zone of the next wave: the first in order that a waiting set has instances in."""
        waves = zone_waves({m.scale_set: list(m.zones or {}) for m in self.members.values() if m.waiting})
        return waves[0] if waves else None

    def decide(
        self, *, held: bool, stopping: bool, cancel: Collection[str] = (), largest_first: bool = False
    ) -> Decision:
        """What to send now (without sending it): when stopping, a cancel to every set that
        started and was not cancelled yet (else to those of `cancel`); otherwise (and not held)
        permits for the wave, in name order or, `largest_first`, the largest batch first (the
        permits reach their sets one after another, so the set likely to take longest starts
        first; and under the region's cap the larger batches go)."""
        decision = Decision()
        decision.cancels = [
            m.scale_set
            for m in self.members.values()
            if m.started and not m.ended and not m.cancelled and (stopping or m.scale_set in cancel)
        ]
        if stopping:
            return decision
        if held:
            return decision
        zone = self.zone
        going_on = zone is not None and (
            self.in_flight() or any(m.waiting and m.left_in(zone) for m in self.members.values())
        )
        if not going_on:
            zone = self.next_zone()  # this wave is over: the next one
        if zone is None:
            return decision
        load = sum(m.in_flight() for m in self.in_flight())
        members = [self.members[name] for name in name_order(self.members)]
        if largest_first:
            members.sort(key=lambda m: -min(m.batch, m.left_in(zone)))  # (stable: name order within)
        for member in members:
            if not member.waiting or not member.left_in(zone) or member.cancelled:
                continue
            need = min(member.batch, member.left_in(zone))
            if load and load + need > self.max_instances:
                break
            decision.permits.append((member.scale_set, zone))
            load += need
        return decision

    def apply(self, decision: Decision) -> None:
        for name in decision.cancels:
            self.members[name].cancelled = True
        for name, zone in decision.permits:
            if zone != self.zone:
                self.zone, self.waves = zone, self.waves + 1
            self.members[name].permitted = zone

    def text(self) -> str:
        """The wave in flight, as `rollout show` and the Web UI say it."""
        if self.zone is None:
            return "starting"
        going = self.in_flight()
        waiting = [m for m in self.members.values() if m.waiting and m.left_in(self.zone)]
        where = zone_text(self.zone)
        known = [m for m in going if m.zones is not None]  # (an opened set has not said its batch yet)
        sizes = f"up to {sum(m.in_flight() for m in known)} instances"
        if opened := len(going) - len(known):
            sizes = f"the first batches of {opened} set(s)" + (f", and {sizes}" if known else "")
        return f"{where} wave: {len(going)} set(s) in flight ({sizes}), {len(waiting)} waiting for room"
