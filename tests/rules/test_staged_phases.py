"""Phases across regions and zone waves within a region (rules/phases.py): pure, table-tested.

Staged derived phases: one canary region (the fewest enrolled instances, ties by name), then up
to 2, 4, 8, ... regions by instances ascending then name; geo-pairs never in one phase; explicit
phases first. Within a region: cohorts of at most max_sets_per_region sets in name order, each in
zone waves (zones in natural order, then the regional sets)."""

from __future__ import annotations

import itertools
import random

import pytest

from models.upgrade import REGIONAL
from rules.phases import (
    check_phases,
    flat_phases,
    plan_phases,
)
from rules.waves import cohorts, region_waves, set_zones_of, wave_sets, zone_waves

NO_PAIRS: list[tuple[str, str]] = []
# Twenty regions, r01..r20, region rN with N*10 instances (so the order by instances is by name).
TWENTY = {f"r{n:02d}": n * 10 for n in range(1, 21)}


@pytest.mark.parametrize(
    ("instances", "explicit", "pairs", "expected"),
    [
        pytest.param({}, None, NO_PAIRS, [], id="no regions"),
        pytest.param({"eastus": 30}, None, None, [["eastus"]], id="one region"),
        pytest.param(
            {"eastus": 30, "japaneast": 4},
            None,
            None,
            [["japaneast"], ["eastus"]],
            id="two: the smaller first",
        ),
        pytest.param(
            {"eastus": 5, "westus": 5}, None, None, [["eastus"], ["westus"]], id="two: a tie goes by name"
        ),
        pytest.param(
            {"a": 3, "b": 1, "c": 2}, None, NO_PAIRS, [["b"], ["c", "a"]], id="three: canary, then two"
        ),
        pytest.param(
            {f"r{n}": 10 for n in range(1, 8)},
            None,
            NO_PAIRS,
            [["r1"], ["r2", "r3"], ["r4", "r5", "r6", "r7"]],
            id="seven: 1, 2, 4",
        ),
        pytest.param(
            TWENTY,
            None,
            NO_PAIRS,
            [
                ["r01"],
                ["r02", "r03"],
                ["r04", "r05", "r06", "r07"],
                [f"r{n:02d}" for n in range(8, 16)],
                [f"r{n:02d}" for n in range(16, 21)],
            ],
            id="twenty: 1, 2, 4, 8, the last 5",
        ),
        pytest.param(
            {"northeurope": 10, "westeurope": 20, "eastus": 30},
            None,
            None,
            [["northeurope"], ["westeurope", "eastus"]],
            id="the canary's pair may follow in the next phase",
        ),
        pytest.param(
            {"northeurope": 10, "westeurope": 11, "eastus": 12, "westus": 13, "uksouth": 14, "ukwest": 15},
            None,
            None,
            [["northeurope"], ["westeurope", "eastus"], ["westus", "uksouth"], ["ukwest"]],
            id="a pair already in the phase being filled waits (and keeps its place in line)",
        ),
        pytest.param(
            {"a": 1, "b": 2, "c": 3, "d": 4},
            None,
            [("b", "c")],
            [["a"], ["b", "d"], ["c"]],
            id="a region paired with one in the phase waits, a later region takes its place",
        ),
        pytest.param(
            {"eastus": 1, "westus": 2, "westus3": 3},
            None,
            None,
            [["eastus"], ["westus", "westus3"]],
            id="a region paired with two others",
        ),
        pytest.param(
            {"a": 1, "b": 2},
            None,
            [("a", "b")],
            [["a"], ["b"]],
            id="own pairs",
        ),
        pytest.param(
            {"a": 1, "b": 1, "c": 1, "d": 1},
            None,
            [("b", "c"), ("b", "d"), ("c", "d")],
            [["a"], ["b"], ["c"], ["d"]],
            id="pairs all around: one region a phase, never an empty phase",
        ),
        pytest.param(
            {"EastUS": 7, "westeurope": 2},
            None,
            None,
            [["westeurope"], ["eastus"]],
            id="names compared lowercased",
        ),
        pytest.param(
            {"eastus": 0, "westeurope": 0, "japaneast": 0},
            None,
            None,
            [["eastus"], ["japaneast", "westeurope"]],
            id="unknown counts (0) go by name",
        ),
        pytest.param(
            {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6},
            [["f", "e"], ["zz"], ["d"]],
            NO_PAIRS,
            [["f", "e"], ["d"], ["a"], ["b", "c"]],
            id="explicit first (regions not in use dropped), then staged for the rest",
        ),
        pytest.param(
            {"a": 1, "b": 2},
            [["b", "a"]],
            NO_PAIRS,
            [["b", "a"]],
            id="explicit naming every region: nothing derived",
        ),
        pytest.param(
            {"northeurope": 1, "westeurope": 2, "eastus": 3, "westus": 4},
            [["eastus"]],
            None,
            [["eastus"], ["northeurope"], ["westeurope", "westus"]],
            id="explicit, then staged with pairs apart",
        ),
    ],
)
def test_staged_phases(instances, explicit, pairs, expected):
    phases = plan_phases(instances, explicit, pairs)
    assert phases == expected
    check_phases(phases, pairs)  # no empty phase, each region once, no geo-pair together


