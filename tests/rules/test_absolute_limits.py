"""The absolute limits (maxBatchInstanceCount, maxUnhealthyInstanceCount,
maxUnhealthyUpgradedInstanceCount) beside the percentages, as tables: the stricter of the two
wins, in the planner and in the gates, and the messages name the one that applied; milliseconds
each."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.base import describe_validation_error
from models.errors import UpgradeErrorCode
from models.policy import RollingUpgradePolicy, UpgradePolicy
from models.upgrade import InstanceOutcome, InstanceState
from rules import gates, reporting
from rules.ledger import UpgradeRules
from rules.planner import (
    Candidate,
    Limit,
    batch_limit,
    next_batch,
    plan_batches,
    unhealthy_limit,
    upgraded_limit,
)
from tests.helpers.ledgers import AGENT, PROBE, extension_outcome, failed, ledger_of, run_batch, succeeded

OK, BACK = InstanceState.SUCCEEDED, InstanceState.ROLLED_BACK


def policy(**fields: int) -> RollingUpgradePolicy:
    return RollingUpgradePolicy.model_validate(fields)


def healthy(count: int) -> list[Candidate]:
    """Instances 0..count-1, healthy, in one zone and one update domain."""
    return [Candidate(str(i)) for i in range(count)]


# --- the planner ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "fields", "one_at_a_time", "limit"),
    [
        pytest.param(20, {}, False, Limit(4, "maxBatchInstancePercent", 20), id="no count: the percent"),
        pytest.param(
            20,
            {"maxBatchInstanceCount": 2},
            False,
            Limit(2, "maxBatchInstanceCount", 2),
            id="count below the percent: the count",
        ),
        pytest.param(
            20,
            {"maxBatchInstanceCount": 9},
            False,
            Limit(4, "maxBatchInstancePercent", 20),
            id="percent below the count: the percent",
        ),
        pytest.param(
            20,
            {"maxBatchInstanceCount": 4},
            False,
            Limit(4, "maxBatchInstanceCount", 4),
            id="a tie names the count",
        ),
        pytest.param(
            1000,
            {"maxBatchInstancePercent": 100, "maxBatchInstanceCount": 50},
            False,
            Limit(50, "maxBatchInstanceCount", 50),
            id="a large set: the count caps a large percent",
        ),
        pytest.param(
            3,
            {"maxBatchInstanceCount": 3},
            False,
            Limit(1, "maxBatchInstancePercent", 20),
            id="the percent's at-least-one on a small set",
        ),
        pytest.param(
            4,
            {"maxBatchInstancePercent": 50, "maxBatchInstanceCount": 5},
            True,
            Limit(1, "maxBatchInstancePercent", 50),
            id="before batch-size-by-policy: one at a time still",
        ),
    ],
)
def test_batch_limit(total: int, fields: dict[str, int], one_at_a_time: bool, limit: Limit) -> None:
    assert batch_limit(total, policy(**fields), small_sets_one_at_a_time=one_at_a_time) == limit


@pytest.mark.parametrize(
    ("total", "fields", "limit"),
    [
        pytest.param(20, {}, Limit(4, "maxUnhealthyInstancePercent", 20), id="no count: the percent"),
        pytest.param(
            20,
            {"maxUnhealthyInstanceCount": 1},
            Limit(1, "maxUnhealthyInstanceCount", 1),
            id="count stricter",
        ),
        pytest.param(
            20,
            {"maxUnhealthyInstanceCount": 7},
            Limit(4, "maxUnhealthyInstancePercent", 20),
            id="percent stricter",
        ),
        pytest.param(
            20, {"maxUnhealthyInstanceCount": 0}, Limit(0, "maxUnhealthyInstanceCount", 0), id="a count of 0"
        ),
    ],
)
def test_unhealthy_limit(total: int, fields: dict[str, int], limit: Limit) -> None:
    assert unhealthy_limit(total, policy(**fields)) == limit


def test_upgraded_limit_moves_with_the_upgraded_count_and_the_count_does_not() -> None:
    chosen = policy(maxUnhealthyUpgradedInstancePercent=50, maxUnhealthyUpgradedInstanceCount=2)
    assert upgraded_limit(2, chosen) == Limit(1, "maxUnhealthyUpgradedInstancePercent", 50)
    assert upgraded_limit(4, chosen) == Limit(2, "maxUnhealthyUpgradedInstanceCount", 2)
    assert upgraded_limit(100, chosen) == Limit(2, "maxUnhealthyUpgradedInstanceCount", 2)
    assert str(upgraded_limit(100, chosen)) == "2 (maxUnhealthyUpgradedInstanceCount)"
    assert str(upgraded_limit(2, chosen)) == "50% (maxUnhealthyUpgradedInstancePercent)"


HALF = {"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 50}


@pytest.mark.parametrize(
    ("count", "unhealthy", "fields", "batch"),
    [
        pytest.param(20, 0, {"maxBatchInstanceCount": 2}, 2, id="20% of 20 is 4: a count of 2 shrinks it"),
        pytest.param(20, 0, {"maxBatchInstanceCount": 7}, 4, id="20% of 20 is 4: a count of 7 leaves it"),
        pytest.param(
            20, 0, {**HALF, "maxBatchInstanceCount": 3}, 3, id="50% of 20 is 10: a count of 3 shrinks it"
        ),
        pytest.param(
            20,
            0,
            {**HALF, "maxUnhealthyInstanceCount": 4},
            4,
            id="50% of 20 may be down: a count of 4 unhealthy shrinks the batch to 4",
        ),
        pytest.param(
            20,
            2,
            {**HALF, "maxUnhealthyInstanceCount": 3},
            1,
            id="2 unhealthy and 3 allowed down: a batch of 1",
        ),
        pytest.param(
            20,
            3,
            {**HALF, "maxUnhealthyInstanceCount": 3},
            0,
            id="3 unhealthy and 3 allowed down: no batch",
        ),
        pytest.param(
            20,
            2,
            {**HALF, "maxUnhealthyInstanceCount": 12},
            8,
            id="2 unhealthy, the count 12 above 50%: the percent's 10 leave room for 8",
        ),
        pytest.param(
            20,
            0,
            {**HALF, "maxUnhealthyInstanceCount": 0},
            1,
            id="a count of 0: one at a time when all healthy",
        ),
        pytest.param(
            20, 1, {**HALF, "maxUnhealthyInstanceCount": 0}, 0, id="a count of 0: none with one down"
        ),
        pytest.param(
            20,
            0,
            {**HALF, "maxBatchInstanceCount": 6, "maxUnhealthyInstanceCount": 5},
            5,
            id="both counts: the smaller",
        ),
    ],
)
def test_next_batch_under_absolute_limits(
    count: int, unhealthy: int, fields: dict[str, int], batch: int
) -> None:
    # The unhealthy instances are outside the candidates (already upgraded, say).
    chosen = next_batch(healthy(count), count, unhealthy, policy(**fields))
    assert len(chosen) == batch


@pytest.mark.parametrize(
    ("count", "fields", "sizes"),
    [
        pytest.param(10, {"maxBatchInstanceCount": 1}, [1] * 10, id="20% of 10 is 2: a count of 1 halves it"),
        pytest.param(
            20, {**HALF, "maxBatchInstanceCount": 3}, [3, 3, 3, 3, 3, 3, 2], id="50% of 20 capped at 3"
        ),
        pytest.param(20, {**HALF, "maxBatchInstanceCount": 15}, [10, 10], id="the percent stricter: 10"),
        pytest.param(
            20, {**HALF, "maxUnhealthyInstanceCount": 6}, [6, 6, 6, 2], id="50% down capped at 6 unhealthy"
        ),
    ],
)
def test_plan_batches_under_absolute_limits(count: int, fields: dict[str, int], sizes: list[int]) -> None:
    planned = plan_batches(healthy(count), count, (), policy(**fields))
    assert [len(batch) for batch in planned] == sizes


# --- the gates -----------------------------------------------------------------------------------

IN_UPGRADE = UpgradeErrorCode.UNHEALTHY_EXCEEDED_IN_UPGRADE
UPGRADED = UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED


@pytest.mark.parametrize(
    ("unhealthy", "total", "fields", "says"),
    [
        pytest.param(2, 20, {"maxUnhealthyInstanceCount": 2}, None, id="exactly the count is allowed"),
        pytest.param(
            3,
            20,
            {"maxUnhealthyInstanceCount": 2},
            "3 of 20 instances (15%) were unhealthy during the upgrade; it stopped at the end of the "
            "current batch. The policy allows 2 (maxUnhealthyInstanceCount).",
            id="over the count, within the percent: the count named",
        ),
        pytest.param(
            3,
            10,
            {"maxUnhealthyInstanceCount": 5},
            "The policy allows 20% (maxUnhealthyInstancePercent).",
            id="over the percent, within the count: the percent named",
        ),
        pytest.param(
            1,
            20,
            {"maxUnhealthyInstanceCount": 0},
            "The policy allows 0 (maxUnhealthyInstanceCount).",
            id="0",
        ),
        pytest.param(
            4, 20, {"maxUnhealthyInstanceCount": 9}, None, id="a count above the percent adds nothing"
        ),
    ],
)
def test_unhealthy_gate_under_a_count(
    unhealthy: int, total: int, fields: dict[str, int], says: str | None
) -> None:
    ids = [str(i) for i in range(unhealthy)]
    breach = gates.unhealthy_gate(ids, total, policy(**fields), before_upgrade=False)
    if says is None:
        assert breach is None
    else:
        assert breach is not None and breach.code == IN_UPGRADE
        assert says in (breach.message or "")


def test_in_flight_gate_over_the_ledger_under_a_count() -> None:
    ledger = ledger_of(20, unhealthy=("3", "4"), policy=policy(maxUnhealthyInstanceCount=1))
    breach = gates.in_flight_gate(ledger, before_upgrade=True)
    assert breach is not None and breach.code == UpgradeErrorCode.UNHEALTHY_EXCEEDED_BEFORE_UPGRADE
    assert "2 of 20 instances (10%) were unhealthy before the upgrade" in (breach.message or "")
    assert "The policy allows 1 (maxUnhealthyInstanceCount)." in (breach.message or "")


def test_the_wait_for_health_names_the_count() -> None:
    ledger = ledger_of(20, unhealthy=("3",), policy=policy(maxUnhealthyInstanceCount=1))
    assert gates.budget_wait_reason(ledger).endswith(
        "and the policy allows 1 down at once (maxUnhealthyInstanceCount 1), so the next batch "
        "would exceed it"
    )


UPGRADED_HALF = {"maxUnhealthyUpgradedInstancePercent": 50}


@pytest.mark.parametrize(
    ("outcomes", "fields", "says"),
    [
        pytest.param(
            [failed("0"), *map(succeeded, "1234")],
            {**UPGRADED_HALF, "maxUnhealthyUpgradedInstanceCount": 1},
            None,
            id="1 of 5: within the count of 1",
        ),
        pytest.param(
            [failed("0"), failed("1"), *map(succeeded, "234")],
            {**UPGRADED_HALF, "maxUnhealthyUpgradedInstanceCount": 1},
            "2 of 5 upgraded instances (40%) are unhealthy; the policy allows 1 "
            "(maxUnhealthyUpgradedInstanceCount). Most common error:",
            id="2 of 5: 50% allows 2, the count of 1 stops it",
        ),
        pytest.param(
            [failed("0"), failed("1"), *map(succeeded, "234")],
            {"maxUnhealthyUpgradedInstanceCount": 3},
            "2 of 5 upgraded instances (40%) are unhealthy; the policy allows 20% "
            "(maxUnhealthyUpgradedInstancePercent).",
            id="2 of 5: the count of 3 allows it, 20% does not",
        ),
        pytest.param(
            [failed("0"), *map(succeeded, "1234")],
            {**UPGRADED_HALF, "maxUnhealthyUpgradedInstanceCount": 0},
            "the policy allows 0 (maxUnhealthyUpgradedInstanceCount)",
            id="a count of 0: any failure",
        ),
    ],
)
def test_upgraded_gate_under_a_count(
    outcomes: list[InstanceOutcome], fields: dict[str, int], says: str | None
) -> None:
    ledger = ledger_of(20, policy=policy(**fields))
    run_batch(ledger, outcomes)
    breach = gates.upgraded_gate(ledger)
    if says is None:
        assert breach is None
        error = reporting.error(ledger)  # failures within the limit: it says which limit
        assert error is not None and "within the 1 the policy allows (maxUnhealthyUpgradedInstanceCount)" in (
            error.message or ""
        )
    else:
        assert breach is not None and breach.code == UPGRADED
        assert says in (breach.message or "")


def test_an_extension_stops_alone_on_the_count() -> None:
    # 50% of the 4 it was tried on allows 2; the count allows 1: agent stops, probe goes on.
    chosen = policy(maxUnhealthyUpgradedInstancePercent=50, maxUnhealthyUpgradedInstanceCount=1)
    ledger = ledger_of(
        10, policy=chosen, rules=UpgradeRules(independent_extensions=True), extensions=(AGENT, PROBE)
    )
    run_batch(
        ledger,
        [
            extension_outcome("0", BACK, OK),
            extension_outcome("1", BACK, BACK),
            extension_outcome("2", OK, OK),
            extension_outcome("3", OK, OK),
        ],
    )
    breaches = gates.extension_gates(ledger)
    assert sorted(breaches) == ["agent"]
    assert "the policy allows 1 (maxUnhealthyUpgradedInstanceCount)" in (breaches["agent"].message or "")


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rolling", "message"),
    [
        (
            {"maxBatchInstanceCount": 0},
            "maxBatchInstanceCount: must be a whole number from 1 to 10000 (got 0)",
        ),
        ({"maxBatchInstanceCount": 10001}, "from 1 to 10000 (got 10001)"),
        (
            {"maxUnhealthyInstanceCount": -1},
            "maxUnhealthyInstanceCount: must be a whole number from 0 to 10000",
        ),
        ({"maxUnhealthyUpgradedInstanceCount": 2.5}, "from 0 to 10000 (got 2.5)"),
        ({"maxUnhealthyUpgradedInstanceCount": "many"}, "from 0 to 10000 (got 'many')"),
        ({"maxBatchInstanceCount": True}, "from 1 to 10000 (got True)"),
        (
            {"maxBatchInstanceCount": 5, "maxUnhealthyInstanceCount": 3},
            "maxBatchInstanceCount (5) may not exceed maxUnhealthyInstanceCount (3)",
        ),
        (
            {"maxBatchInstanceCount": 2, "maxUnhealthyInstanceCount": 0},
            "maxBatchInstanceCount (2) may not exceed maxUnhealthyInstanceCount (0)",
        ),
    ],
)
def test_bad_counts_are_refused_naming_the_field_and_its_range(
    rolling: dict[str, object], message: str
) -> None:
    try:
        UpgradePolicy.from_user({"rollingUpgradePolicy": rolling})
    except ValidationError as err:
        said = describe_validation_error(err)
    except ValueError as err:
        said = str(err)
    else:
        raise AssertionError(f"{rolling} was taken")
    assert said.startswith("rollingUpgradePolicy.") and message in said
    assert len(said.splitlines()) == 1, said


@pytest.mark.parametrize(
    "rolling",
    [
        {"maxBatchInstanceCount": 1, "maxUnhealthyInstanceCount": 0},
        {"maxBatchInstanceCount": 3, "maxUnhealthyInstanceCount": 3},
        {"maxBatchInstanceCount": 50},  # alone: no absolute unhealthy limit to exceed
        {"MaxBatchInstanceCount": 10000, "maxunhealthyupgradedinstancecount": 0},  # any case, as Azure reads
    ],
)
def test_consistent_counts_are_taken(rolling: dict[str, object]) -> None:
    UpgradePolicy.from_user({"rollingUpgradePolicy": rolling})
