"""Health as Azure's Application Health extension reads it: each kind of endpoint through the
emulator over HTTP, and the probers' counting of consecutive answers (numberOfProbes) and the grace
period, as activities. (Every protocol x mode x answer as a table: tests/models/test_health.py.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.fleet_activities import FleetActivities
from fleet.protocol import FleetBackend
from models import steps
from models.fleet import HealthExtensionSpec, HealthState, TimingSpec
from models.policy import ApplicationHealthSettings
from tests.helpers.upgrades import V2, eventually, make_scale_set

HEALTHY, UNHEALTHY, UNKNOWN = HealthState.HEALTHY, HealthState.UNHEALTHY, HealthState.UNKNOWN


# --- each kind of endpoint, as the emulated extension reports it through ARM -----------------

RICH = ApplicationHealthSettings()
BINARY = ApplicationHealthSettings(health_states="binary")
TCP = ApplicationHealthSettings(protocol="tcp", port=8080)
TCP_BINARY = ApplicationHealthSettings(protocol="tcp", port=8080, health_states="binary")


def extension(settings: ApplicationHealthSettings) -> HealthExtensionSpec:
    """The scale set's Application Health extension configured as `settings` say."""
    return HealthExtensionSpec(
        protocol=settings.protocol,
        port=settings.port,
        request_path=settings.request_path or "",
        rich=settings.health_states == "rich",
    )


@pytest.mark.parametrize(
    ("endpoint", "settings", "answers"),
    [
        # the application's state → what the extension reports in the instance view (vmHealth)
        ("rich", RICH, {"Healthy": HEALTHY, "Unhealthy": UNHEALTHY, "Unknown": UNKNOWN, "Down": UNKNOWN}),
        (
            "binary",
            BINARY,
            {"Healthy": HEALTHY, "Unhealthy": UNHEALTHY, "Unknown": UNHEALTHY, "Down": UNHEALTHY},
        ),
        # a plain-200 endpoint probed by an extension with rich states: never Healthy
        ("binary", RICH, {"Healthy": UNKNOWN, "Unhealthy": UNKNOWN, "Unknown": UNKNOWN, "Down": UNKNOWN}),
        ("rich", BINARY, {"Healthy": HEALTHY, "Unhealthy": HEALTHY, "Unknown": UNHEALTHY, "Down": UNHEALTHY}),
        ("rich", TCP, {"Healthy": HEALTHY, "Unhealthy": UNHEALTHY, "Unknown": UNHEALTHY, "Down": UNHEALTHY}),
        (
            "binary",
            TCP_BINARY,
            {"Healthy": HEALTHY, "Unhealthy": UNHEALTHY, "Unknown": UNHEALTHY, "Down": UNHEALTHY},
        ),
    ],
)
async def test_each_kind_of_endpoint_reads_as_azure_reads_it(fleet, azure, endpoint, settings, answers):
    name = await make_scale_set(fleet, 1, app_endpoint=endpoint, health_extension=extension(settings))
    await fleet.set_probe_answers(name, "0", list(answers))
    # Each read of the instance view through the SDK is one probe of the extension.
    seen = {answer: (await azure.get_instance(name, "0")).health for answer in answers}
    assert seen == answers
    # With the script used up, the endpoint answers from the instance's state again.
    assert (await azure.get_instance(name, "0")).health == answers["Healthy"]


async def test_a_binary_endpoint_answers_plain_200_when_healthy_and_503_when_not(emulator, fleet, azure):
    import ssl

    import httpx

    name = await make_scale_set(fleet, 2, app_endpoint="binary")
    await fleet.set_health(name, "1", UNHEALTHY)
    trust = ssl.create_default_context(cafile=str(emulator.ca_file))
    async with httpx.AsyncClient(base_url=emulator.url, verify=trust) as http:
        healthy = await http.get(f"/vm/{name}/0/health")
        failing = await http.get(f"/vm/{name}/1/health")
        refused = await http.get(f"/vm/{name}/9/health")
    assert (healthy.status_code, healthy.text) == (200, "OK")
    assert failing.status_code == 503
    assert refused.headers["X-Emulated-Connection"] == "refused"
    reading = await azure.read_health(name)
    assert reading.health == {"0": HEALTHY, "1": UNHEALTHY}


# --- numberOfProbes and gracePeriod: the probers as activities against the emulator -----------


def quick(**settings: object) -> ApplicationHealthSettings:
    return ApplicationHealthSettings(
        interval_in_seconds=1, health_wait_timeout=timedelta(seconds=30), **settings
    )


