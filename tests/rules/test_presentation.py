"""What the Web UI shows of an upgrade (rules/presentation.py from the ledger): who paused it, why and
since when, and the approval wait; pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.upgrade import UpgradeRequest
from rules import presentation
from rules.ledger import UpgradeLedger
from tests.helpers.upgrades import V1, V2


def test_the_web_ui_shows_who_paused_why_and_since_when_and_the_approval_wait():
    from models.fleet import HealthState, InstanceView

    now = datetime(2027, 1, 5, 12, 0, tzinfo=UTC)
    request = UpgradeRequest(
        scale_set="web", target_image=V2, upgrade_timeout=timedelta(hours=2), deferral=True
    )
    ledger = UpgradeLedger(request, now)
    ledger.add(
        InstanceView.model_validate(
            {
                "instanceId": str(i),
                "imageReference": V1.to_json(),
                "health": HealthState.HEALTHY.value,
                "osDisk": {"name": f"os-{i}", "imageReference": V1.to_json()},
            }
        )
        for i in range(3)
    )
    ledger.pause("change freeze *now*", "alice", now)
    details = presentation.current_details(ledger)
    assert "**Paused** since 2027-01-05T12:00:00+00:00: paused by alice: change freeze \\*now\\*" in details
    assert "The batch in flight finishes" in details and "upgradectl resume web" in details
    assert "2027-01-05T14:00:00+00:00" in details  # the timeout still runs

    assert ledger.resume() and ledger.paused is None
    assert ledger.await_approval(["0"], now) == ["0"]
    assert ledger.plan()[0][0].instance_id == "0"  # the batch awaiting approval comes first
    assert ledger.approve(["2"], "bob", now) == []  # before it is due: kept
    assert ledger.approve(["0"], "bob", now + timedelta(minutes=1)) == ["0"]
    assert ledger.await_approval(["2"], now + timedelta(minutes=2)) == []
    assert ledger.instances["2"].approved_by == "bob"
