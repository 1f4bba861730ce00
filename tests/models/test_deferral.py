"""The deferral fields of an upgrade request (osRollingUpgradeDeferral, notBeforeTimeout): their range,
their defaults, and a request of an older starter without them; pure."""

from __future__ import annotations

import pytest

from models.upgrade import UpgradeRequest
from tests.helpers.upgrades import V2


@pytest.mark.parametrize("value", ["PT1M", "PT4M59S", "PT2H1S", "P1D"])
def test_not_before_timeout_outside_pt5m_to_pt2h_is_refused_naming_the_field(value):
    with pytest.raises(ValueError, match=r"notBeforeTimeout|not_before_timeout") as raised:
        UpgradeRequest(scale_set="web", target_image=V2, not_before_timeout=value)
    assert "PT5M to PT2H" in str(raised.value)


def test_the_new_request_fields_default_off_and_round_trip():
    request = UpgradeRequest(scale_set="web", target_image=V2)
    assert request.deferral is False and request.not_before_timeout is None
    assert not request.needs_approval
    given = UpgradeRequest(scale_set="web", target_image=V2, deferral=True, not_before_timeout="PT15M")
    document = given.to_json()
    assert document["deferral"] is True and document["notBeforeTimeout"] == "PT15M"
    assert UpgradeRequest.model_validate(document) == given
    # A request of an older starter (no such fields) still reads.
    assert UpgradeRequest.model_validate({"scaleSet": "web", "targetImage": V2.to_json()}).deferral is False
