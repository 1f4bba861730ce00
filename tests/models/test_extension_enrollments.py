"""An extension's enrollment in automatic extension upgrades (models/automatic.py): which version is
due, how its state reads in one line and in the watcher's Web UI details, and the upgrade request a
rollout makes of it; pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.automatic import PLATFORM, Enrollment, ExtensionEnrollment
from tests.helpers.automatic_extensions import PUBLISHER

# --- what is due, and how an extension's automatic state reads (pure) -----------------------------

FAILED_AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def agent(**fields: Any) -> ExtensionEnrollment:
    base: dict[str, Any] = {
        "name": "agent",
        "publisher": PUBLISHER,
        "type_": "Agent",
        "model_version": "1.2",
        "automatic": True,
        "installed": ["1.2.0"],
    }
    return ExtensionEnrollment(**{**base, **fields})


FAILED = {"failed_version": "1.3.0", "failed_at": FAILED_AT, "failure": "VMExtensionProvisioningError: x"}


@pytest.mark.parametrize(
    ("extension", "now", "due"),
    [
        pytest.param(agent(), FAILED_AT, True, id="an instance runs an older version"),
        pytest.param(agent(installed=["1.2.0", "1.3.0"]), FAILED_AT, True, id="one instance behind"),
        pytest.param(agent(installed=["", "1.3.0"]), FAILED_AT, True, id="one instance without it"),
        pytest.param(agent(installed=["1.3.0"]), FAILED_AT, False, id="every instance on it"),
        pytest.param(agent(installed=["1.4.0"]), FAILED_AT, False, id="every instance newer"),
        pytest.param(agent(installed=[]), FAILED_AT, False, id="no instances"),
        pytest.param(agent(applied_version="1.3.0"), FAILED_AT, False, id="a rollout completed it"),
        pytest.param(agent(note="not enrolled (...)"), FAILED_AT, False, id="not enrolled"),
        pytest.param(agent(automatic=False), FAILED_AT, True, id="enrolled by name, Azure's flag off"),
        pytest.param(agent(note="gone"), FAILED_AT, False, id="the set is gone"),
        pytest.param(agent(**FAILED), FAILED_AT + DAY, False, id="failed: before the interval"),
        pytest.param(agent(**FAILED), FAILED_AT + 2 * DAY, True, id="failed: the interval passed"),
        pytest.param(agent(**FAILED, retry=False), FAILED_AT + 9 * DAY, False, id="cancelled: never"),
        pytest.param(
            agent(**{**FAILED, "failed_version": "1.2.9"}), FAILED_AT, True, id="a newer one than failed"
        ),
    ],
)
def test_which_extension_version_is_due(extension: ExtensionEnrollment, now: datetime, due: bool) -> None:
    assert extension.due("1.3.0", now, 2 * DAY) is due


@pytest.mark.parametrize(
    ("extension", "text"),
    [
        (agent(), "following new 1.x versions; installed 1.2.0"),
        (agent(installed=["", "1.2.0"]), "following new 1.x versions; installed not installed, 1.2.0"),
        (
            agent(automatic=False, note="enableAutomaticUpgrade is off: left alone"),
            "enableAutomaticUpgrade is off",
        ),
        (
            agent(rollout_id="rollout/ext:x/1.3.0", rolling_version="1.3.0"),
            "rolling to 1.3.0 (rollout/ext:x/1.3.0)",
        ),
        (
            agent(**FAILED, attempts=1),
            "1.3.0 failed at 2026-11-30 12:00:00 UTC (1 attempt(s)): VMExtensionProvisioningError: x; "
            "retry 1 at 2026-12-02 12:00:00 UTC",
        ),
        (
            agent(**FAILED, attempts=2, rollout_id="rollout/ext:x/1.3.0/retry-2", rolling_version="1.3.0"),
            "rolling: retry 2 of 1.3.0 after it failed at 2026-11-30 12:00:00 UTC: "
            "VMExtensionProvisioningError: x",
        ),
        (agent(**{**FAILED, "failure": "cancelled by ops"}, retry=False), "not retried (a newer version"),
    ],
)
def test_an_extensions_automatic_state_reads_as_one_line(extension: ExtensionEnrollment, text: str) -> None:
    assert text in extension.state_text(2 * DAY)


def test_the_watchers_web_ui_details_list_each_extensions_state_escaped() -> None:
    from models.automatic import AutomaticSettings, AutomaticState
    from models.policy import UpgradePolicy
    from rules.watcher import details as watcher_details

    failed = agent(**{**FAILED, "failure": "**bad** [x](y)"}, attempts=1)
    enrollment = Enrollment(
        scale_set="web", policy=UpgradePolicy(), location="westeurope", extensions={"agent": failed}
    )
    state = AutomaticState(
        settings=AutomaticSettings(extension_retry_interval=timedelta(hours=1)),
        enrollments={"web": enrollment},
    )
    text = watcher_details(state, "default")
    assert "| scale set | extension | type | automatic upgrade |" in text
    assert f"| web | agent | {PUBLISHER}.Agent 1.2 | 1.3.0 failed at 2026-11-30 12:00:00 UTC" in text
    assert "\\*\\*bad\\*\\* \\[x\\](y); retry 1 at 2026-11-30 13:00:00 UTC" in text


def test_an_extension_upgrade_of_a_rollout_follows_the_enrollments_policy_and_says_its_retry() -> None:
    from models.automatic import RolloutRetry, RolloutSet
    from models.policy import UpgradePolicy
    from workflows.set_upgrades import upgrade_request, upgrade_summary

    policy = UpgradePolicy.model_validate(
        {
            "rollingUpgradePolicy": {
                "maxBatchInstancePercent": 50,
                "maxUnhealthyInstancePercent": 50,
                "enableCrossZoneUpgrade": True,
            },
            "automaticOSUpgradePolicy": {"useRollingUpgradePolicy": True, "osRollingUpgradeDeferral": True},
        }
    )
    enrollment = Enrollment(scale_set="web", policy=policy, not_before_timeout=timedelta(minutes=15))
    request = upgrade_request(enrollment, "1.3.0", "agent")
    assert request.target_image is None and [(e.name, e.version) for e in request.extensions or []] == [
        ("agent", "1.3.0")
    ]
    assert request.policy.max_batch_instance_percent == 50 and not request.policy.enable_cross_zone_upgrade
    assert request.started_by == PLATFORM
    assert not request.needs_approval  # deferral and notBeforeTimeout are OS image settings
    item = RolloutSet(
        scale_set="web", region="westeurope", retry=RolloutRetry(attempt=2, failed_at=FAILED_AT)
    )
    rollout_id = "rollout/ext:Contoso.Monitoring.Agent/1.3.0/retry-2"
    assert upgrade_summary(item, request, rollout_id) == (
        f"web: automatic extension upgrade of agent to 1.3.0 (retry 2) (rollout {rollout_id})"
    )
