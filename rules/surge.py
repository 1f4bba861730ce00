"""maxSurge (rollingUpgradePolicy.maxSurge), pure: which upgrades surge, and which new instance
replaces which old one.

A surge batch creates as many instances as it replaces, from the target model, before touching
any: capacity never drops below the set's size. Azure places a Uniform set's new instances for
zone balance, so a new one may land in another zone than the one it replaces; pairing prefers the
same zone, then the lowest ids, so the pairs are the same on every replay.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.automatic import EnrollRequest
from models.change import Change
from models.fleet import ScaleSetView
from models.policy import RollingUpgradePolicy
from models.sorting import natural_key


def surges(policy: RollingUpgradePolicy, change: Change) -> bool:
    """An OS image upgrade under maxSurge replaces instances; extensions are always installed in
    place (an extension version is not a new model of the VM)."""
    return policy.max_surge and change.image is not None and not change.extensions


def pair(
    batch: Sequence[tuple[str, str | None]],
    new: Sequence[tuple[str, str | None]],
    others: Sequence[tuple[str, str | None]] = (),
) -> dict[str, str]:
    """Which old instance (id, zone) each new one replaces: one of the batch in the new one's
    zone, else another instance still to upgrade in that zone (`others`), else one of the batch.
    Azure places a Uniform set's new instances where its zones are emptiest, so deleting in the
    zones they landed in keeps the set's zones as they were; nothing is taken down before its
    replacement is healthy, so the batch's own zone matters less than the set's balance."""

    def by_id(item: tuple[str, str | None]) -> tuple[tuple[int, int | str], ...]:
        return natural_key(item[0])

    batch_left = sorted(batch, key=by_id)
    others_left = sorted((o for o in others if o not in batch), key=by_id)
    pairs: dict[str, str] = {}
    unmatched = []
    for new_id, zone in sorted(new, key=by_id):  # first each new instance in its own zone
        in_zone = [o for o in batch_left if o[1] == zone] or [o for o in others_left if o[1] == zone]
        if not in_zone:
            unmatched.append(new_id)
            continue
        (batch_left if in_zone[0] in batch_left else others_left).remove(in_zone[0])
        pairs[in_zone[0][0]] = new_id
    for new_id, (old_id, _) in zip(unmatched, batch_left, strict=False):  # then the batch's others
        pairs[old_id] = new_id
    return pairs


def enrolled_surge(request: EnrollRequest, view: ScaleSetView) -> RollingUpgradePolicy:
    """The rolling policy an enrollment's upgrades would follow, as far as maxSurge goes: under
    useRollingUpgradePolicy, the given field, else the set's own (admission merges them so)."""
    policy = request.policy
    if not policy.automatic_os_upgrade_policy.use_rolling_upgrade_policy:
        return RollingUpgradePolicy()
    own = view.rolling_upgrade_policy
    given = "maxSurge" in (request.policy_given or [])
    surge = policy.rolling_upgrade_policy.max_surge if given or own is None else own.max_surge
    return RollingUpgradePolicy(max_surge=surge)