@pytest.mark.parametrize("seed", range(5))
def test_the_plan_is_the_same_whatever_the_input_order(seed):
    regions = {"eastus": 5, "westus": 5, "westus3": 9, "northeurope": 1, "westeurope": 1, "uksouth": 3}
    items = list(regions.items())
    random.Random(seed).shuffle(items)
    assert plan_phases(dict(items)) == plan_phases(regions)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 20, 40])
def test_every_region_once_phases_grow_and_pairs_stay_apart(count):
    """Azure's paired regions, as many as asked, with instance counts that tie often."""
    from rules.phases import AZURE_GEO_PAIRS

    names = sorted({r for pair in AZURE_GEO_PAIRS for r in pair})[:count]
    instances = {name: (i * 7) % 5 for i, name in enumerate(names)}
    phases = plan_phases(instances)
    check_phases(phases)
    assert sorted(itertools.chain(*phases)) == sorted(names)
    assert len(phases[0]) == 1
    assert phases[0] == [min(names, key=lambda r: (instances[r], r))]  # the canary
    for number, phase in enumerate(phases):
        assert 1 <= len(phase) <= 2**number


@pytest.mark.parametrize(
    "pair",
    [
        ("brazilsoutheast", "brazilsouth"),
        ("brazilsouth", "southcentralus"),
        ("westus3", "eastus"),
        ("westindia", "southindia"),
        ("jioindiawest", "jioindiacentral"),
        ("chinanorth2", "chinaeast2"),
        ("usgovarizona", "usgovtexas"),
    ],
)
def test_every_published_pair_stays_apart_including_the_one_way_ones(pair):
    with pytest.raises(ValueError, match="geo-pair"):
        check_phases([list(pair)], None)
    phases = plan_phases(dict.fromkeys(pair, 10))
    assert len(phases) == 2 and {r for phase in phases for r in phase} == set(pair)


def test_the_flat_derivation_is_kept_for_watchers_that_replay_it():
    regions = ["westeurope", "eastus", "northeurope", "japaneast", "westus"]
    assert flat_phases(regions) == [["eastus", "japaneast", "northeurope"], ["westeurope", "westus"]]
    assert flat_phases(regions, [["westus"]]) == [
        ["westus"],
        ["eastus", "japaneast", "northeurope"],
        ["westeurope"],
    ]


# --- within a region ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("set_zones", "expected"),
    [
        pytest.param({}, [], id="no sets"),
        pytest.param({"a": ["1", "2", "3"]}, ["1", "2", "3"], id="one zonal set"),
        pytest.param({"a": []}, [REGIONAL], id="one regional set"),
        pytest.param({"a": ["3"], "b": ["1"], "c": []}, ["1", "3", REGIONAL], id="zones, then regional"),
        pytest.param({"a": ["10", "2"], "b": ["1"]}, ["1", "2", "10"], id="natural order"),
        pytest.param({"a": ["2", "1"], "b": ["2", "3"]}, ["1", "2", "3"], id="the zones of every set"),
    ],
)
def test_zone_waves(set_zones, expected):
    assert zone_waves(set_zones) == expected


def test_wave_sets_are_the_sets_in_that_zone_in_name_order():
    set_zones = {"web-b": ["1", "2"], "Web-a": ["2"], "api": [], "db": ["3", "1"]}
    assert wave_sets(set_zones, "1") == ["db", "web-b"]
    assert wave_sets(set_zones, "2") == ["Web-a", "web-b"]
    assert wave_sets(set_zones, "3") == ["db"]
    assert wave_sets(set_zones, REGIONAL) == ["api"]


def test_a_sets_zones_are_its_instances_zones():
    assert set_zones_of(["2", "1", "2", None, "10"]) == ["1", "2", "10"]
    assert set_zones_of([None, None]) == []


@pytest.mark.parametrize(
    ("sets", "size", "expected"),
    [
        pytest.param([], 20, [], id="none"),
        pytest.param(["c", "a", "b"], 20, [["a", "b", "c"]], id="all at once, name order"),
        pytest.param(["c", "a", "b"], 1, [["a"], ["b"], ["c"]], id="one at a time"),
        pytest.param(["e", "d", "c", "b", "a"], 2, [["a", "b"], ["c", "d"], ["e"]], id="groups of two"),
        pytest.param(["B", "a", "c"], 2, [["a", "B"], ["c"]], id="case-insensitive name order"),
    ],
)
def test_cohorts(sets, size, expected):
    assert cohorts(sets, size) == expected


def test_a_cohort_holds_at_least_one_set():
    with pytest.raises(ValueError, match="at least 1"):
        cohorts(["a"], 0)


def test_each_cohort_runs_its_own_zone_waves():
    set_zones = {"c": [], "a": ["1", "2"], "b": ["2", "3"], "d": ["1"]}
    assert region_waves(set_zones, 2) == [
        [("1", ["a"]), ("2", ["a", "b"]), ("3", ["b"])],
        [("1", ["d"]), (REGIONAL, ["c"])],
    ]
    assert region_waves(set_zones, 20) == [
        [("1", ["a", "d"]), ("2", ["a", "b"]), ("3", ["b"]), (REGIONAL, ["c"])],
    ]
