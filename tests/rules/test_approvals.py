"""Approval of batches under deferral (rules/approvals.py, through the ledger) as tables: which
instances an approval releases, and when notBeforeTimeout approves them; milliseconds each."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.upgrade import InstanceState
from tests.helpers.ledgers import NOW, ledger_of

MINUTE = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("approvals", "due", "waiting"),
    [
        pytest.param([], ["0", "1"], ["0", "1"], id="none given: the batch waits"),
        pytest.param([(["0"], "ops")], ["0", "1"], ["1"], id="one approved before it was due goes at once"),
        pytest.param([(None, "ops")], ["0", "1"], [], id="every instance, now and later"),
        pytest.param([(["7"], "ops")], ["0", "1"], ["0", "1"], id="an approval of others"),
    ],
)
def test_approvals_given_before_the_batch(
    approvals: list[tuple[list[str] | None, str]], due: list[str], waiting: list[str]
) -> None:
    ledger = ledger_of(10)
    for ids, by in approvals:
        assert ledger.approve(ids, by, NOW - MINUTE) == []  # nothing pending yet
    assert ledger.await_approval(due, NOW) == waiting
    for instance_id in set(due) - set(waiting):
        progress = ledger.instances[instance_id]
        assert (progress.state, progress.approved_by, progress.approval_time) == (
            InstanceState.PENDING,
            "ops",
            NOW - MINUTE,
        )
        assert progress.message == "approved by ops at 2026-11-30T23:59:00+00:00"


@pytest.mark.parametrize(
    ("ids", "released", "waiting"),
    [
        pytest.param(["1"], ["1"], ["0", "2"], id="one of them"),
        pytest.param(["2", "0", "9"], ["0", "2"], ["1"], id="some, and one not pending"),
        pytest.param(None, ["0", "1", "2"], [], id="every instance"),
        pytest.param([], [], ["0", "1", "2"], id="none"),
    ],
)
def test_approvals_of_a_batch_waiting(ids: list[str] | None, released: list[str], waiting: list[str]) -> None:
    ledger = ledger_of(10)
    ledger.await_approval(["0", "1", "2"], NOW)
    assert ledger.approve(ids, "ops", NOW + MINUTE) == released
    assert ledger.pending_approval() == waiting


def test_the_first_approval_of_an_instance_stands() -> None:
    ledger = ledger_of(10)
    ledger.approve(["0"], "alice", NOW)
    ledger.approve(["0"], "bob", NOW + MINUTE)
    ledger.await_approval(["0"], NOW + 2 * MINUTE)
    assert ledger.instances["0"].approved_by == "alice"


@pytest.mark.parametrize(
    ("state", "approved_before", "held"),
    [
        pytest.param(InstanceState.PENDING, False, True, id="pending: held"),
        pytest.param(InstanceState.PENDING, True, False, id="approved in an earlier hold: not again"),
        pytest.param(InstanceState.SKIPPED, False, False, id="skipped: never held"),
        pytest.param(InstanceState.NOT_STARTED, False, False, id="not started: never held"),
    ],
)
def test_which_instances_a_batch_holds(state: InstanceState, approved_before: bool, held: bool) -> None:
    ledger = ledger_of(10)
    progress = ledger.instances["0"]
    progress.state = state
    progress.approved_by = "ops" if approved_before else None
    assert ledger.await_approval(["0"], NOW) == (["0"] if held else [])
    assert (progress.pending_approval_since == NOW) is held


@pytest.mark.parametrize(
    ("timeout", "after", "released"),
    [
        pytest.param(10 * MINUTE, 9 * MINUTE, [], id="not yet"),
        pytest.param(10 * MINUTE, 10 * MINUTE, ["0", "1"], id="at notBeforeTimeout"),
        pytest.param(10 * MINUTE, 60 * MINUTE, ["0", "1"], id="long after"),
    ],
)
def test_not_before_timeout_approves_on_its_own(
    timeout: timedelta, after: timedelta, released: list[str]
) -> None:
    ledger = ledger_of(10)
    ledger.await_approval(["0", "1"], NOW)
    assert ledger.approve_due(timeout, NOW + after) == released
    for instance_id in released:
        progress = ledger.instances[instance_id]
        assert (progress.approved_by, progress.approval_time) == ("notBeforeTimeout", NOW + timeout)
        assert progress.message == (
            "approved on its own after notBeforeTimeout PT10M "
            "(pending approval since 2026-12-01T00:00:00+00:00)"
        )
