"""A region's zone waves (rules/waves.py, RegionWaves) as the rollout decides them: a wave waits for
every started set to report, then goes zone by zone; the region's cap; regional instances; a
scale-out into a passed zone; held and stopping; pure."""

from __future__ import annotations

import pytest

from models.upgrade import WaveReport
from rules.waves import RegionWaves


def report(name: str, zones: dict[str, int], batch: int = 1, done: str | None = None) -> WaveReport:
    return WaveReport(scale_set=name, zones=zones, batch=batch, done=done)


def test_a_wave_waits_for_every_started_set_to_report_then_goes_zone_by_zone():
    waves = RegionWaves("westeurope", ["b", "a", "c"], max_instances=100)
    waves.report(report("a", {"1": 2, "2": 2}))
    waves.report(report("b", {"2": 1, "": 0}))
    decision = waves.decide(held=False, stopping=False)
    assert decision.permits == [("a", "1")]  # zone 1 first: b has nothing there
    waves.apply(decision)
    waves.report(report("b", {"2": 1}))
    assert waves.decide(held=False, stopping=False).permits == []  # zone 1 in flight: b waits
    waves.report(report("a", {"2": 2}, done="1"))
    decision = waves.decide(held=False, stopping=False)
    assert decision.permits == [("a", "2"), ("b", "2")] and waves.zone == "1"
    waves.apply(decision)
    assert waves.zone == "2" and waves.waves == 2
    waves.ended("c")
    waves.ended("a")
    waves.ended("b")
    assert waves.finished


@pytest.mark.parametrize(
    ("cap", "batches", "permitted"),
    [
        pytest.param(10, {"a": 4, "b": 4, "c": 4}, ["a", "b"], id="the cap holds the third back"),
        pytest.param(12, {"a": 4, "b": 4, "c": 4}, ["a", "b", "c"], id="all fit"),
        pytest.param(3, {"a": 4, "b": 1}, ["a"], id="a batch over the cap still goes, alone"),
        pytest.param(1, {"a": 1, "b": 1}, ["a"], id="one instance at a time"),
    ],
)
def test_the_region_cap_bounds_the_instances_in_flight(cap, batches, permitted):
    waves = RegionWaves("eastus", list(batches), max_instances=cap)
    for name, batch in batches.items():
        waves.report(report(name, {"1": 10}, batch=batch))
    assert [name for name, _ in waves.decide(held=False, stopping=False).permits] == permitted


@pytest.mark.parametrize(
    ("cap", "batches", "permitted"),
    [
        pytest.param(100, {"a": 2, "b": 5, "c": 3}, ["b", "c", "a"], id="largest batch first"),
        pytest.param(100, {"b": 3, "a": 3, "c": 4}, ["c", "a", "b"], id="equal batches in name order"),
        pytest.param(8, {"a": 2, "b": 5, "c": 3}, ["b", "c"], id="under the cap the larger go"),
        pytest.param(100, {"a": 9, "b": 4}, ["b", "a"], id="only what its zone has left counts"),
    ],
)
def test_largest_first_permits_the_sets_likely_to_take_longest_first(cap, batches, permitted):
    waves = RegionWaves("eastus", list(batches), max_instances=cap)
    for name, batch in batches.items():
        waves.report(report(name, {"1": 3 if batch == 9 else 10}, batch=batch))
    decision = waves.decide(held=False, stopping=False, largest_first=True)
    assert [name for name, _ in decision.permits] == permitted


def test_regional_instances_make_a_wave_of_their_own_after_the_zones():
    waves = RegionWaves("eastus", ["zonal", "regional"], max_instances=100)
    waves.report(report("zonal", {"2": 1}))
    waves.report(report("regional", {"": 3}))
    decision = waves.decide(held=False, stopping=False)
    assert decision.permits == [("zonal", "2")]
    waves.apply(decision)
    waves.ended("zonal")
    assert waves.decide(held=False, stopping=False).permits == [("regional", "")]


