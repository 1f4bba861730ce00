"""Batch planning: pure and deterministic, so a replayed workflow plans exactly the same batches.

Rules, after Azure's automatic OS image upgrades and rolling upgrade policy:
- a batch holds at most maxBatchInstancePercent of all instances (at least one; scale sets of
  five or fewer go one instance at a time) and at most maxBatchInstanceCount;
- a batch shrinks so that the instances already unhealthy plus the batch (which is unhealthy
  while it upgrades) stay within maxUnhealthyInstancePercent and maxUnhealthyInstanceCount (each
  count, when set, beside its percentage: the stricter wins; at least one instance down is
  allowed when all others are healthy); when even one more would exceed it, no batch starts
  (the upgrade waits for health to recover);
- a batch never spans availability zones unless enableCrossZoneUpgrade, and holds one update
  domain per zone;
- unhealthy instances go first under prioritizeUnhealthyInstances, then the custom metric
  PhaseOrderingNumber orders phases (a batch never mixes priorities or phases);
- ties break by zone, update domain and instance id (zones take turns under cross-zone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from models.policy import RollingUpgradePolicy
from models.sorting import natural_key

_UNPHASED = 1 << 30


@dataclass(frozen=True)
class Candidate:
    """An instance the planner may put in a batch."""

    instance_id: str
    zone: str | None = None
    update_domain: int = 0
    unhealthy: bool = False
    phase: int | None = None


def batch_size_limit(
    total: int, max_batch_instance_percent: int, *, small_sets_one_at_a_time: bool = False
) -> int:
    """The largest batch for a scale set of `total` instances: at least one. Seed 000's "scale
    sets with 5 or fewer instances have 1 virtual machine per upgrade batch" is what the default
    20% gives; an explicit larger percent is honoured. `small_sets_one_at_a_time`: the rule of
    upgrades started before the batch-size-by-policy patch, one at a time whatever the percent."""
    if small_sets_one_at_a_time and total <= 5:
        return 1
    return max(1, total * max_batch_instance_percent // 100)


def unhealthy_allowance(total: int, max_unhealthy_instance_percent: int) -> int:
    """How many instances may be unhealthy at once, counting the batch in flight."""
    return total * max_unhealthy_instance_percent // 100


@dataclass(frozen=True)
class Limit:
    """A limit of the policy over `total` instances: how many it allows, and which field (the
    percentage or the absolute count, whichever is stricter) gives it, with its value."""

    allowed: int
    field: str
    value: int

    @property
    def shown(self) -> str:
        """The field's value as the policy states it: "20%" or "3"."""
        return f"{self.value}%" if self.field.endswith("Percent") else str(self.value)

    def __str__(self) -> str:
        return f"{self.shown} ({self.field})"


def stricter(by_percent: int, percent: int, count: int | None, name: str) -> Limit:
    """What max<name>Percent allows (`by_percent` instances) or max<name>Count, whichever allows
    fewer (the count on a tie: it is the one given, and it does not move with the set's size)."""
    if count is not None and count <= by_percent:
        return Limit(count, f"max{name}Count", count)
    return Limit(by_percent, f"max{name}Percent", percent)


def batch_limit(total: int, policy: RollingUpgradePolicy, *, small_sets_one_at_a_time: bool = False) -> Limit:
    """The largest batch for a scale set of `total` instances (see batch_size_limit)."""
    percent = policy.max_batch_instance_percent
    by_percent = batch_size_limit(total, percent, small_sets_one_at_a_time=small_sets_one_at_a_time)
    return stricter(by_percent, percent, policy.max_batch_instance_count, "BatchInstance")


def unhealthy_limit(total: int, policy: RollingUpgradePolicy) -> Limit:
    """How many of `total` instances may be unhealthy at once, counting the batch in flight."""
    percent = policy.max_unhealthy_instance_percent
    by_percent = unhealthy_allowance(total, percent)
    return stricter(by_percent, percent, policy.max_unhealthy_instance_count, "UnhealthyInstance")


def upgraded_limit(attempted: int, policy: RollingUpgradePolicy) -> Limit:
    """How many of the `attempted` upgraded instances may be unhealthy."""
    percent = policy.max_unhealthy_upgraded_instance_percent
    by_percent = unhealthy_allowance(attempted, percent)
    return stricter(
        by_percent, percent, policy.max_unhealthy_upgraded_instance_count, "UnhealthyUpgradedInstance"
    )


