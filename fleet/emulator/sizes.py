"""The VM sizes the emulator knows: vCPUs and the quota family each counts against, as Azure's
resource SKUs API lists them, and the core quotas' defaults (the Compute usages API)."""

from __future__ import annotations

from typing import NamedTuple


class VmSize(NamedTuple):
    cores: int
    family: str
    memory_gb: int


VM_SIZES = {
    "Standard_B2s": VmSize(2, "standardBSFamily", 4),
    "Standard_D2s_v3": VmSize(2, "standardDSv3Family", 8),
    "Standard_D4s_v3": VmSize(4, "standardDSv3Family", 16),
    "Standard_D8s_v3": VmSize(8, "standardDSv3Family", 32),
    "Standard_D2s_v5": VmSize(2, "standardDSv5Family", 8),
    "Standard_D4s_v5": VmSize(4, "standardDSv5Family", 16),
    "Standard_E2s_v3": VmSize(2, "standardESv3Family", 16),
    "Standard_F2s_v2": VmSize(2, "standardFSv2Family", 4),
}
FAMILIES = sorted({size.family for size in VM_SIZES.values()})
# name.value of the usage entry counting every vCPU of the region.
REGIONAL_CORES = "cores"
# Limits where the scenario set none: generous, so only a test that wants quota short has it.
DEFAULT_CORE_LIMIT = 100_000


def size_of(name: str) -> VmSize | None:
    """The size called `name` (case-insensitive, as Azure reads it)."""
    return next((size for known, size in VM_SIZES.items() if known.lower() == name.lower()), None)


def family_display(family: str) -> str:
    """localizedValue of a family's usage: standardDSv3Family → "Standard DSv3 Family vCPUs"."""
    if family == REGIONAL_CORES:
        return "Total Regional vCPUs"
    core = family.removeprefix("standard").removesuffix("Family")
    return f"Standard {core} Family vCPUs"
