"""What the Web UI shows of a rollout (workflows/rollout.py's details): each phase summarised, each
upgrade linked, the extension and its retry, short at fleet scale; user text escaped; pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models.automatic import RolloutSetState, RolloutState, RolloutStatus
from tests.helpers.automatic import Images
from workflows.rollout import details

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process


def test_the_rollout_details_name_the_extension_and_the_retry() -> None:
    """The Web UI details of an extension rollout (pure): the extension and version, the retry
    and the failure it follows, each set's retry; user text escaped."""
    from models.automatic import RolloutExtension, RolloutRetry, RolloutSet

    retry = RolloutRetry(attempt=2, failed_at=datetime(2026, 11, 30, 12, tzinfo=UTC), reason="**bad** [x](y)")
    status = RolloutStatus(
        workflow_id="rollout/ext:Contoso.Monitoring.Agent/1.3.0/retry-2",
        version="1.3.0",
        phases=[["westeurope"]],
        extension=RolloutExtension(publisher="Contoso.Monitoring", type_="Agent", major="1"),
        retry=retry,
        sets=[RolloutSet(scale_set="web", region="westeurope", phase=1, retry=retry)],
    )
    text = details(status, "default")
    assert text.startswith("**extension Contoso.Monitoring.Agent 1.3.0**: Running")
    assert "retry 2 of 1.3.0 after it failed at 2026-11-30 12:00:00 UTC: \\*\\*bad\\*\\* \\[x\\](y)" in text
    assert "(westeurope): Pending (retry 2)" in text


def test_the_web_ui_details_summarise_each_phase_link_each_upgrade_and_escape_user_text():
    from datetime import UTC, datetime

    from models.automatic import Hold, RolloutSet
    from workflows.rollout import details

    status = RolloutStatus(
        workflow_id="rollout/fleet/web/1.1.0",
        source=Images().latest,
        version="1.1.0",
        state=RolloutState.HELD,
        phases=[["eastus", "northeurope"], ["westeurope"]],
        sets=[
            RolloutSet(scale_set="a", region="eastus", phase=1, state=RolloutSetState.COMPLETED),
            RolloutSet(scale_set="b", region="westeurope", phase=2),
        ],
        hold=Hold(by="ops", reason="**soak** [x](http://evil)", since=datetime(2026, 11, 30, tzinfo=UTC)),
    )
    text = details(status, "default")
    # The image by its short form (gallery/image version), never its resource id.
    assert status.source is not None and status.source.id is not None
    assert text.startswith(f"**fleet/{status.source.id.rsplit('/', 1)[1]} 1.1.0**: Held")
    assert "/subscriptions/" not in text
    assert "Phase 1 (eastus, northeurope): 1 of 1 scale sets upgraded" in text
    assert "Phase 2 (westeurope): 0 of 1 scale sets upgraded" in text
    assert "[a](/namespaces/default/workflows/rolling-upgrade%2Fa)" in text
    # The reason is shown as text, never as markdown (no bold, no link).
    assert "\\*\\*soak\\*\\* \\[x\\](http://evil)" in text and "**soak**" not in text


def test_the_web_ui_details_stay_short_at_fleet_scale_and_link_the_cohorts_in_flight():
    from models.automatic import RolloutSet, RolloutStatus
    from workflows.rollout import DETAILS_SETS_PER_PHASE, details

    sets = [RolloutSet(scale_set=f"web-{n:03}", region="eastus", phase=1) for n in range(100)]
    sets[70].state = RolloutSetState.RUNNING
    sets[71].state = RolloutSetState.FAULTED
    status = RolloutStatus(
        workflow_id="rollout/x/1.1.0",
        version="1.1.0",
        phases=[["eastus"]],
        sets=sets,
        cohorts=["rollout/x/1.1.0/eastus/cohort-4"],
    )
    text = details(status, "default")
    assert "(/namespaces/default/workflows/rollout%2Fx%2F1.1.0%2Feastus%2Fcohort-4)" in text
    assert f"and {100 - DETAILS_SETS_PER_PHASE} more" in text
    listed = [line for line in text.splitlines() if line.startswith("- [web-")]
    assert len(listed) == DETAILS_SETS_PER_PHASE
    assert listed[0].startswith("- [web-070]") and listed[1].startswith("- [web-071]")  # news first
