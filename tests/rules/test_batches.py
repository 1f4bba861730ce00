"""The batch planner: pure rules, tested directly."""

from __future__ import annotations

import random
from datetime import UTC

import pytest

from models.change import Change
from models.fleet import CustomMetrics, HealthState, InstanceView, OsDisk, ScaleSetView
from models.image import ImageReference
from models.policy import RollingUpgradePolicy
from models.upgrade import InstanceState, UpgradeRequest
from rules import reporting
from rules.ledger import UpgradeLedger
from rules.planner import Candidate, batch_size_limit, next_batch, plan_batches
from tests.helpers.upgrades import V1, V2

DEFAULT = RollingUpgradePolicy()


def fleet(count: int, zones: int = 1, domains: int = 5) -> list[Candidate]:
    """Instances spread like the emulator spreads them."""
    return [
        Candidate(
            instance_id=str(i),
            zone=str(i % zones + 1) if zones > 1 else None,
            update_domain=(i // zones) % domains,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("total", range(1, 1001))
def test_batch_size_is_twenty_percent_with_a_floor_of_one(total):
    expected = 1 if total <= 5 else max(1, total * 20 // 100)
    assert batch_size_limit(total, 20) == expected


@pytest.mark.parametrize(
    ("total", "percent", "size", "before_the_patch"),
    [(4, 50, 2, 1), (5, 40, 2, 1), (5, 100, 5, 1), (3, 20, 1, 1), (6, 50, 3, 3), (2, 100, 2, 1)],
)
def test_small_sets_take_the_policys_batch_size(total, percent, size, before_the_patch):
    # Seed 000's "5 or fewer instances: 1 virtual machine per batch" is what the default 20%
    # gives; a policy that asks for more is honoured. Upgrades started before the patch keep
    # one at a time.
    assert batch_size_limit(total, percent) == size
    assert batch_size_limit(total, percent, small_sets_one_at_a_time=True) == before_the_patch


@pytest.mark.parametrize(("total", "size"), [(1, 1), (5, 1), (6, 1), (10, 2), (99, 19), (1000, 200)])
def test_batch_size_examples(total, size):
    assert batch_size_limit(total, 20) == size
    # With no zones or update domains to respect, the batch is that big.
    assert len(next_batch(fleet(total, domains=1), total, 0, DEFAULT)) == size


def test_a_larger_percentage_makes_larger_batches():
    policy = RollingUpgradePolicy(max_batch_instance_percent=50, max_unhealthy_instance_percent=50)
    assert len(next_batch(fleet(100, domains=1), 100, 0, policy)) == 50


def test_batches_never_span_zones_without_cross_zone_upgrade():
    instances = fleet(30, zones=3, domains=1)
    for batch in plan_batches(instances, 30, [], DEFAULT):
        assert len({c.zone for c in batch}) == 1
    # Zone by zone: all of zone 1 before zone 2.
    order = [c.zone for batch in plan_batches(instances, 30, [], DEFAULT) for c in batch]
    assert order == sorted(order)


def test_cross_zone_upgrade_mixes_zones_but_keeps_one_update_domain_per_zone():
    policy = RollingUpgradePolicy(enable_cross_zone_upgrade=True)
    instances = fleet(30, zones=3, domains=2)
    plan = plan_batches(instances, 30, [], policy)
    assert sorted(c.zone for c in plan[0]) == ["1", "1", "2", "2", "3", "3"]
    for batch in plan:
        per_zone: dict[str | None, set[int]] = {}
        for c in batch:
            per_zone.setdefault(c.zone, set()).add(c.update_domain)
        assert all(len(domains) == 1 for domains in per_zone.values())


def test_batches_stay_inside_update_domain_boundaries():
    instances = fleet(50, domains=5)  # ten instances per update domain
    plan = plan_batches(instances, 50, [], DEFAULT)
    assert all(len({c.update_domain for c in batch}) == 1 for batch in plan)
    assert [len(batch) for batch in plan] == [10] * 5


def test_prioritize_unhealthy_instances_upgrades_them_first():
    instances = [Candidate(str(i), unhealthy=i in (7, 3)) for i in range(20)]
    policy = RollingUpgradePolicy(prioritize_unhealthy_instances=True)
    plan = plan_batches(instances, 20, ["3", "7"], policy)
    # A batch of the unhealthy ones alone, then the healthy ones.
    assert [c.instance_id for c in plan[0]] == ["3", "7"]
    assert [c.instance_id for c in plan[1]] == ["0", "1", "2", "4"]
    # Without the flag they take their turn by id.
    assert plan_batches(instances, 20, ["3", "7"], DEFAULT)[0][0].instance_id == "0"


@pytest.mark.parametrize(
    ("total", "candidates", "unhealthy", "within_budget", "expected"),
    [
        # 20% of 20 = 4 may be unhealthy at once; unhealthy instances outside the candidates
        # (say, failed in an earlier batch) leave room for fewer.
        (20, 18, 0, True, 4),
        (20, 18, 2, True, 2),
        (20, 18, 3, True, 1),
        # No room: no batch starts (the upgrade waits for health to recover) ...
        (20, 18, 4, True, 0),
        (10, 8, 2, True, 0),
        # ... though one instance may always go down when every other one is healthy.
        (3, 3, 0, True, 1),
        (3, 2, 1, True, 0),
        # Upgrades started before the exact-core patch replay the old floor of one.
        (20, 18, 4, False, 1),
        (10, 8, 2, False, 1),
    ],
)
def test_batch_shrinks_so_unhealthy_plus_batch_stay_within_the_limit(
    total, candidates, unhealthy, within_budget, expected
):
    batch = next_batch(fleet(candidates, domains=1), total, unhealthy, DEFAULT, within_budget=within_budget)
    assert len(batch) == expected


def test_the_plan_assumes_unhealthy_instances_recover_when_they_leave_no_room():
    plan = plan_batches(fleet(8, domains=1), 10, ["8", "9"], DEFAULT)
    assert [len(batch) for batch in plan] == [2, 2, 2, 2]


def test_an_unhealthy_instance_in_the_batch_does_not_count_twice():
    instances = [Candidate(str(i), unhealthy=i == 0) for i in range(20)]
    batch = next_batch(instances, 20, 3, DEFAULT)
    # Budget 4 - 3 = 1 newly unhealthy, plus instance 0 which is unhealthy already.
    assert [c.instance_id for c in batch] == ["0", "1"]


def test_phase_ordering_number_orders_batches_and_phases_never_mix():
    instances = [Candidate(str(i), phase=(2 if i < 5 else 1 if i < 8 else None)) for i in range(10)]
    plan = plan_batches(instances, 10, [], DEFAULT)
    phases = [{c.phase for c in batch} for batch in plan]
    assert all(len(p) == 1 for p in phases)
    assert [p.pop() for p in phases] == [1, 1, 2, 2, 2, None]


def test_identical_inputs_give_an_identical_plan_whatever_the_input_order():
    instances = fleet(97, zones=3, domains=4)
    shuffled = instances[:]
    random.Random(7).shuffle(shuffled)
    assert plan_batches(instances, 97, ["5"], DEFAULT) == plan_batches(shuffled, 97, ["5"], DEFAULT)


def test_instance_ids_sort_naturally():
    plan = plan_batches(fleet(12, domains=1), 12, [], DEFAULT)
    assert [c.instance_id for c in plan[0]] == ["0", "1"]
    assert [c.instance_id for c in plan[-1]] == ["10", "11"]


def _view(instance_id: str, image: ImageReference = V1, skip: bool = False) -> InstanceView:
    return InstanceView(
        instance_id=instance_id,
        image_reference=image,
        os_disk=OsDisk(name=f"d{instance_id}", image_reference=image),
        health=HealthState.HEALTHY,
        custom_metrics=CustomMetrics(skip_upgrade=skip),
    )


def test_instances_already_on_the_target_image_or_opted_out_are_skipped():
    from datetime import datetime

    view = ScaleSetView(
        name="web",
        id="/x/web",
        location="westeurope",
        image_reference=V1,
        instances=[_view("0"), _view("1", image=V2.at_version(V2.version)), _view("2", skip=True)],
    )
    ledger = UpgradeLedger(UpgradeRequest(scale_set="web", target_image=V2), datetime.now(UTC))
    ledger.admit(view, Change(image=V2.at_version(V2.version)))
    states = {i: p.state for i, p in ledger.instances.items()}
    assert states == {"0": InstanceState.PENDING, "1": InstanceState.SKIPPED, "2": InstanceState.SKIPPED}
    assert [c.instance_id for c in ledger.candidates()] == ["0"]
    assert reporting.progress(ledger).total == 1
