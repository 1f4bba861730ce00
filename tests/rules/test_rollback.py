"""`upgradectl rollback`'s request (rules/rollback.py) as tables: what is moved back, to what, and
when there is nothing, or no one version, to go back to."""

from __future__ import annotations

import pytest

from models.change import ExtensionRequest
from models.status import RollingUpgradeStatusInfo
from models.upgrade import InstanceProgress, InstanceState, UpgradeReport, UpgradeRequest
from rules.rollback import RollbackRefused, rollback_request
from tests.helpers.upgrades import V1, V2

S, F, R = InstanceState.SUCCEEDED, InstanceState.FAILED, InstanceState.ROLLED_BACK


def image_report(*states: InstanceState, sources: tuple[str, ...] = ()) -> UpgradeReport:
    instances = [
        InstanceProgress(instance_id=str(i), state=state, from_image=(sources or (str(V1),) * len(states))[i])
        for i, state in enumerate(states)
    ]
    request = UpgradeRequest(scale_set="web", target_image=V2, started_by="alice")
    return UpgradeReport(
        status=RollingUpgradeStatusInfo(), target_image=V2, instances=instances, request=request
    )


def test_an_image_upgrade_is_rolled_back_to_where_its_moved_instances_came_from():
    request = rollback_request(image_report(S, F, R, S), "rolling-upgrade/web (run 1)", "carol")
    assert request.target_image is not None and request.target_image.version == V1.version
    assert request.only_instances == ["0", "1", "3"]  # the one rolled back already is not moved
    assert (request.started_by, request.rollback_of) == ("carol", "rolling-upgrade/web (run 1)")


@pytest.mark.parametrize(
    ("report", "says"),
    [
        pytest.param(image_report(R, R), "moved no instance that is still on its change", id="nothing moved"),
        pytest.param(
            image_report(S, S, sources=(str(V1), str(V1.with_version("0.9.0")))),
            "came from several images",
            id="several previous versions",
        ),
        pytest.param(
            UpgradeReport(status=RollingUpgradeStatusInfo()),
            "keeps no request",
            id="a report without its request",
        ),
    ],
)
def test_a_rollback_is_refused_naming_why(report, says):
    with pytest.raises(RollbackRefused, match=says):
        rollback_request(report, "rolling-upgrade/web (run 1)", "carol")


def test_an_extension_upgrade_is_rolled_back_to_each_extensions_previous_version():
    instances = [
        InstanceProgress(
            instance_id="0", state=S, from_image="agent 1.3.0", previous_extensions={"agent": "1.2.0"}
        ),
        InstanceProgress(
            instance_id="1", state=S, from_image="agent 1.3.0", previous_extensions={"agent": "1.2.0"}
        ),
    ]
    request = UpgradeRequest(scale_set="web", extensions=[ExtensionRequest(name="agent")])
    report = UpgradeReport(status=RollingUpgradeStatusInfo(), instances=instances, request=request)
    rollback = rollback_request(report, "u", "carol")
    assert rollback.target_image is None
    assert rollback.extensions == [ExtensionRequest(name="agent", version="1.2.0")]