def _priority(candidate: Candidate, policy: RollingUpgradePolicy) -> tuple[int, int]:
    first = 0 if policy.prioritize_unhealthy_instances and candidate.unhealthy else 1
    phase = _UNPHASED if candidate.phase is None else candidate.phase
    return (first, phase)


def order_candidates(candidates: Iterable[Candidate], policy: RollingUpgradePolicy) -> list[Candidate]:
    """Zone by zone; under enableCrossZoneUpgrade, zones take turns within an update domain,
    so a cross-zone batch takes a few instances from every zone rather than most of one."""
    ordered = sorted(
        candidates,
        key=lambda c: (_priority(c, policy), c.zone or "", c.update_domain, natural_key(c.instance_id)),
    )
    if not policy.enable_cross_zone_upgrade:
        return ordered
    turn: dict[tuple[object, ...], int] = {}
    position = {}
    for candidate in ordered:
        group = (_priority(candidate, policy), candidate.zone, candidate.update_domain)
        position[candidate.instance_id] = turn[group] = turn.get(group, -1) + 1
    return sorted(
        ordered,
        key=lambda c: (
            _priority(c, policy),
            c.update_domain,
            position[c.instance_id],
            c.zone or "",
        ),
    )


def next_batch(
    candidates: Iterable[Candidate],
    total: int,
    unhealthy_count: int,
    policy: RollingUpgradePolicy,
    *,
    within_budget: bool = True,
    small_sets_one_at_a_time: bool = False,
) -> list[Candidate]:
    """The next batch from `candidates`, given `unhealthy_count` unhealthy instances in the set;
    empty when no healthy instance may go down now.

    `within_budget=False` is the rule of upgrades started before the exact-core patch: the
    first instance of a batch always went, whatever the budget; `small_sets_one_at_a_time`, see
    batch_size_limit.
    """
    ordered = order_candidates(candidates, policy)
    if not ordered:
        return []
    limit = batch_limit(total, policy, small_sets_one_at_a_time=small_sets_one_at_a_time).allowed
    allowance = unhealthy_limit(total, policy).allowed
    budget = (max(1, allowance) if within_budget else allowance) - unhealthy_count
    first = ordered[0]
    domain_of_zone: dict[str | None, int] = {}
    batch: list[Candidate] = []
    for candidate in ordered:
        if len(batch) == limit:
            break
        if _priority(candidate, policy) != _priority(first, policy):
            continue
        if not policy.enable_cross_zone_upgrade and candidate.zone != first.zone:
            continue
        if domain_of_zone.get(candidate.zone, candidate.update_domain) != candidate.update_domain:
            continue
        # An instance that is already unhealthy adds nothing to the unhealthy count.
        cost = 0 if candidate.unhealthy else 1
        if cost > budget and (batch or within_budget):
            continue
        domain_of_zone.setdefault(candidate.zone, candidate.update_domain)
        batch.append(candidate)
        budget -= cost
    return batch


def plan_batches(
    candidates: Sequence[Candidate],
    total: int,
    unhealthy_ids: Iterable[str],
    policy: RollingUpgradePolicy,
    *,
    within_budget: bool = True,
    small_sets_one_at_a_time: bool = False,
    room: Callable[[int], int | None] = lambda planned: None,
) -> list[list[Candidate]]:
    """The whole plan, assuming every upgraded instance comes back healthy (and, where the
    unhealthy instances leave no room for a batch, that they recover). `room`: the most a batch
    may take once `planned` instances are in earlier batches (checkpoints), None for no limit."""
    unhealthy = set(unhealthy_ids)
    remaining = list(candidates)
    plan: list[list[Candidate]] = []
    while remaining:
        batch = next_batch(
            remaining,
            total,
            len(unhealthy),
            policy,
            within_budget=within_budget,
            small_sets_one_at_a_time=small_sets_one_at_a_time,
        )
        if not batch:
            if not unhealthy:
                break  # cannot happen: one instance always fits when all are healthy
            unhealthy = set()
            continue
        limit = room(len(candidates) - len(remaining))
        batch = batch if limit is None else batch[:limit]
        plan.append(batch)
        chosen = {c.instance_id for c in batch}
        unhealthy -= chosen
        remaining = [c for c in remaining if c.instance_id not in chosen]
    return plan
