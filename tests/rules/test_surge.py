"""maxSurge, pure (rules/surge.py, the ledger's replacements, the Flexible refusal): which new
instance replaces which old one, and what the gates and the status count afterwards."""

from __future__ import annotations

import pytest

from models.change import Change
from models.errors import RefusalCode
from models.fleet import HealthReading, HealthState, ScaleSetView
from models.policy import RollingUpgradePolicy
from models.upgrade import InstanceOutcome, InstanceState
from rules import gates, reporting
from rules.refusals import max_surge_refusal
from rules.surge import pair, surges
from tests.helpers.ledgers import AGENT, ledger_of, run_batch
from tests.helpers.upgrades import V2

SURGE = RollingUpgradePolicy(max_surge=True)


@pytest.mark.parametrize(
    ("old", "new", "pairs"),
    [
        pytest.param(
            [("0", "1"), ("1", "1")], [("5", "1"), ("6", "1")], {"0": "5", "1": "6"}, id="same zone"
        ),
        pytest.param(
            [("0", "1"), ("3", "2")], [("7", "2"), ("8", "1")], {"0": "8", "3": "7"}, id="each to its zone"
        ),
        pytest.param(
            [("0", "1"), ("1", "1")], [("5", "2"), ("6", "1")], {"0": "6", "1": "5"}, id="another zone last"
        ),
        pytest.param(
            [("2", None), ("10", None)], [("12", None), ("11", None)], {"2": "11", "10": "12"}, id="natural"
        ),
        pytest.param([("0", "1"), ("1", "1")], [("5", "1")], {"0": "5"}, id="fewer new than old"),
        pytest.param([], [("5", "1")], {}, id="nothing to replace"),
    ],
)
def test_each_old_instance_gets_one_new_one_of_its_zone_first(old, new, pairs):
    assert pair(old, new) == pairs


Z = [("0", "1"), ("3", "1"), ("1", "2"), ("4", "2"), ("2", "3"), ("5", "3")]  # two a zone


@pytest.mark.parametrize(
    ("batch", "new", "pairs"),
    [
        pytest.param(
            [("0", "1"), ("3", "1")], [("6", "1"), ("7", "2")], {"0": "6", "1": "7"}, id="a new one in zone 2"
        ),
        pytest.param(
            [("0", "1"), ("3", "1")],
            [("6", "2"), ("7", "3")],
            {"1": "6", "2": "7"},
            id="none in the batch's zone",
        ),
        pytest.param([("0", "1")], [("6", "4")], {"0": "6"}, id="a zone with nothing to upgrade"),
    ],
)
def test_a_new_instance_replaces_one_of_its_own_zone_so_the_zones_stay_balanced(batch, new, pairs):
    assert pair(batch, new, [z for z in Z if z not in batch]) == pairs


@pytest.mark.parametrize(
    ("policy", "change", "expected"),
    [
        pytest.param(SURGE, Change(image=V2), True, id="an image under maxSurge"),
        pytest.param(RollingUpgradePolicy(), Change(image=V2), False, id="maxSurge off"),
        pytest.param(SURGE, Change(extensions=[AGENT]), False, id="extensions install in place"),
    ],
)
def test_which_upgrades_surge(policy, change, expected):
    assert surges(policy, change) is expected


def view(mode: str) -> ScaleSetView:
    return ScaleSetView.model_validate(
        {
            "name": "web",
            "id": "/x/web",
            "location": "westeurope",
            "imageReference": V2.to_json(),
            "orchestrationMode": mode,
        }
    )


def test_a_flexible_set_is_refused_max_surge_naming_the_field():
    refusal = max_surge_refusal(view("Flexible"), SURGE)
    assert refusal is not None and refusal.code == RefusalCode.MAX_SURGE_NOT_SUPPORTED
    assert refusal.message is not None and refusal.message.startswith("rollingUpgradePolicy.maxSurge:")
    assert max_surge_refusal(view("Uniform"), SURGE) is None
    assert max_surge_refusal(view("Flexible"), RollingUpgradePolicy()) is None


def replaced(old: str, new: str) -> InstanceOutcome:
    return InstanceOutcome(
        instance_id=old, state=InstanceState.SUCCEEDED, health=HealthState.HEALTHY, replaced_by=new
    )


def test_a_replaced_instance_hands_its_progress_to_the_new_one_and_counts_once():
    ledger = ledger_of(5, policy=SURGE)
    run_batch(ledger, [replaced("0", "5")])
    assert list(ledger.instances) == ["5", "1", "2", "3", "4"]
    moved = ledger.instances["5"]
    assert (moved.replaces, moved.state, moved.instance_id) == ("0", InstanceState.SUCCEEDED, "5")
    assert reporting.progress(ledger).successful_instance_count == 1
    assert ledger.total == 5 and [c.instance_id for c in ledger.candidates()] == ["1", "2", "3", "4"]
    # The old instance, still listed while it is being deleted, is not a scale-out to upgrade.
    added = ledger.observe(
        HealthReading(health={i: HealthState.HEALTHY for i in ["0", "1", "2", "3", "4", "5"]})
    )
    assert added == []


def test_a_new_instance_turning_unhealthy_after_its_batch_counts_against_the_upgraded_gate():
    ledger = ledger_of(
        5, policy=RollingUpgradePolicy(max_surge=True, max_unhealthy_upgraded_instance_percent=0)
    )
    run_batch(ledger, [replaced("0", "5")])
    ledger.observe(
        HealthReading(health={"5": HealthState.UNHEALTHY, **{i: HealthState.HEALTHY for i in "1234"}})
    )
    breach = gates.upgraded_gate(ledger, including_later=True)
    assert breach is not None and "5" in (breach.message or "")


def test_a_replacement_that_failed_leaves_the_old_instance_as_a_failed_upgraded_one():
    ledger = ledger_of(
        5, policy=RollingUpgradePolicy(max_surge=True, max_unhealthy_upgraded_instance_percent=0)
    )
    kept = InstanceOutcome(
        instance_id="0", state=InstanceState.ROLLED_BACK, code="ApplicationUnhealthy", restored=True
    )
    run_batch(ledger, [kept])
    assert "0" in ledger.instances and not ledger.replaced
    assert gates.upgraded_gate(ledger) is not None
