"""Checkpoints (rules/checkpoints.py) as tables: where a batch stops, which checkpoint is reached,
and the plan cut at them."""

from __future__ import annotations

import pytest

from models.policy import Checkpoint, RollingUpgradePolicy
from rules.checkpoints import count_at, reached, room
from rules.planner import Candidate, plan_batches

POINTS = [Checkpoint(percent=5), Checkpoint(percent=25), Checkpoint(percent=100)]


@pytest.mark.parametrize(
    ("percent", "upgradable", "count"),
    [
        pytest.param(5, 12, 1, id="5% of 12 is 1 (rounded up)"),
        pytest.param(25, 12, 3, id="25% of 12"),
        pytest.param(1, 3, 1, id="at least one"),
        pytest.param(100, 7, 7, id="all"),
        pytest.param(50, 0, 0, id="nothing to do"),
    ],
)
def test_a_checkpoint_stands_after_its_share_rounded_up(percent, upgradable, count):
    assert count_at(percent, upgradable) == count


@pytest.mark.parametrize(
    ("passed", "done", "expected_room", "expected_reached"),
    [
        pytest.param(0, 0, 1, None, id="the first batch stops at 5%"),
        pytest.param(0, 1, 2, 0, id="5% reached"),
        pytest.param(1, 1, 2, None, id="then up to 25%"),
        pytest.param(1, 3, 9, 1, id="25% reached"),
        pytest.param(2, 3, 9, None, id="then the rest"),
        pytest.param(0, 3, 9, 1, id="a batch past two stops at the later"),
    ],
)
def test_where_the_next_batch_stops_and_which_checkpoint_is_reached(
    passed, done, expected_room, expected_reached
):
    assert room(POINTS, passed, done, 12) == expected_room
    assert reached(POINTS, passed, done, 12) == expected_reached


def test_without_checkpoints_nothing_stops_a_batch():
    assert room([], 0, 0, 12) is None and reached([], 0, 5, 12) is None


def test_the_plan_stops_at_each_checkpoint_and_plans_on_from_there():
    candidates = [Candidate(str(i)) for i in range(12)]
    policy = RollingUpgradePolicy(max_batch_instance_percent=34, max_unhealthy_instance_percent=34)
    plan = plan_batches(candidates, 12, [], policy, room=lambda planned: room(POINTS, 0, planned, 12))
    assert [len(b) for b in plan] == [1, 2, 4, 4, 1]  # 1 (5%), 3 (25%), then batches of 4


@pytest.mark.parametrize(
    ("points", "says"),
    [
        pytest.param(
            [{"percent": 25}, {"percent": 5}], "checkpoints[1].percent: must be above the one before (25)"
        ),
        pytest.param([{"percent": 0}], "must be a whole number from 1 to 100"),
        pytest.param([{"percent": 10, "bakeTime": "P8D"}], "must be from PT0S to PT168H"),
    ],
)
def test_bad_checkpoints_are_refused_naming_the_field(points, says):
    with pytest.raises(ValueError, match="checkpoints") as err:
        RollingUpgradePolicy.model_validate({"checkpoints": points})
    assert says in str(err.value)
