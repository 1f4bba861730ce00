"""The gates (rules/gates.py) as tables: each named case a scale set's figures and the breach they
make, or none; milliseconds each."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.errors import UpgradeErrorCode
from models.fleet import HealthReading, HealthSource, HealthState
from models.policy import RollingUpgradePolicy
from models.status import ApiError
from models.upgrade import InstanceOutcome, InstanceState
from rules import gates
from rules.ledger import UpgradeRules
from tests.helpers.ledgers import (
    AGENT,
    NOW,
    PROBE,
    extension_outcome,
    failed,
    ledger_of,
    run_batch,
    succeeded,
)

BEFORE = UpgradeErrorCode.UNHEALTHY_EXCEEDED_BEFORE_UPGRADE
IN_UPGRADE = UpgradeErrorCode.UNHEALTHY_EXCEEDED_IN_UPGRADE
UPGRADED = UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED
PRE_EXACT_CORE = UpgradeRules(exact_core=False)


@pytest.mark.parametrize(
    ("unhealthy", "total", "percent", "before_upgrade", "code", "says"),
    [
        pytest.param(0, 0, 20, True, None, None, id="an empty set"),
        pytest.param(0, 10, 20, True, None, None, id="all healthy"),
        pytest.param(1, 5, 20, True, None, None, id="1 of 5 at 20% is allowed"),
        pytest.param(2, 10, 20, True, None, None, id="exactly the percent is allowed"),
        pytest.param(
            2, 5, 20, True, BEFORE, "2 of 5 instances (40%) were unhealthy before the upgrade", id="before"
        ),
        pytest.param(2, 5, 20, False, IN_UPGRADE, "during the upgrade; it stopped", id="in the upgrade"),
        pytest.param(3, 10, 20, False, IN_UPGRADE, "The policy allows 20%", id="the policy's percent named"),
        pytest.param(5, 10, 50, True, None, None, id="a larger percent"),
        pytest.param(7, 7, 100, True, None, None, id="100% allows all"),
        pytest.param(
            7, 9, 5, True, BEFORE, "Unhealthy instances: 0, 1, 2, 3, 4 and 2 more.", id="five named"
        ),
    ],
)
def test_unhealthy_gate(
    unhealthy: int, total: int, percent: int, before_upgrade: bool, code: str | None, says: str | None
) -> None:
    policy = RollingUpgradePolicy(max_unhealthy_instance_percent=max(percent, 5))
    ids = [str(i) for i in range(unhealthy)]
    breach = gates.unhealthy_gate(ids, total, policy, before_upgrade=before_upgrade)
    assert (breach.code if breach else None) == code
    if says is not None:
        assert breach is not None and says in (breach.message or "")


@pytest.mark.parametrize(
    ("source", "says"),
    [
        pytest.param(None, None, id="no source"),
        pytest.param(HealthSource.EXTENSION, "Health is read from", id="the source named"),
    ],
)
def test_the_unhealthy_gate_says_where_health_was_read(source: HealthSource | None, says: str | None) -> None:
    breach = gates.unhealthy_gate(["0", "1"], 2, RollingUpgradePolicy(), before_upgrade=True, source=source)
    assert breach is not None
    assert ("Health is read from" in (breach.message or "")) == (says is not None)


@pytest.mark.parametrize(
    ("unhealthy", "before_upgrade", "code"),
    [
        pytest.param((), True, None, id="healthy set"),
        pytest.param(("3",), True, None, id="1 of 5 before"),
        pytest.param(("3", "4"), True, BEFORE, id="2 of 5 before"),
        pytest.param(("3", "4"), False, IN_UPGRADE, id="2 of 5 in the upgrade"),
    ],
)
def test_in_flight_gate_over_the_ledger(
    unhealthy: tuple[str, ...], before_upgrade: bool, code: str | None
) -> None:
    breach = gates.in_flight_gate(ledger_of(5, unhealthy=unhealthy), before_upgrade=before_upgrade)
    assert (breach.code if breach else None) == code


TWO_OF_FIVE = [failed("0"), failed("1"), *map(succeeded, "234")]
ONE_OF_FIVE = [failed("0"), *map(succeeded, "1234")]


@pytest.mark.parametrize(
    ("outcomes", "now", "rules", "later", "says"),
    [
        pytest.param([], {}, None, False, None, id="nothing upgraded"),
        pytest.param([succeeded("0"), succeeded("1")], {}, None, False, None, id="all healthy"),
        pytest.param(ONE_OF_FIVE, {}, None, False, None, id="1 of 5 at 20% is allowed"),
        pytest.param(
            TWO_OF_FIVE,
            {},
            None,
            False,
            "2 of 5 upgraded instances (40%) are unhealthy; the policy allows 20% "
            "(maxUnhealthyUpgradedInstancePercent). Most common error: ApplicationUnhealthy on 2 "
            "instance(s), e.g. 0 (m0). The upgrade stops: no new batch starts.",
            id="2 of 5: the most common error",
        ),
        pytest.param(
            TWO_OF_FIVE,
            {},
            PRE_EXACT_CORE,
            False,
            "2 of 5 upgraded instances (40%) are unhealthy; the policy allows 20% "
            "(maxUnhealthyUpgradedInstancePercent). First failed instance: 0 (m0).",
            id="before exact-core: the first failure, no stop sentence",
        ),
        pytest.param(
            TWO_OF_FIVE,
            {"1": None},
            None,
            False,
            "1 of 4 upgraded instances (25%)",
            id="a deleted one leaves the count",
        ),
        pytest.param(
            TWO_OF_FIVE,
            {"1": None},
            PRE_EXACT_CORE,
            False,
            "2 of 5 upgraded",
            id="before exact-core it stays",
        ),
        pytest.param(
            ONE_OF_FIVE, {"4": HealthState.UNHEALTHY}, None, False, None, id="unhealthy since, uncounted"
        ),
        pytest.param(
            ONE_OF_FIVE,
            {"4": HealthState.UNHEALTHY},
            None,
            True,
            "2 of 5 upgraded instances (40%) are unhealthy",
            id="unhealthy since, counted after the last batch",
        ),
    ],
)
def test_upgraded_gate(
    outcomes: list[InstanceOutcome],
    now: dict[str, HealthState | None],
    rules: UpgradeRules | None,
    later: bool,
    says: str | None,
) -> None:
    """`now`: instances whose health changed since their batch (None: deleted)."""
    ledger = ledger_of(10, rules=rules)
    if outcomes:
        run_batch(ledger, outcomes)
    reading = {str(i): now.get(str(i), HealthState.HEALTHY) for i in range(10)}
    ledger.observe(HealthReading(health={i: h for i, h in reading.items() if h is not None}))
    breach = gates.upgraded_gate(ledger, including_later=later)
    if says is None:
        assert breach is None
    else:
        assert breach is not None and breach.code == UPGRADED
        assert says in (breach.message or "")


@pytest.mark.parametrize(
    ("timeout", "after", "hold", "says"),
    [
        pytest.param(None, timedelta(days=9), None, None, id="no timeout"),
        pytest.param(timedelta(hours=1), timedelta(minutes=59), None, None, id="before the deadline"),
        pytest.param(
            timedelta(hours=1),
            timedelta(hours=1),
            None,
            "did not finish within its timeout of PT1H (started 2026-12-01T00:00:00+00:00, deadline "
            "2026-12-01T01:00:00+00:00); it stopped after the batch in flight settled, with 2 of 10 "
            "instances upgraded",
            id="at the deadline",
        ),
        pytest.param(
            timedelta(hours=1), timedelta(hours=2), "paused", "; it was paused by ops: lunch", id="paused"
        ),
        pytest.param(
            timedelta(hours=1),
            timedelta(hours=2),
            "approval",
            "; it was waiting for approval of 2, 3",
            id="approval",
        ),
    ],
)
def test_deadline_gate(
    timeout: timedelta | None, after: timedelta, hold: str | None, says: str | None
) -> None:
    ledger = ledger_of(10, timeout=timeout)
    run_batch(ledger, [succeeded("0"), succeeded("1")])
    if hold == "paused":
        ledger.pause("lunch", "ops", NOW)
    elif hold == "approval":
        ledger.await_approval(["2", "3"], NOW)
    breach = gates.deadline_gate(ledger, NOW + after)
    if says is None:
        assert breach is None
    else:
        assert breach is not None and breach.code == UpgradeErrorCode.TIMEOUT
        assert says in (breach.message or "")


OK, BACK = InstanceState.SUCCEEDED, InstanceState.ROLLED_BACK
INDEPENDENT = UpgradeRules(independent_extensions=True)


@pytest.mark.parametrize(
    ("rules", "outcomes", "stopped"),
    [
        pytest.param(INDEPENDENT, [extension_outcome(i, OK, OK) for i in "0123"], [], id="all installed"),
        pytest.param(
            INDEPENDENT,
            [extension_outcome("0", BACK, OK), *(extension_outcome(i, OK, OK) for i in "1234")],
            [],
            id="1 of 5 at 20% is allowed",
        ),
        pytest.param(
            INDEPENDENT,
            [
                extension_outcome("0", BACK, OK),
                extension_outcome("1", BACK, OK),
                extension_outcome("2", OK, OK),
            ],
            ["agent"],
            id="one extension past its limit stops alone",
        ),
        pytest.param(
            INDEPENDENT,
            [extension_outcome("0", BACK, BACK), extension_outcome("1", BACK, BACK)],
            ["agent", "probe"],
            id="both past it",
        ),
        pytest.param(
            UpgradeRules(independent_extensions=False),
            [extension_outcome("0", BACK, BACK), extension_outcome("1", BACK, BACK)],
            [],
            id="before independent-extensions: no gate of their own",
        ),
    ],
)
def test_extension_gates(rules: UpgradeRules, outcomes: list[InstanceOutcome], stopped: list[str]) -> None:
    ledger = ledger_of(10, rules=rules, extensions=(AGENT, PROBE))
    run_batch(ledger, outcomes)
    breaches = gates.extension_gates(ledger)
    assert sorted(breaches) == stopped
    for name, breach in breaches.items():
        assert breach.code == UPGRADED and breach.target == name
        assert f"no later batch installs {name}" in (breach.message or "")


@pytest.mark.parametrize(
    ("stop", "says"),
    [
        pytest.param([], None, id="none stopped"),
        pytest.param(
            ["agent"],
            "1 of 2 extensions stopped on their own policy breach (agent); the upgrade went on with probe.",
            id="one stopped, the other went on",
        ),
        pytest.param(["agent", "probe"], "no extension was left to install", id="both stopped"),
    ],
)
def test_extensions_stopped(stop: list[str], says: str | None) -> None:
    ledger = ledger_of(4, rules=INDEPENDENT, extensions=(AGENT, PROBE))
    for name in stop:
        ledger.stop_extension(name, ApiError(code=UPGRADED, message=f"{name} broke."))
    breach = gates.extensions_stopped(ledger)
    if says is None:
        assert breach is None
    else:
        assert breach is not None and says in (breach.message or "")
