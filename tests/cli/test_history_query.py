"""`upgradectl history`'s visibility query (starter/history.py): Azure's window of two months by
default; pure. (The history itself on a dev server: tests/cli/test_history.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from starter.history import history_query

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process


def test_the_default_is_azures_window_of_two_months():
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert history_query("web", everything=False, now=now) == (
        'WorkflowType = "RollingUpgradeWorkflow" AND ScaleSet = "web" AND StartTime > "2026-09-22T12:00:00Z"'
    )
    assert "StartTime" not in history_query("web", everything=True, now=now)