async def run(
    backend: FleetBackend, activity: str, name: str, settings: ApplicationHealthSettings, grace: float = 0.0
) -> tuple[Any, list[Any]]:
    activities = FleetActivities(backend)
    request = steps.HealthInput(
        scale_set=name, instance_id="0", health=settings, grace_remaining_seconds=grace
    )
    env = ActivityEnvironment()
    heartbeats: list[object] = []
    env.on_heartbeat = lambda *details: heartbeats.extend(details)
    result = await env.run(getattr(activities, activity), request)
    return result, heartbeats


async def test_the_extension_counts_number_of_probes_and_the_prober_takes_its_verdict(fleet, azure):
    """Azure's extension reports Healthy only after numberOfProbes Healthy answers in a row (and
    Initializing until then): the emulated one too, and the prober does not count again."""
    name = await make_scale_set(fleet, 1, health_extension=HealthExtensionSpec(number_of_probes=2))
    await fleet.set_probe_answers(name, "0", ["Healthy", "Unhealthy", "Healthy", "Down", "Healthy"])
    result, heartbeats = await run(azure, "wait_for_health", name, quick(), grace=30)
    # One Healthy answer among failures is not enough: the 5th and 6th answers are the pair.
    assert (result.state, result.probes) == (HEALTHY, 6)
    assert {h["detail"] for h in heartbeats} == {"vmHealth HealthState/initializing: The VM is initializing"}


async def test_the_prober_does_not_count_number_of_probes_again_on_top_of_the_extension(fleet, azure):
    """The request's numberOfProbes describes the extension; on Azure the model's extension
    counts (here 1): one Healthy look is healthy, one failing look after the grace is final."""
    name = await make_scale_set(fleet, 1)
    result, _ = await run(azure, "wait_for_health", name, quick(number_of_probes=3))
    assert (result.state, result.probes) == (HEALTHY, 1)
    await fleet.set_probe_answers(name, "0", ["Unhealthy", "Healthy"])
    result, _ = await run(azure, "wait_for_health", name, quick(number_of_probes=3))
    assert (result.state, result.probes) == (UNHEALTHY, 1)
    result, heartbeats = await run(azure, "probe_health", name, quick(number_of_probes=3))
    assert (result.state, result.probes, len(heartbeats)) == (HEALTHY, 1, 1)


async def test_the_extension_turns_unhealthy_after_number_of_probes_failures_in_a_row(fleet, azure):
    name = await make_scale_set(fleet, 1, health_extension=HealthExtensionSpec(number_of_probes=2))
    await fleet.set_probe_answers(name, "0", ["Unhealthy", "Healthy", "Unhealthy", "Unhealthy"])
    result, _ = await run(azure, "wait_for_health", name, quick())
    # Initializing (still counting) for three looks; the 3rd and 4th answers agree.
    assert (result.state, result.probes) == (UNHEALTHY, 4)


async def test_failures_inside_the_grace_period_are_initializing_not_final(fleet, azure):
    name = await make_scale_set(fleet, 1)
    await fleet.set_probe_answers(name, "0", ["Down", "Unhealthy", "Down", "Healthy"])
    result, heartbeats = await run(azure, "wait_for_health", name, quick(), grace=3.5)
    assert (result.state, result.probes) == (HEALTHY, 4)
    # Inside the grace period each answer (Down, Unhealthy, Down: each a new detail) reads
    # Initializing.
    assert [h["state"] for h in heartbeats] == ["Initializing"] * 3
    # Without a grace period the first failure is final.
    await fleet.set_probe_answers(name, "0", ["Down", "Healthy"])
    result, _ = await run(azure, "wait_for_health", name, quick(), grace=0)
    assert (result.state, result.probes) == (UNKNOWN, 1)


@pytest.mark.parametrize(
    ("answers", "state"),
    [(["Healthy"], HEALTHY), (["Unhealthy", "Healthy"], UNHEALTHY), (["Down", "Healthy"], UNKNOWN)],
)
async def test_the_last_look_at_the_deadline_is_the_extensions_verdict(fleet, answers, state, azure):
    name = await make_scale_set(fleet, 1)
    await fleet.set_probe_answers(name, "0", answers)
    result, heartbeats = await run(azure, "probe_health", name, quick(number_of_probes=3))
    assert (result.state, result.probes, len(heartbeats)) == (state, 1, 1)


async def test_an_instance_booting_reads_initializing_and_stopped_reads_unknown(fleet, azure):
    timing = TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[5, 5])
    name = await make_scale_set(fleet, 1, timing=timing)
    await azure.begin_reimage(name, "0", V2.at_version(V2.version))
    assert (await azure.get_instance(name, "0")).health == UNKNOWN  # stopped for its reimage
    await eventually(lambda: azure.get_instance(name, "0"), lambda i: not i.busy)
    assert (await fleet.show_scale_set(name)).instances[0].health == HealthState.INITIALIZING
    assert (await azure.read_health(name)).health["0"] == HealthState.INITIALIZING
    assert (await azure.get_instance(name, "0")).health == HealthState.INITIALIZING
