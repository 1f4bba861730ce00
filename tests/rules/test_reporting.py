"""The status and report arithmetic of the ledger, as tables: milliseconds per case."""

from __future__ import annotations

import pytest

from models.errors import FailureCause
from models.fleet import HealthState
from models.upgrade import InstanceOutcome, InstanceState
from rules import gates, reporting
from tests.helpers.ledgers import NOW, ledger_of


def restore(
    instance_id: str, state: InstanceState, restored: bool | None, after: HealthState | None
) -> InstanceOutcome:
    return InstanceOutcome(
        instance_id=instance_id,
        state=state,
        cause=FailureCause.HEALTH,
        code="ApplicationUnhealthy",
        health=HealthState.UNHEALTHY,
        health_after_restore=after,
        restored=restored,
    )


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (restore("0", InstanceState.ROLLED_BACK, True, HealthState.HEALTHY), (1, 0)),
        # Restored, but still unhealthy after it: a failed rollback.
        (restore("0", InstanceState.ROLLED_BACK, False, HealthState.UNHEALTHY), (0, 1)),
        # No previous OS disk to restore: a failed rollback too.
        (restore("0", InstanceState.FAILED, False, None), (0, 1)),
        # Left failed on the new image (automatic rollback off): no rollback at all.
        (restore("0", InstanceState.FAILED, None, None), (0, 0)),
        # Recorded before outcomes said how a restore went: a RolledBack instance was restored.
        (restore("0", InstanceState.ROLLED_BACK, None, HealthState.HEALTHY), (1, 0)),
    ],
)
def test_rollback_info_counts_restores_by_how_they_ended(outcome, expected):
    ledger = ledger_of(5)
    ledger.start_batch(["0"], NOW)
    ledger.settle([outcome])
    info = reporting.rollback_info(ledger)
    assert (info.successfully_rolledback_instance_count, info.failed_rolledback_instance_count) == expected


def test_a_restored_instance_is_healthy_at_once_and_a_gone_one_counts_nowhere():
    ledger = ledger_of(10)
    ledger.start_batch(["0", "1"], NOW)
    gone = InstanceOutcome(
        instance_id="1",
        state=InstanceState.FAILED,
        cause=FailureCause.INFRASTRUCTURE,
        code="NotFound",
        message="x",
    )
    ledger.settle([restore("0", InstanceState.ROLLED_BACK, True, HealthState.HEALTHY), gone])
    assert ledger.unhealthy() == []
    assert ledger.total == 9
    assert ledger.instances["1"].state == InstanceState.SKIPPED
    assert [p.instance_id for p in ledger.attempted()] == ["0"]
    progress = reporting.progress(ledger)
    assert (
        progress.successful_instance_count,
        progress.failed_instance_count,
        progress.pending_instance_count,
    ) == (
        0,
        1,
        8,
    )


@pytest.mark.parametrize(
    ("codes", "expected"),
    [
        (["ApplicationUnhealthy"] * 3, "ApplicationUnhealthy on 3 instance(s), e.g. 0 (m0)"),
        (
            ["AllocationFailed", "ApplicationUnhealthy", "ApplicationUnhealthy"],
            "ApplicationUnhealthy on 2 instance(s), e.g. 1 (m1); 1 other error code(s)",
        ),
        ([None], "Unknown on 1 instance(s), e.g. 0 (m0)"),
    ],
)
def test_the_upgraded_gate_names_the_most_common_error(codes, expected):
    ledger = ledger_of(10)
    ledger.start_batch([str(i) for i in range(len(codes))], NOW)
    ledger.settle(
        InstanceOutcome(instance_id=str(i), state=InstanceState.FAILED, code=code, message=f"m{i}")
        for i, code in enumerate(codes)
    )
    breach = gates.upgraded_gate(ledger)
    assert breach is not None
    assert f"Most common error: {expected}." in (breach.message or "")
    assert (breach.message or "").endswith("The upgrade stops: no new batch starts.")
