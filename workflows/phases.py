"""Phases of a rollout across regions (pure): geo-paired regions never share a phase, and since
phases run one after another, they are never in flight together either."""

from __future__ import annotations

from collections.abc import Iterable

# Azure's published region pairs (learn.microsoft.com, "Azure cross-region replication"). A
# region may pair with more than one (East US with West US and West US 3).
AZURE_GEO_PAIRS: tuple[tuple[str, str], ...] = (
    ("eastus", "westus"),
    ("westus3", "eastus"),
    ("eastus2", "centralus"),
    ("northcentralus", "southcentralus"),
    ("westus2", "westcentralus"),
    ("brazilsouth", "southcentralus"),
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


def plan_phases(
    regions: Iterable[str],
    explicit: list[list[str]] | None = None,
    pairs: Iterable[tuple[str, str]] | None = None,
) -> list[list[str]]:
    """The phases for `regions`: first the explicit plan's phases (only the regions in use),
    then the rest, each region in the first derived phase holding none of its pairs (regions in
    name order, so the plan is the same every time)."""
    known = _pairs(pairs)
    wanted = sorted({r.lower() for r in regions})
    phases: list[list[str]] = []
    placed: set[str] = set()
    for phase in explicit or []:
        chosen = [r.lower() for r in phase if r.lower() in wanted]
        if chosen:
            phases.append(chosen)
            placed.update(chosen)
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
