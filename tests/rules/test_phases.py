"""Geo-pairs in the phases of a rollout (rules/phases.py) as tables: which regions pair, which
explicit phases are refused and why, and how derived phases keep pairs apart; milliseconds each.
(The staged derivation's own table is tests/rules/test_staged_phases.py.)"""

from __future__ import annotations

import pytest

from rules.phases import check_phases, flat_phases, paired, plan_phases

CUSTOM = [("alpha", "beta")]


@pytest.mark.parametrize(
    ("a", "b", "pairs", "expected"),
    [
        pytest.param("eastus", "westus", None, True, id="a published pair"),
        pytest.param("westus", "eastus", None, True, id="either way round"),
        pytest.param("EastUS", "WestUS", None, True, id="any case"),
        pytest.param("westus3", "eastus", None, True, id="a region with two pairs"),
        pytest.param("brazilsouth", "southcentralus", None, True, id="a pair listed one way only"),
        pytest.param("eastus", "northeurope", None, False, id="not paired"),
        pytest.param("qatarcentral", "eastus", None, False, id="a region without a pair"),
        pytest.param("eastus", "eastus", None, False, id="a region is not its own pair"),
        pytest.param("alpha", "beta", CUSTOM, True, id="the settings' pairs"),
        pytest.param("eastus", "westus", CUSTOM, False, id="the settings' pairs replace Azure's"),
        pytest.param("eastus", "westus", [], False, id="no pairs at all"),
    ],
)
def test_paired(a: str, b: str, pairs: list[tuple[str, str]] | None, expected: bool) -> None:
    assert paired(a, b, pairs) is expected


@pytest.mark.parametrize(
    ("phases", "pairs", "refusal"),
    [
        pytest.param([], None, None, id="no phases"),
        pytest.param([["eastus"], ["westus"]], None, None, id="a pair in two phases"),
        pytest.param([["eastus", "northeurope"]], None, None, id="unpaired regions together"),
        pytest.param(
            [["eastus", "westus"]],
            None,
            "phase 1 has eastus and westus, a geo-pair: paired regions never share a phase",
            id="a pair in one phase",
        ),
        pytest.param(
            [["uksouth"], ["northeurope", "WestEurope"]],
            None,
            "phase 2 has northeurope and WestEurope, a geo-pair",
            id="a pair in a later phase, any case",
        ),
        pytest.param([["alpha", "beta"]], CUSTOM, "phase 1 has alpha and beta", id="the settings' pair"),
        pytest.param([["eastus", "westus"]], CUSTOM, None, id="Azure's pairs replaced"),
        pytest.param([["eastus"], []], None, "phase 2 names no region", id="an empty phase"),
        pytest.param(
            [["eastus"], ["EASTUS"]],
            None,
            "region EASTUS is in phase 1 and phase 2; once only",
            id="a region twice",
        ),
    ],
)
def test_check_phases(
    phases: list[list[str]], pairs: list[tuple[str, str]] | None, refusal: str | None
) -> None:
    if refusal is None:
        check_phases(phases, pairs)
    else:
        with pytest.raises(ValueError, match=refusal):
            check_phases(phases, pairs)


@pytest.mark.parametrize(
    ("regions", "explicit", "expected"),
    [
        pytest.param(
            ["eastus", "westus", "westus3", "northeurope", "westeurope"],
            None,
            [["eastus", "northeurope"], ["westeurope", "westus", "westus3"]],
            id="each region in the first phase without its pair",
        ),
        pytest.param(
            ["eastus", "westus"], [["westus"]], [["westus"], ["eastus"]], id="explicit phases first"
        ),
    ],
)
def test_flat_phases_keep_pairs_apart(
    regions: list[str], explicit: list[list[str]] | None, expected: list[list[str]]
) -> None:
    assert flat_phases(regions, explicit) == expected


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        pytest.param(
            {"eastus": 1, "westus": 2, "westus3": 3, "uksouth": 4},
            [["eastus"], ["westus", "westus3"], ["uksouth"]],
            id="the canary's pairs wait for phase 2",
        ),
        pytest.param(
            {"westus": 1, "eastus": 2, "westus3": 3},
            [["westus"], ["eastus"], ["westus3"]],
            id="a region paired with the one taken waits for the next phase",
        ),
    ],
)
def test_staged_phases_keep_pairs_apart(instances: dict[str, int], expected: list[list[str]]) -> None:
    phases = plan_phases(instances)
    assert phases == expected
    check_phases(phases)
