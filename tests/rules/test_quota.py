"""MaxSurge's quota check: room in the tightest of the family's and the region's vCPU quota."""

from __future__ import annotations

import pytest

from models.fleet import CoreQuota, QuotaUsage
from rules.quota import surge_room

Figures = tuple[int, int] | None  # (currentValue, limit)


def quota(family: Figures, regional: Figures, cores: int | None = 2) -> CoreQuota:
    def usage(name: str, figures: Figures) -> QuotaUsage | None:
        return None if figures is None else QuotaUsage(name=name, current_value=figures[0], limit=figures[1])

    return CoreQuota(
        location="westeurope",
        vm_size="Standard_D2s_v3",
        family="standardDSv3Family" if cores else None,
        cores_per_instance=cores,
        family_usage=usage("standardDSv3Family", family),
        regional_usage=usage("cores", regional),
    )


@pytest.mark.parametrize(
    ("family", "regional", "count", "room", "available"),
    [
        ((0, 100), (0, 100), 5, True, 100),
        ((90, 100), (0, 1000), 5, True, 10),  # exactly fits
        ((91, 100), (0, 1000), 5, False, 9),
        ((0, 1000), (96, 100), 3, False, 4),  # the region is the tightest
        ((120, 100), (0, 1000), 1, False, 0),  # over the limit already: nothing free
    ],
)
def test_room_is_the_tightest_of_the_family_and_the_region(family, regional, count, room, available):
    result = surge_room(quota(family, regional), count)
    assert (result.room, result.needed_cores, result.available_cores) == (room, count * 2, available)
    assert (result.detail is None) == room


def test_no_room_says_which_quota_and_the_figures():
    result = surge_room(quota((8, 10), (8, 100)), 2)
    assert result.detail == (
        "standardDSv3Family vCPUs in westeurope: 8 of the limit 10 in use, 2 free; "
        "2 new Standard_D2s_v3 instance(s) need 4"
    )
    regional = surge_room(quota((0, 100), (9, 10)), 1)
    assert (regional.detail or "").startswith("total regional vCPUs (cores) in westeurope")


def test_an_unknown_size_or_a_missing_usage_is_no_room():
    assert not surge_room(quota((0, 10), (0, 10), cores=None), 1).room
    missing = surge_room(quota(None, (0, 10)), 1)
    assert not missing.room and "standardDSv3Family vCPUs" in (missing.detail or "")
