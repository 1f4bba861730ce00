"""`upgradectl rollout plan`'s plan (starter/rollout_plan.py): the phases, regions, cohorts and zone
waves a new version would get, from the scale sets as read; pure."""

from __future__ import annotations

from typing import Any

import pytest

from models.image import ImageReference

pytestmark = pytest.mark.fast  # `make test-fast`: pure, in-process


def test_a_plan_lists_phases_regions_sets_cohorts_and_waves():
    from models.automatic import AutomaticSettings
    from starter.rollout_plan import PlannedSet, Rolled, RolloutPlan

    sets = [
        PlannedSet("web-b", "westeurope", ["1", "2", "3"], 30),
        PlannedSet("web-a", "westeurope", ["1", "2"], 20),
        PlannedSet("batch", "westeurope", [], 5),
        PlannedSet("api", "northeurope", ["2"], 10),
        PlannedSet("shop", "eastus", ["1"], 100),
    ]
    plan = RolloutPlan(
        Rolled("contoso/shop-os", "image contoso/shop-os", [s.name for s in sets]),
        AutomaticSettings(max_sets_per_region=2),
        {s.name: s for s in sets},
        {"gone": "not found"},
    )
    # northeurope (10 instances) is the canary; then its geo-pair and eastus (55, 100 instances).
    assert plan.phases == [["northeurope"], ["westeurope", "eastus"]]
    document = plan.to_json()
    west = document["phases"][1]["regions"][0]
    assert west["instances"] == 55
    assert [c["scaleSets"] for c in west["cohorts"]] == [["batch", "web-a"], ["web-b"]]
    assert west["cohorts"][0]["waves"] == [
        {"zone": "1", "scaleSets": ["web-a"]},
        {"zone": "2", "scaleSets": ["web-a"]},
        {"zone": "", "scaleSets": ["batch"]},
    ]
    assert [w["zone"] for w in west["cohorts"][1]["waves"]] == ["1", "2", "3"]
    assert document["leftOut"] == [{"name": "gone", "reason": "not found"}]
    lines = plan.lines()
    assert lines[0].startswith(
        "a new version of image contoso/shop-os: 5 scale set(s) in 3 region(s), 2 phase(s)"
    )
    assert "phase 1: northeurope" in lines
    assert "    web-a: 20 instance(s), zones 1, 2" in lines
    assert "    batch: 5 instance(s), regional" in lines
    assert "    cohort 1 of 2: batch, web-a" in lines
    assert "      wave 3, regional: batch" in lines
    assert "    wave 1, zone 2: api" in lines  # one cohort: no cohort line
    assert lines[-1] == "left out: gone: not found"


def test_the_plan_groups_sets_as_the_watcher_rolls_them():
    from models.automatic import Enrollment, ExtensionEnrollment
    from models.policy import UpgradePolicy
    from starter.rollout_plan import chosen_groups, rolled_groups

    gallery = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/contoso/images/shop-os"
    agent = ExtensionEnrollment(
        name="agent",
        publisher="Contoso",
        type_="Agent",
        model_version="1.2",
        automatic=True,
        installed=["1.2.0"],
    )
    latest = ImageReference(id=gallery, version="latest")

    def enrolled(name: str, location: str, image: ImageReference, **more: Any) -> Enrollment:
        return Enrollment(
            scale_set=name, policy=UpgradePolicy(), location=location, image_reference=image, **more
        )

    enrollments = [
        enrolled("b", "eastus", latest),
        enrolled("a", "westus", latest, extensions={"agent": agent}),
        enrolled("pinned", "eastus", ImageReference.parse("P:O:S:1.0.0"), note="pinned"),
    ]
    groups = rolled_groups(enrollments)
    assert [(g.key, g.title, g.scale_sets) for g in groups] == [
        ("contoso/shop-os", "image contoso/shop-os", ["a", "b"]),
        ("ext:contoso.agent/1", "extension Contoso.Agent 1.x", ["a"]),
    ]
    assert [g.key for g in chosen_groups(groups, enrollments, "contoso/shop-os", None)] == ["contoso/shop-os"]
    assert [g.key for g in chosen_groups(groups, enrollments, gallery.upper(), None)] == ["contoso/shop-os"]
    assert [g.key for g in chosen_groups(groups, enrollments, None, "ext:Contoso.Agent")] == [
        "ext:contoso.agent/1"
    ]
    assert chosen_groups(groups, enrollments, "P:O:S", None) == []  # pinned: not rolled
