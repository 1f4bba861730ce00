"""MaxSurge's quota check (Azure's rule): a batch creates its new instances only when the
region's vCPU quota has room for all of them, in the VM size's family and in the region's total;
otherwise that batch is upgraded in place."""

from __future__ import annotations

from models.fleet import CoreQuota, QuotaUsage
from models.steps import SurgeRoomResult


def surge_room(quota: CoreQuota, count: int) -> SurgeRoomResult:
    """Room for `count` new instances of the set's VM size, and why not when there is none."""
    size = quota.vm_size or "(no VM size)"
    if quota.cores_per_instance is None or quota.family is None:
        return SurgeRoomResult(
            room=False,
            vm_size=quota.vm_size,
            detail=f"VM size {size} is not among the sizes offered in {quota.location}: "
            "its vCPUs and quota family are unknown",
        )
    needed = count * quota.cores_per_instance
    quotas: list[tuple[str, QuotaUsage | None]] = [
        (f"{quota.family} vCPUs", quota.family_usage),
        ("total regional vCPUs (cores)", quota.regional_usage),
    ]
    missing = [label for label, usage in quotas if usage is None]
    if missing:
        return SurgeRoomResult(
            room=False,
            vm_size=quota.vm_size,
            needed_cores=needed,
            detail=f"the usages of {quota.location} do not list {' nor '.join(missing)}",
        )
    label, tightest = min(
        ((label, usage) for label, usage in quotas if usage is not None),
        key=lambda entry: entry[1].limit - entry[1].current_value,
    )
    available = max(0, tightest.limit - tightest.current_value)
    if needed <= available:
        return SurgeRoomResult(
            room=True, vm_size=quota.vm_size, needed_cores=needed, available_cores=available
        )
    return SurgeRoomResult(
        room=False,
        vm_size=quota.vm_size,
        needed_cores=needed,
        available_cores=available,
        detail=f"{label} in {quota.location}: {tightest.current_value} of the limit {tightest.limit} in "
        f"use, {available} free; {count} new {size} instance(s) need {needed}",
    )
