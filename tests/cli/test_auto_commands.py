"""`upgradectl auto` and `upgradectl rollout` end to end (dev server, worker, emulator through the
Azure SDK): enable, show, settings, disable and the rollouts of a published version. Bad input is
tests/cli/test_auto_input.py, the rollout plan tests/cli/test_rollout_plan.py.

`upgradectl` runs through a shim that adds the two sub-apps where starter/cli.py does not add them
itself yet (the `wired` fixture does the same in this process)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from typing import Any

import pytest

from fleet.emulator.admin import EmulatorAdmin
from models.automatic import CHECK_NOW_SIGNAL, watcher_workflow_id
from models.fleet import ScaleSetSpec, TimingSpec
from models.image import ImageReference
from tests.helpers.commands import Result, assert_harmless, assert_one_line
from tests.helpers.upgrades import INSTANT, eventually

pytestmark = pytest.mark.usefixtures("wired")


# --- end to end: dev server, worker, emulator ------------------------------------------------------

# Runs `upgradectl` as the tests' `upgradectl` fixture does, with the two sub-apps added when
# starter/cli.py does not add them itself yet.
SHIM = (
    "import sys; from starter import cli; from tests.helpers.commands import wired_groups; "
    "cli.app.registered_groups = wired_groups(); cli.main()"
)


@pytest.fixture
def auto_cli(local_env, local_worker, emulator):
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
        **emulator.env(),
        "UPGRADE_TASK_QUEUE": local_worker.task_queue,
        "COLUMNS": "200",
    }

    async def run(*args: str) -> Result:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SHIM,
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        return Result(process.returncode, out.decode(), err.decode())

    return run


async def make_set(
    fleet: EmulatorAdmin,
    image: ImageReference,
    location: str,
    capacity: int = 2,
    timing: TimingSpec = INSTANT,
) -> str:
    name = f"auto-cli-{uuid.uuid4().hex[:8]}"
    await fleet.create_scale_set(
        ScaleSetSpec(name=name, location=location, capacity=capacity, image_reference=image, timing=timing)
    )
    return name


@pytest.fixture
async def fresh_watcher(local_env, local_worker):
    """The test's own watcher (one per task queue), stopped at the end: the session's dev server
    outlives the test's worker."""
    workflow_id = watcher_workflow_id(local_worker.task_queue)

    async def stop() -> None:
        handle = local_env.client.get_workflow_handle(workflow_id)
        with contextlib.suppress(Exception):  # none running
            await handle.terminate("a test's watcher")

    await stop()
    yield local_env.client.get_workflow_handle(workflow_id)
    await stop()


class Image:
    """A marketplace image of the test's own (the emulator's gallery is the session's)."""

    def __init__(self) -> None:
        self.latest = ImageReference.parse(f"Contoso:cli-{uuid.uuid4().hex[:8]}:2024:latest")

    def at(self, version: str) -> ImageReference:
        return self.latest.model_copy(update={"version": version})


async def test_enable_show_settings_and_disable(auto_cli, fresh_watcher, fleet):
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    follows = await make_set(fleet, image.latest, "westeurope")
    pinned = await make_set(fleet, image.at("1.0.0"), "northeurope")

    result = await auto_cli(
        "auto", "enable", follows, "--use-rolling-upgrade-policy", "--max-batch-instance-percent", "50",
        "--max-unhealthy-instance-percent", "50", "--not-before-timeout", "PT15M",
    )  # fmt: skip
    assert result.code == 0, result
    assert f"enrolled {follows} in automatic OS image upgrades" in result.err
    assert "notBeforeTimeout PT15M" in result.err
    assert "westeurope" in result.err
    result = await auto_cli("auto", "enable", pinned)
    assert result.code == 0, result
    assert "note: pinned to version 1.0.0: left alone" in result.err

    shown = await auto_cli("auto", "show", "--json")
    assert shown.code == 0, shown
    document = shown.json()
    assert document["watcher"] == "running"
    assert document["settings"]["pollInterval"] == "PT15M"
    by_name = {e["scaleSet"]: e for e in document["enrollments"]}
    assert set(by_name) == {follows, pinned}
    assert by_name[follows]["location"] == "westeurope"
    assert by_name[follows]["notBeforeTimeout"] == "PT15M"
    assert by_name[follows]["policy"]["rollingUpgradePolicy"]["maxBatchInstancePercent"] == 50
    # What was given is recorded: the scale set's own rolling policy decides the rest.
    assert by_name[follows]["policyGiven"] == ["maxBatchInstancePercent", "maxUnhealthyInstancePercent"]
    assert "note" not in by_name[follows]
    assert by_name[pinned]["note"].startswith("pinned to version 1.0.0")

    table = await auto_cli("auto", "show", pinned)
    assert table.code == 0, table
    assert "pinned to version 1.0.0" in table.out
    assert "northeurope" in table.out
    assert follows not in table.out
    assert "pollInterval" in table.out

    changed = await auto_cli(
        "auto",
        "settings",
        "--poll-interval",
        "PT2M",
        "--phase",
        "northeurope",
        "--phase",
        "westeurope",
        "--json",
    )
    assert changed.code == 0, changed
    assert changed.json()["pollInterval"] == "PT2M"
    assert changed.json()["phases"] == [["northeurope"], ["westeurope"]]
    again = await auto_cli("auto", "settings", "--replication-poll-interval", "PT3M", "--json")
    assert again.json() == {**changed.json(), "replicationPollInterval": "PT3M"}  # the rest kept

    refused = await auto_cli("auto", "settings", "--phase", "westeurope,northeurope")  # a geo-pair
    assert refused.code == 3, refused
    assert_harmless(refused)
    assert "phases" in refused.err

    missing = await auto_cli("auto", "enable", f"nope-{uuid.uuid4().hex[:6]}")
    assert missing.code == 3, missing
    assert len(missing.err.strip().splitlines()) == 1

    assert (await auto_cli("auto", "disable", pinned)).code == 0
    gone = await auto_cli("auto", "disable", pinned)
    assert gone.code == 5, gone
    assert "is not enrolled" in gone.err
    assert (await auto_cli("auto", "show", pinned)).code == 5


