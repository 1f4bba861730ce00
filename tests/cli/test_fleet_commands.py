"""`upgradectl fleet quota`: the emulator's vCPU usage and limits per region, and setting one."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers.commands import call
from tests.helpers.upgrades import make_scale_set


@pytest.mark.fast
@pytest.mark.parametrize(
    "options",
    [["--limit", "5"], ["--reset"], ["--family", "cores"], ["--family", "cores", "--limit", "1", "--reset"]],
)
def test_quota_options_that_do_not_go_together_are_refused_naming_them(offline, capsys, options):
    result = call(capsys, "fleet", "quota", "westeurope", *options)
    assert result.code == 2
    assert "--family takes either --limit N or --reset (and they need --family)" in result.err


async def test_quota_shows_the_regions_usage_and_sets_a_familys_limit(upgradectl, fleet):
    region = f"cli{uuid.uuid4().hex[:8]}"
    await make_scale_set(fleet, 3, location=region)
    family = ("--family", "standardDSv3Family")
    result = await upgradectl("fleet", "quota", region, *family, "--limit", "8", "--json")
    assert result.code == 0, result.err
    usages = {u["name"]: (u["currentValue"], u["limit"]) for u in result.json()}
    assert usages["standardDSv3Family"] == (6, 8)
    assert usages["cores"] == (6, 100_000)
    table = await upgradectl("fleet", "quota", region, *family, "--reset")
    assert "standardDSv3Family" in table.out and "100000" in table.out
    unknown = await upgradectl("fleet", "quota", region, "--family", "standardXFamily", "--limit", "1")
    assert unknown.code == 3 and "family: must be one of cores, standardBSFamily" in unknown.err
