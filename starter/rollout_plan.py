"""`upgradectl rollout plan`: the phases and zone waves a new version would get now, touching
nothing.

The enrolled scale sets and the settings come from the watcher (as `auto show` reads them); each
set's region, instances and zones (its instances' zones: none, a regional set) from the fleet, as
`upgradectl plan` reads a scale set. The phases are the watcher's own derivation
(rules/phases.py `plan_phases`, by enrolled instances per region), the cohorts and waves the
rollout's (`region_waves`): per region, its sets in cohorts of at most maxSetsPerRegion (name
order), each cohort in zone waves (zone 1, zone 2, ..., then the regional sets).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fleet.errors import GONE, FleetError
from fleet.protocol import FleetBackend
from models.automatic import AutomaticSettings, Enrollment, extension_rollout_key, image_source_key
from models.policy import format_duration
from rules.enrolled import automatic_extensions, by_image_source
from rules.phases import plan_phases
from rules.waves import name_order, region_waves, set_zones_of, zone_text

CONCURRENT_READS = 8


@dataclass
class Rolled:
    """What one rollout would move: an image source or an extension's type and major, and the
    enrolled sets it would go to."""

    key: str  # `contoso/shop-os`, `publisher:offer:sku`, or `ext:publisher.type/1`
    title: str  # `image contoso/shop-os`, `extension Publisher.Type 1.x`
    scale_sets: list[str]


@dataclass
class PlannedSet:
    name: str
    region: str
    zones: list[str]
    instances: int


@dataclass
class RolloutPlan:
    rolled: Rolled
    settings: AutomaticSettings
    sets: dict[str, PlannedSet] = field(default_factory=dict)
    unread: dict[str, str] = field(default_factory=dict)  # scale set -> why it is left out

    @property
    def phases(self) -> list[list[str]]:
        instances: dict[str, int] = {}
        for item in self.sets.values():
            instances[item.region] = instances.get(item.region, 0) + item.instances
        return plan_phases(instances, self.settings.phases, self.settings.geo_pairs)

    def in_region(self, region: str) -> list[PlannedSet]:
        chosen = {s.name: s for s in self.sets.values() if s.region == region}
        return [chosen[name] for name in name_order(chosen)]

    def waves(self, region: str) -> list[list[tuple[str, list[str]]]]:
        set_zones = {s.name: s.zones for s in self.in_region(region)}
        return region_waves(set_zones, self.settings.max_sets_per_region)

    def to_json(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "rollout": self.rolled.key,
            "maxSetsPerRegion": settings.max_sets_per_region,
            "maxInstancesPerRegion": settings.max_instances_per_region,
            "phaseBakeTime": format_duration(settings.phase_bake_time),
            "phases": [
                {
                    "phase": number,
                    "regions": [
                        {
                            "region": region,
                            "instances": sum(s.instances for s in self.in_region(region)),
                            "scaleSets": [
                                {"name": s.name, "zones": s.zones, "instances": s.instances}
                                for s in self.in_region(region)
                            ],
                            "cohorts": [
                                {
                                    "scaleSets": name_order(n for _, names in cohort for n in names),
                                    "waves": [{"zone": zone, "scaleSets": names} for zone, names in cohort],
                                }
                                for cohort in self.waves(region)
                            ],
                        }
                        for region in regions
                    ],
                }
                for number, regions in enumerate(self.phases, 1)
            ],
            "leftOut": [{"name": name, "reason": reason} for name, reason in sorted(self.unread.items())],
        }

    def lines(self) -> list[str]:
        """The plan as plain text (user text still to be printed through `plain`)."""
        settings, phases = self.settings, self.phases
        bake = format_duration(settings.phase_bake_time)
        lines = [
            f"a new version of {self.rolled.title}: {len(self.sets)} scale set(s) in "
            f"{sum(len(p) for p in phases)} region(s), {len(phases)} phase(s); up to "
            f"{settings.max_sets_per_region} set(s) and {settings.max_instances_per_region} instance(s) "
            f"of a region at once; {bake} bake time between phases",
        ]
        for number, regions in enumerate(phases, 1):
            lines.append(f"phase {number}: {', '.join(regions)}")
            for region in regions:
                members = self.in_region(region)
                instances = sum(s.instances for s in members)
                lines.append(f"  {region}: {len(members)} scale set(s), {instances} instance(s)")
                for item in members:
                    zones = ", ".join(item.zones)
                    where = (
                        (f"zones {zones}" if len(item.zones) > 1 else f"zone {zones}")
                        if zones
                        else "regional"
                    )
                    lines.append(f"    {item.name}: {item.instances} instance(s), {where}")
                cohorts = self.waves(region)
                for index, cohort in enumerate(cohorts, 1):
                    prefix = "    "
                    if len(cohorts) > 1:
                        names = name_order(n for _, wave in cohort for n in wave)
                        lines.append(f"    cohort {index} of {len(cohorts)}: {', '.join(names)}")
                        prefix = "      "
                    for step, (zone, names) in enumerate(cohort, 1):
                        lines.append(f"{prefix}wave {step}, {zone_text(zone)}: {', '.join(names)}")
        for name, reason in sorted(self.unread.items()):
            lines.append(f"left out: {name}: {reason}")
        return lines


def rolled_groups(enrollments: list[Enrollment]) -> list[Rolled]:
    """The rollouts a new version would start, as the watcher groups its enrolled sets: per image
    source the sets that follow 'latest', per extension type and major the sets whose extension
    is upgraded automatically."""
    extensions: dict[str, tuple[str, list[str]]] = {}
    for enrollment, extension in automatic_extensions(enrollments):
        key = extension_rollout_key(extension.full_type, extension.major)
        title = f"extension {extension.full_type} {extension.major}.x"
        extensions.setdefault(key, (title, []))[1].append(enrollment.scale_set)
    images = sorted(by_image_source(enrollments).items())
    return [Rolled(key, f"image {key}", name_order(e.scale_set for e in sets)) for key, sets in images] + [
        Rolled(key, title, name_order(names)) for key, (title, names) in sorted(extensions.items())
    ]


def chosen_groups(
    groups: list[Rolled], enrollments: list[Enrollment], image: str | None, extension: str | None
) -> list[Rolled]:
    """The groups `--image` (its short name or in full) or `--extension` (publisher.type, or as
    `rollout list` names it, ext:publisher.type) names; every group when neither is given."""
    if image is not None:
        wanted = image.strip().strip("/").lower()
        full = {
            image_source_key(e.image_reference): str(e.image_reference.with_version("")).strip("/").lower()
            for e in enrollments
            if e.image_reference is not None
        }
        return [g for g in groups if wanted in (g.key.lower(), full.get(g.key))]
    if extension is not None:
        prefix = f"ext:{extension.strip().lower().removeprefix('ext:')}/"
        return [g for g in groups if g.key.lower().startswith(prefix)]
    return groups


async def read_sets(fleet: FleetBackend, names: list[str]) -> tuple[dict[str, PlannedSet], dict[str, str]]:
    """Each set's region, zones and instance count, read from the fleet; a set that is gone is
    left out, with the reason."""
    gate = asyncio.Semaphore(CONCURRENT_READS)
    read: dict[str, PlannedSet] = {}
    unread: dict[str, str] = {}

    async def one(name: str) -> None:
        async with gate:
            try:
                view = await fleet.get_scale_set(name)
            except FleetError as err:
                if err.code not in GONE:
                    raise
                unread[name] = "not found (the watcher notes it at its next look)"
                return
        read[name] = PlannedSet(
            name=name,
            region=view.location.lower(),
            zones=set_zones_of(i.zone for i in view.instances),
            instances=len(view.instances),
        )

    await asyncio.gather(*(one(name) for name in sorted(set(names))))
    return read, unread