async def test_a_published_version_rolls_out_and_the_rollout_can_be_followed_and_steered(
    auto_cli, fresh_watcher, fleet
):
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    slow = TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[0, 0])
    west = await make_set(fleet, image.latest, "westeurope", timing=slow)
    north = await make_set(fleet, image.latest, "northeurope", timing=slow)
    for name in (west, north):
        result = await auto_cli("auto", "enable", name, "--health-interval", "1")
        assert result.code == 0, result
    assert (await auto_cli("rollout", "hold", "1.1.0", "--reason", "soak")).code == 5

    await fleet.publish_image(image.at("1.1.0"), ["westeurope", "northeurope"])
    await fresh_watcher.signal(CHECK_NOW_SIGNAL)

    async def listed() -> list[dict[str, Any]]:
        result = await auto_cli("rollout", "list", "--json")
        assert result.code == 0, result
        return [
            r for r in result.json()["value"] if r["version"] == "1.1.0" and image.latest.offer in r["source"]
        ]

    [summary] = await eventually(listed, bool, timeout=60)
    assert sorted(summary["scaleSets"]) == sorted([west, north])

    held = await auto_cli("rollout", "hold", "1.1.0", "--reason", "soak first")
    assert held.code == 0, held
    assert "hold requested for the rollout of" in held.out
    shown = (await auto_cli("rollout", "show", "1.1.0", "--json")).json()["value"]
    assert len(shown) == 1
    if shown[0]["state"] == "Held":  # else it ended within the hold's round trip
        assert shown[0]["hold"]["reason"] == "soak first"
        assert shown[0]["hold"]["by"]
        resumed = await auto_cli("rollout", "resume", "1.1.0")
        if resumed.code == 5:  # held in its last phase: it ends once the upgrades in flight do
            assert "no running rollout has version '1.1.0'" in resumed.err
        else:
            assert resumed.code == 0, resumed

    async def status() -> dict[str, Any]:
        shown: dict[str, Any] = (await auto_cli("rollout", "show", "1.1.0", "--json")).json()["value"][0]
        return shown

    final = await eventually(status, lambda s: s["state"] not in ("Running", "Held"), timeout=90)
    assert final["state"] == "Completed", final
    assert {s["scaleSet"]: s["state"] for s in final["sets"]} == {west: "Completed", north: "Completed"}
    assert [len(p) for p in final["phases"]] == [1, 1]  # a geo-pair: never one phase

    text = await auto_cli("rollout", "show", "1.1.0")
    assert text.code == 0, text
    for expected in ("phases", "westeurope", "northeurope", west, north, "Completed", "rolling-upgrade/"):
        assert expected in text.out, text.out
    assert (await auto_cli("rollout", "cancel", "1.1.0")).code == 5  # nothing running
    assert (await auto_cli("rollout", "show", "9.9.9")).code == 5
    listed_table = await auto_cli("rollout", "list")
    assert "1.1.0" in listed_table.out

    history = await auto_cli("history", west, "--json")
    assert history.json()["value"][0]["properties"]["startedBy"] == "Platform"


# --- rollout plan: the phases and zone waves a new version would get now --------------------------


