"""maxSurge (rollingUpgradePolicy.maxSurge), pure: which upgrades surge, and which new instance
replaces which old one.

A surge batch creates as many instances as it replaces, from the target model, before touching
any: capacity never drops below the set's size. Azure places a Uniform set's new instances for
zone balance, so a new one may land in another zone than the one it replaces; pairing prefers the
same zone, then the lowest ids, so the pairs are the same on every replay.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.change import Change
from models.policy import RollingUpgradePolicy
from models.sorting import natural_key


def surges(policy: RollingUpgradePolicy, change: Change) -> bool:
    """An OS image upgrade under maxSurge replaces instances; extensions are always installed in
    place (an extension version is not a new model of the VM)."""
    return policy.max_surge and change.image is not None and not change.extensions


def pair(old: Sequence[tuple[str, str | None]], new: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    """Each old instance (id, zone) of a batch with the new instance that replaces it: one in its
    zone where there is one, else the lowest id left. Old ones beyond the new ones stay unpaired."""
    left = sorted(new, key=lambda item: natural_key(item[0]))
    pairs: dict[str, str] = {}
    for old_id, zone in sorted(old, key=lambda item: natural_key(item[0])):
        same = next((item for item in left if item[1] == zone), None)
        chosen = same or (left[0] if left else None)
        if chosen is None:
            break
        left.remove(chosen)
        pairs[old_id] = chosen[0]
    return pairs
