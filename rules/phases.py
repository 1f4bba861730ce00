"""Phases of a rollout across regions, and the zone waves within a region (pure).

Across regions: geo-paired regions never share a phase, and since phases run one after another,
they are never in flight together either; derived phases are staged (one canary region, then
doubling). Within a region: its sets in cohorts of at most max_sets_per_region (name order), each
cohort in zone waves (zone 1, zone 2, ..., then the regional sets)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Azure's published region pairs (learn.microsoft.com, "Azure cross-region replication"). A
# region may pair with more than one (East US with West US and West US 3; Brazil South with South
# Central US and Brazil Southeast); a pair listed one way only (Brazil South's is South Central
# US, whose own is North Central US) still never rolls together. Regions without a pair (Qatar
# Central, Poland Central, Israel Central, Italy North, ...) pair with none.
AZURE_GEO_PAIRS: tuple[tuple[str, str], ...] = (
    ("eastus", "westus"),
    ("westus3", "eastus"),
    ("eastus2", "centralus"),
    ("northcentralus", "southcentralus"),
    ("westus2", "westcentralus"),
    ("brazilsouth", "southcentralus"),
    ("brazilsoutheast", "brazilsouth"),
    ("canadacentral", "canadaeast"),
    ("northeurope", "westeurope"),
    ("uksouth", "ukwest"),
    ("francecentral", "francesouth"),
    ("germanywestcentral", "germanynorth"),
    ("norwayeast", "norwaywest"),
    ("switzerlandnorth", "switzerlandwest"),
    ("swedencentral", "swedensouth"),
    ("eastasia", "southeastasia"),
    ("japaneast", "japanwest"),
    ("koreacentral", "koreasouth"),
    ("centralindia", "southindia"),
    ("westindia", "southindia"),
    ("australiaeast", "australiasoutheast"),
    ("australiacentral", "australiacentral2"),
    ("southafricanorth", "southafricawest"),
    ("uaenorth", "uaecentral"),
    ("jioindiawest", "jioindiacentral"),
    # Sovereign clouds (another ARM endpoint, the same rule).
    ("chinanorth", "chinaeast"),
    ("chinanorth2", "chinaeast2"),
    ("chinanorth3", "chinaeast3"),
    ("usgovvirginia", "usgovtexas"),
    ("usgovarizona", "usgovtexas"),
)


def _pairs(pairs: Iterable[tuple[str, str]] | None) -> set[frozenset[str]]:
    chosen = AZURE_GEO_PAIRS if pairs is None else pairs
    return {frozenset((a.lower(), b.lower())) for a, b in chosen if a.lower() != b.lower()}


def paired(a: str, b: str, pairs: Iterable[tuple[str, str]] | None = None) -> bool:
    return frozenset((a.lower(), b.lower())) in _pairs(pairs)


def check_phases(phases: list[list[str]], pairs: Iterable[tuple[str, str]] | None = None) -> None:
    """Raise ValueError naming the problem: an empty phase, a region twice, or two geo-paired
    regions in one phase."""
    known = _pairs(pairs)
    seen: dict[str, int] = {}
    for number, phase in enumerate(phases, 1):
        if not phase:
            raise ValueError(f"phase {number} names no region")
        for region in phase:
            key = region.lower()
            if key in seen:
                raise ValueError(f"region {region} is in phase {seen[key]} and phase {number}; once only")
            seen[key] = number
        for i, a in enumerate(phase):
            for b in phase[i + 1 :]:
                if frozenset((a.lower(), b.lower())) in known:
                    raise ValueError(
                        f"phase {number} has {a} and {b}, a geo-pair: paired regions never share "
                        "a phase (put them in different phases)"
                    )


def _explicit_phases(wanted: set[str], explicit: list[list[str]] | None) -> list[list[str]]:
    """The explicit plan's phases, only the regions in use (a phase left empty is dropped)."""
    phases: list[list[str]] = []
    for phase in explicit or []:
        chosen = [r.lower() for r in phase if r.lower() in wanted]
        if chosen:
            phases.append(chosen)
    return phases


def flat_phases(
    regions: Iterable[str],
    explicit: list[list[str]] | None = None,
    pairs: Iterable[tuple[str, str]] | None = None,
) -> list[list[str]]:
    """The phases before staged phases (watchers that started a rollout with them replay with
    this): first the explicit plan's phases (only the regions in use), then the rest, each
    region in the first derived phase holding none of its pairs (regions in name order)."""
    known = _pairs(pairs)
    wanted = sorted({r.lower() for r in regions})
    phases = _explicit_phases(set(wanted), explicit)
    placed = {region for phase in phases for region in phase}
    derived: list[list[str]] = []
    for region in wanted:
        if region in placed:
            continue
        for phase in derived:
            if not any(frozenset((region, other)) in known for other in phase):
                phase.append(region)
                break
        else:
            derived.append([region])
    return phases + derived


def plan_phases(
    instances: Mapping[str, int],
    explicit: list[list[str]] | None = None,
    pairs: Iterable[tuple[str, str]] | None = None,
) -> list[list[str]]:
    """The phases for the regions of `instances` (region -> its enrolled instances): first the
    explicit plan's phases (only the regions in use), then staged phases for the regions it does
    not name: one region (the canary: the fewest enrolled instances), then up to 2, 4, 8, ...
    regions, taken by enrolled instances ascending, then name. Geo-paired regions never share a
    phase: a region whose pair is already in the phase being filled waits for the next one (it
    stays first in line). Region names are compared lowercased; the plan does not depend on the
    order of `instances`."""
    known = _pairs(pairs)
    counts: dict[str, int] = {}
    for region, count in instances.items():
        counts[region.lower()] = counts.get(region.lower(), 0) + max(count, 0)
    phases = _explicit_phases(set(counts), explicit)
    placed = {region for phase in phases for region in phase}
    waiting = sorted((r for r in counts if r not in placed), key=lambda r: (counts[r], r))
    size = 1
    while waiting:
        phase: list[str] = []
        for region in waiting:
            if len(phase) == size:
                break
            if not any(frozenset((region, other)) in known for other in phase):
                phase.append(region)
        phases.append(phase)  # never empty: the first region waiting always fits
        waiting = [r for r in waiting if r not in phase]
        size *= 2
    return phases
