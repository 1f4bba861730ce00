"""What the table tests of the rules build their cases from: a scale set's ledger, admitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.change import Change, ExtensionRequest, ExtensionTarget
from models.fleet import HealthState, ScaleSetView
from models.policy import RollingUpgradePolicy
from models.upgrade import ExtensionOutcome, InstanceOutcome, InstanceState, UpgradeRequest
from rules.ledger import UpgradeLedger, UpgradeRules
from tests.helpers.upgrades import V1, V2

NOW = datetime(2026, 12, 1, tzinfo=UTC)
AGENT = ExtensionTarget(name="agent", publisher="Contoso", type_="Agent", version="1.3.0")
PROBE = ExtensionTarget(name="probe", publisher="Contoso", type_="Probe", version="2.1.0")


def ledger_of(
    count: int,
    *,
    unhealthy: tuple[str, ...] = (),
    policy: RollingUpgradePolicy | None = None,
    rules: UpgradeRules | None = None,
    timeout: timedelta | None = None,
    extensions: tuple[ExtensionTarget, ...] = (),
) -> UpgradeLedger:
    """A set of `count` instances on V1 (those named `unhealthy` Unhealthy), admitted for an
    upgrade to V2, or of `extensions` when given."""
    instances = [
        {
            "instanceId": str(i),
            "imageReference": V1.to_json(),
            "osDisk": {"name": f"d{i}", "imageReference": V1.to_json()},
            "health": "Unhealthy" if str(i) in unhealthy else "Healthy",
        }
        for i in range(count)
    ]
    view = ScaleSetView.model_validate(
        {
            "name": "web",
            "id": "/x/web",
            "location": "westeurope",
            "imageReference": V1.to_json(),
            "instances": instances,
        }
    )
    request = UpgradeRequest(
        scale_set="web",
        target_image=None if extensions else V2,
        extensions=[ExtensionRequest(name=t.name, version=t.version) for t in extensions] or None,
        policy=policy or RollingUpgradePolicy(),
        upgrade_timeout=timeout,
    )
    ledger = UpgradeLedger(request, NOW, rules=rules)
    change = Change(extensions=list(extensions)) if extensions else Change(image=V2.at_version(V2.version))
    ledger.admit(view, change)
    return ledger


def failed(instance_id: str, code: str = "ApplicationUnhealthy") -> InstanceOutcome:
    return InstanceOutcome(
        instance_id=instance_id, state=InstanceState.FAILED, code=code, message=f"m{instance_id}"
    )


def succeeded(instance_id: str) -> InstanceOutcome:
    return InstanceOutcome(instance_id=instance_id, state=InstanceState.SUCCEEDED, health=HealthState.HEALTHY)


def run_batch(ledger: UpgradeLedger, outcomes: list[InstanceOutcome]) -> None:
    ledger.start_batch([o.instance_id for o in outcomes], NOW)
    ledger.settle(outcomes)


def extension_outcome(instance_id: str, agent: InstanceState, probe: InstanceState) -> InstanceOutcome:
    """An instance's outcome in an upgrade of AGENT and PROBE: each extension's state."""
    return InstanceOutcome(
        instance_id=instance_id,
        state=InstanceState.SUCCEEDED if InstanceState.SUCCEEDED in (agent, probe) else InstanceState.FAILED,
        extension_outcomes={
            "agent": ExtensionOutcome(
                state=agent, code=None if agent == InstanceState.SUCCEEDED else "Boom", message="a"
            ),
            "probe": ExtensionOutcome(
                state=probe, code=None if probe == InstanceState.SUCCEEDED else "Boom", message="p"
            ),
        },
    )
