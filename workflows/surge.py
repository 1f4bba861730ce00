"""maxSurge batches, the upgrade's side: before the batch, the core quota and the new instances;
after it, the deletes. The batch child waits for each new instance's health (await_replacement in
workflows/change_kinds.py).

Create and delete are one activity each per batch, whatever its size (a batch of more than 100
instances runs as several children, which must not each raise the capacity). Both reconcile by
reading the set first, so a retry, a worker killed mid-call or a 500 after ARM accepted never
creates or deletes twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import steps
    from models.errors import UpgradeErrorCode
    from models.status import ApiError
    from models.upgrade import InstanceOutcome
    from rules.ledger import UpgradeLedger
    from rules.planner import Candidate
    from rules.surge import pair
    from workflows import activity_calls

# Patch (docs/maintaining.md): 2026-12, maxSurge upgrades (only upgrades with maxSurge on, which
# were refused before, take this path).
MAX_SURGE = "max-surge"


@dataclass
class Surge:
    """A batch's replacements: old instance id → new instance id, and the new ones' zones; or,
    with `in_place`, why the batch is upgraded in place after all."""

    replacements: dict[str, str] = field(default_factory=dict)
    zones: dict[str, str | None] = field(default_factory=dict)
    in_place: str | None = None
    failed: tuple[str, str] | None = None  # the fleet's code and message: nothing was created


async def replace(ledger: UpgradeLedger, upgrade_id: str, number: int, batch: list[Candidate]) -> Surge:
    """Check the quota and create the batch's new instances (booting: the batch waits for
    their health). Without room for them the batch is upgraded in place, as Azure does."""
    if not workflow.patched(MAX_SURGE):  # (never: such upgrades were refused before it)
        return Surge(in_place="upgraded in place")
    scale_set = ledger.request.scale_set
    assert ledger.change.image is not None
    try:
        room = await activity_calls.surge_room(scale_set, len(batch))
        if not room.room:
            return Surge(
                in_place=f"upgraded in place: {room.detail or 'no core quota for its new instances'}"
            )
        created = await activity_calls.create_instances(
            steps.CreateInstancesInput(
                scale_set=scale_set,
                count=len(batch),
                known=sorted(set(ledger.instances) | ledger.replaced),
                image=ledger.change.image,
                operation_id=f"{upgrade_id}/batch-{number}/create",
            )
        )
    except ActivityError as err:
        return Surge(failed=activity_calls.infrastructure_failure(err))
    # At most the batch's count: an instance someone else added meanwhile is a scale-out's.
    new = [(i, created.zones.get(i)) for i in created.instance_ids[: len(batch)]]
    # Under deferral only the approved batch may be replaced; otherwise any instance still to
    # upgrade in the same phase (PhaseOrderingNumber) may take a new instance of its zone.
    phases = {c.phase for c in batch}
    others = [] if ledger.request.needs_approval else [c for c in ledger.candidates() if c.phase in phases]
    pairs = pair([(c.instance_id, c.zone) for c in batch], new, [(c.instance_id, c.zone) for c in others])
    return Surge(replacements=pairs, zones=created.zones)


async def delete_replaced(
    ledger: UpgradeLedger, upgrade_id: str, number: int, outcomes: list[InstanceOutcome], surge: Surge
) -> ApiError | None:
    """Delete each old instance a healthy new one replaced, and each new one that did not come
    up healthy (its old one stays). An error if the fleet would not delete them."""
    doomed = [o.instance_id if o.replaced_by else surge.replacements[o.instance_id] for o in outcomes]
    if not doomed:
        return None
    try:
        await activity_calls.delete_instances(
            steps.DeleteInstancesInput(
                scale_set=ledger.request.scale_set,
                instance_ids=doomed,
                operation_id=f"{upgrade_id}/batch-{number}/delete",
            )
        )
    except ActivityError as err:
        code, message = activity_calls.infrastructure_failure(err)
        return ApiError(
            code=code or UpgradeErrorCode.INTERNAL_EXECUTION_ERROR,
            message=f"batch {number}: the instances {', '.join(doomed)} could not be deleted ({message}); "
            "the scale set has more instances than its size until they are",
            target=ledger.request.scale_set,
        )
    return None