async def test_rollout_plan_and_the_fleet_scale_settings(auto_cli, fresh_watcher, fleet):
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    names = {}
    for key, location, zones, capacity in [
        ("west-big", "westeurope", ["1", "2", "3"], 6),
        ("west-small", "westeurope", ["1", "2"], 2),
        ("west-regional", "westeurope", [], 2),
        ("north", "northeurope", ["2"], 3),
    ]:
        names[key] = f"auto-cli-{key}-{uuid.uuid4().hex[:6]}"
        await fleet.create_scale_set(
            ScaleSetSpec(
                name=names[key], location=location, capacity=capacity, zones=zones,
                image_reference=image.latest, timing=INSTANT,
            )
        )  # fmt: skip
        assert (await auto_cli("auto", "enable", names[key])).code == 0

    changed = await auto_cli(
        "auto", "settings", "--max-sets-per-region", "2", "--max-instances-per-region", "50",
        "--phase-bake-time", "PT12H", "--replication-timeout", "P2D", "--json",
    )  # fmt: skip
    assert changed.code == 0, changed
    assert {k: changed.json()[k] for k in ("maxSetsPerRegion", "maxInstancesPerRegion")} == {
        "maxSetsPerRegion": 2,
        "maxInstancesPerRegion": 50,
    }
    assert changed.json()["phaseBakeTime"] == "PT12H" and changed.json()["replicationTimeout"] == "P2D"
    shown = await auto_cli("auto", "show")
    assert shown.code == 0, shown
    for expected in (
        "maxSetsPerRegion",
        "maxInstancesPerRegion",
        "phaseBakeTime",
        "PT12H",
        "replicationTimeout",
    ):
        assert expected in shown.out, shown.out

    source = f"Contoso:{image.latest.offer}:2024"
    planned = await auto_cli("rollout", "plan", "--image", source, "--json")
    assert planned.code == 0, planned
    [plan] = planned.json()["value"]
    assert plan["rollout"] == source and plan["maxSetsPerRegion"] == 2
    # northeurope (3 instances) is the canary; westeurope, its geo-pair, the next phase.
    assert [[r["region"] for r in p["regions"]] for p in plan["phases"]] == [["northeurope"], ["westeurope"]]
    west = plan["phases"][1]["regions"][0]
    assert west["instances"] == 10
    zones_of = {s["name"]: s["zones"] for s in west["scaleSets"]}
    assert zones_of == {
        names["west-big"]: ["1", "2", "3"],
        names["west-small"]: ["1", "2"],
        names["west-regional"]: [],
    }
    in_order = sorted([names["west-big"], names["west-regional"], names["west-small"]])
    assert [c["scaleSets"] for c in west["cohorts"]] == [in_order[:2], in_order[2:]]
    for cohort in west["cohorts"]:
        waves = [w["zone"] for w in cohort["waves"]]
        assert waves == sorted(waves, key=lambda z: (z == "", z))  # zones in order, regional last

    text = await auto_cli("rollout", "plan")
    assert text.code == 0, text
    assert_harmless(text)
    for expected in (
        f"a new version of image {source}: 4 scale set(s) in 2 region(s), 2 phase(s)",
        "phase 1: northeurope",
        "phase 2: westeurope",
        f"{names['west-regional']}: 2 instance(s), regional",
        "cohort 1 of 2",
        "wave 1, zone 1",
    ):
        assert expected in text.out, text.out

    missing = await auto_cli("rollout", "plan", "--image", "contoso/nothing")
    assert missing.code == 5, missing
    assert "no enrolled scale set follows contoso/nothing" in missing.err
    assert len(missing.err.strip().splitlines()) == 1


async def test_enable_refuses_a_set_without_one_health_source_naming_the_missing_piece(
    auto_cli, fresh_watcher, fleet
):
    """Seed 000: automatic OS image upgrades need application health probes or the Application
    Health extension, one of them."""
    image = Image()
    await fleet.publish_image(image.at("1.0.0"))
    names = {}
    for source in ("none", "both", "loadBalancerProbe"):
        names[source] = f"auto-health-{uuid.uuid4().hex[:8]}"
        spec = ScaleSetSpec(
            name=names[source], capacity=2, image_reference=image.latest, timing=INSTANT, health_source=source
        )
        await fleet.create_scale_set(spec)

    bare = await auto_cli("auto", "enable", names["none"])
    assert_one_line(
        bare, 3, "has no health source", "networkProfile.healthProbe.id", "ApplicationHealthLinux"
    )
    both = await auto_cli("auto", "enable", names["both"])
    assert_one_line(both, 3, "only one source of health", f"{names['both']}-lb/probes/health")
    probed = await auto_cli("auto", "enable", names["loadBalancerProbe"])
    assert probed.code == 0, probed
    shown = await auto_cli("auto", "show", "--json")
    assert {e["scaleSet"] for e in shown.json()["enrollments"]} == {names["loadBalancerProbe"]}
