"""The batch planner (rules/planner.py) as tables: named cases of a scale set's instances and the
batch (or plan) they make; milliseconds each."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from models.policy import RollingUpgradePolicy
from rules.planner import Candidate, batch_size_limit, next_batch, plan_batches

DEFAULT = RollingUpgradePolicy()
HALF = RollingUpgradePolicy(max_batch_instance_percent=50, max_unhealthy_instance_percent=50)


def spread(
    count: int,
    zones: int = 1,
    domains: int = 1,
    unhealthy: tuple[str, ...] = (),
    phases: Mapping[str, int] | None = None,
) -> list[Candidate]:
    """Instances 0..count-1 spread round-robin over zones 1..zones (none for 1), then over update
    domains, as the emulator spreads them."""
    return [
        Candidate(
            instance_id=str(i),
            zone=str(i % zones + 1) if zones > 1 else None,
            update_domain=(i // zones) % domains,
            unhealthy=str(i) in unhealthy,
            phase=(phases or {}).get(str(i)),
        )
        for i in range(count)
    ]


@pytest.mark.parametrize(
    ("total", "percent", "one_at_a_time", "size"),
    [
        pytest.param(1, 20, False, 1, id="one instance"),
        pytest.param(5, 20, False, 1, id="5 at the default 20%: one at a time (seed 000)"),
        pytest.param(6, 20, False, 1, id="6 at 20%: rounds down to 1"),
        pytest.param(10, 20, False, 2, id="10 at 20%"),
        pytest.param(99, 20, False, 19, id="99 at 20%: rounds down"),
        pytest.param(1000, 20, False, 200, id="1000 at 20%"),
        pytest.param(4, 50, False, 2, id="4 at 50%: a small set takes the policy's size"),
        pytest.param(5, 100, False, 5, id="5 at 100%"),
        pytest.param(4, 50, True, 1, id="4 at 50% before batch-size-by-policy: one at a time"),
        pytest.param(5, 100, True, 1, id="5 at 100% before batch-size-by-policy"),
        pytest.param(6, 50, True, 3, id="6 is not small: the policy's size even before it"),
        pytest.param(3, 5, False, 1, id="never below one"),
    ],
)
def test_batch_size_limit(total: int, percent: int, one_at_a_time: bool, size: int) -> None:
    assert batch_size_limit(total, percent, small_sets_one_at_a_time=one_at_a_time) == size


@pytest.mark.parametrize(
    ("candidates", "unhealthy", "policy", "within_budget", "batch"),
    [
        pytest.param(spread(10), 0, DEFAULT, True, ["0", "1"], id="20% of 10"),
        pytest.param(spread(10), 0, HALF, True, ["0", "1", "2", "3", "4"], id="50% of 10"),
        pytest.param([], 0, DEFAULT, True, [], id="nothing left"),
        pytest.param(
            spread(30, zones=3),
            0,
            DEFAULT,
            True,
            ["0", "3", "6", "9", "12", "15"],
            id="one zone at a time",
        ),
        pytest.param(
            spread(30, zones=3, domains=2),
            0,
            RollingUpgradePolicy(enable_cross_zone_upgrade=True),
            True,
            ["0", "1", "2", "6", "7", "8"],
            id="cross-zone: zones take turns, one update domain each",
        ),
        pytest.param(spread(20, domains=5), 0, DEFAULT, True, ["0", "5", "10", "15"], id="one update domain"),
        pytest.param(
            spread(10, unhealthy=("7",)), 1, DEFAULT, True, ["0", "7"], id="an unhealthy one costs nothing"
        ),
        pytest.param(
            spread(10, unhealthy=("7", "8")),
            2,
            DEFAULT,
            True,
            ["7", "8"],
            id="no room: only the unhealthy ones go",
        ),
        pytest.param(
            spread(10, unhealthy=("7", "8")),
            2,
            DEFAULT,
            False,
            ["0"],
            id="no room before exact-core: the first instance went anyway",
        ),
        pytest.param(
            spread(10, unhealthy=("3", "4")),
            2,
            HALF,
            True,
            ["0", "1", "2", "3", "4"],
            id="unhealthy in place, not first",
        ),
        pytest.param(
            spread(10, unhealthy=("8", "9")),
            2,
            RollingUpgradePolicy(prioritize_unhealthy_instances=True, max_unhealthy_instance_percent=50),
            True,
            ["8", "9"],
            id="prioritizeUnhealthyInstances: the unhealthy first, in a batch of their own",
        ),
        pytest.param(
            spread(10, phases={"5": 1, "6": 1, "0": 2}),
            0,
            HALF,
            True,
            ["5", "6"],
            id="the lowest phase ordering number first, alone",
        ),
    ],
)
def test_next_batch(
    candidates: list[Candidate],
    unhealthy: int,
    policy: RollingUpgradePolicy,
    within_budget: bool,
    batch: list[str],
) -> None:
    chosen = next_batch(candidates, len(candidates) or 1, unhealthy, policy, within_budget=within_budget)
    assert [c.instance_id for c in chosen] == batch


@pytest.mark.parametrize(
    ("candidates", "unhealthy", "policy", "plan"),
    [
        pytest.param(spread(3), (), DEFAULT, [["0"], ["1"], ["2"]], id="a small set one at a time"),
        pytest.param(
            spread(12, zones=2, domains=2),
            (),
            DEFAULT,
            [["0", "4"], ["8"], ["2", "6"], ["10"], ["1", "5"], ["9"], ["3", "7"], ["11"]],
            id="zone by zone, update domain by update domain",
        ),
        pytest.param(
            spread(6, phases={"5": 1, "0": 2}),
            (),
            HALF,
            [["5"], ["0"], ["1", "2", "3"], ["4"]],
            id="phases first, then the rest",
        ),
        pytest.param(
            spread(5, unhealthy=("0", "1")),
            ("0", "1"),
            DEFAULT,
            [["0"], ["1"], ["2"], ["3"], ["4"]],
            id="unhealthy ones leaving no room are assumed to recover",
        ),
    ],
)
def test_plan_batches(
    candidates: list[Candidate],
    unhealthy: tuple[str, ...],
    policy: RollingUpgradePolicy,
    plan: list[list[str]],
) -> None:
    planned = plan_batches(candidates, len(candidates), unhealthy, policy)
    assert [[c.instance_id for c in batch] for batch in planned] == plan