def test_a_scale_out_into_a_passed_zone_gets_another_wave_of_it():
    waves = RegionWaves("eastus", ["a"], max_instances=100)
    waves.report(report("a", {"1": 1, "2": 1}))
    waves.apply(waves.decide(held=False, stopping=False))
    waves.report(report("a", {"2": 1}, done="1"))
    waves.apply(waves.decide(held=False, stopping=False))
    waves.report(report("a", {"1": 2}, done="2"))  # instances added in zone 1 meanwhile
    assert waves.decide(held=False, stopping=False).permits == [("a", "1")]


def test_held_permits_nothing_and_stopping_cancels_every_started_set_once():
    waves = RegionWaves("eastus", ["a", "b", "c"], max_instances=100)
    waves.report(report("a", {"1": 1}))
    waves.started("b")  # admitting: no report yet
    assert not waves.decide(held=True, stopping=False)
    decision = waves.decide(held=False, stopping=True)
    assert decision.cancels == ["a", "b"] and decision.permits == []
    waves.apply(decision)
    assert not waves.decide(held=False, stopping=True)  # asked once


def test_sets_starting_together_are_opened_into_zone_1_with_an_even_share_of_the_cap():
    waves = RegionWaves("eastus", ["a", "b", "c", "d"], max_instances=40)
    assert [waves.open(name) for name in ("a", "b", "c", "d")] == [10, 10, 10, 10]
    assert waves.zone == "1" and waves.waves == 1
    assert "the first batches of 4 set(s)" in waves.text()
    # A set with nothing in zone 1 says so at once and waits; zone 1 goes on without it.
    waves.report(report("d", {"2": 5}, batch=5, done="1"))
    assert waves.decide(held=False, stopping=False).permits == []
    # A batch larger than its share: the set reports first, and waits for room under the cap,
    # the opened sets counting their shares until they report.
    waves.report(report("c", {"1": 25}, batch=25))
    assert waves.decide(held=False, stopping=False).permits == []  # 10 + 10 in flight, + 25 > 40
    waves.report(report("a", {"2": 3}, batch=3, done="1"))
    decision = waves.decide(held=False, stopping=False)
    assert decision.permits == [("c", "1")]  # zone 1 still: c has instances there
    waves.apply(decision)
    assert "the first batches of 1 set(s), and up to 25 instances" in waves.text()
    waves.report(report("b", {"2": 3}, batch=3, done="1"))
    waves.report(report("c", {"2": 1}, batch=25, done="1"))
    decision = waves.decide(held=False, stopping=False)
    assert decision.permits == [("a", "2"), ("b", "2"), ("c", "2"), ("d", "2")]


def test_no_opening_once_another_wave_began_nor_past_the_cap_and_a_set_that_waits_for_its_lock_closes_it():
    waves = RegionWaves("eastus", ["a", "b", "c"], max_instances=2)  # a share of 1 each
    assert waves.open("a") == 1 and waves.open("b") == 1
    assert waves.open("c") is None  # the cap is full: c reports first
    waves.started("a")
    # Stopping cancels the sets that started, never one whose start has not succeeded (b's
    # workflow id may be another upgrade's, which holds the set).
    assert waves.decide(held=False, stopping=True).cancels == ["a"]
    waves.close("b")  # another upgrade held b: it reports first after all
    assert [m.scale_set for m in waves.in_flight()] == ["a"]
    waves.report(report("b", {"1": 1, "2": 1}))
    waves.report(report("c", {"2": 1}))
    waves.report(report("a", {"2": 1}, done="1"))
    decision = waves.decide(held=False, stopping=False)
    assert decision.permits == [("b", "1")]
    waves.apply(decision)
    waves.report(report("b", {"2": 1}, done="1"))
    waves.apply(waves.decide(held=False, stopping=False))
    assert waves.zone == "2"
    late = RegionWaves("eastus", ["x"], max_instances=10)
    late.zone = "2"
    assert late.open("x") is None  # zone 2 in flight: never zone 1 beside it
