"""Health as Azure's Application Health extension reads it: every protocol x mode x answer as a
table, then each kind of endpoint through the emulator over HTTP, and the probers' counting of
consecutive answers (numberOfProbes) and the grace period, as activities."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.fleet_activities import FleetActivities, on_cadence
from activities.heartbeats import LIVENESS_SECONDS, Heartbeat
from fleet.protocol import FleetBackend
from models import steps
from models.base import describe_validation_error
from models.fleet import HealthExtensionSpec, HealthReading, HealthState, ScaleSetView, TimingSpec
from models.health import interpret
from models.policy import ApplicationHealthSettings, UpgradePolicy
from tests.helpers import V2, eventually, make_scale_set

HEALTHY, UNHEALTHY, UNKNOWN = HealthState.HEALTHY, HealthState.UNHEALTHY, HealthState.UNKNOWN


def rich(state: object, **extra: object) -> str:
    return json.dumps({"ApplicationHealthState": state, **extra})


METRICS = json.dumps({"rollingUpgrade": {"PhaseOrderingNumber": 3, "SkipUpgrade": True}})

# (protocol, mode, status (None: no connection / timeout), body, expected state)
TABLE = [
    # binary (extension v1, load-balancer style): 2xx is Healthy, anything else Unhealthy
    ("http", "binary", 200, "", HEALTHY),
    ("http", "binary", 200, "OK", HEALTHY),
    ("https", "binary", 204, None, HEALTHY),
    ("http", "binary", 200, rich("Unhealthy"), HEALTHY),  # the body means nothing in binary
    ("http", "binary", 301, "", UNHEALTHY),
    ("http", "binary", 404, "", UNHEALTHY),
    ("http", "binary", 503, "Service Unavailable", UNHEALTHY),
    ("https", "binary", 500, rich("Healthy"), UNHEALTHY),
    ("http", "binary", None, None, UNHEALTHY),
    ("https", "binary", None, None, UNHEALTHY),
    # rich states (extension v2): the body's state on a 2xx; Unknown otherwise
    ("http", "rich", 200, rich("Healthy"), HEALTHY),
    ("https", "rich", 200, rich("Healthy"), HEALTHY),
    ("http", "rich", 202, rich("Healthy"), HEALTHY),
    ("http", "rich", 200, rich("Unhealthy"), UNHEALTHY),
    ("https", "rich", 200, rich("Unhealthy"), UNHEALTHY),
    ("http", "rich", 200, "", UNKNOWN),  # a plain 200: no state
    ("http", "rich", 200, None, UNKNOWN),
    ("http", "rich", 200, "OK", UNKNOWN),
    ("http", "rich", 200, "[]", UNKNOWN),
    ("http", "rich", 200, json.dumps({"status": "Healthy"}), UNKNOWN),
    ("http", "rich", 200, rich("Initializing"), UNKNOWN),  # the extension's state, not an answer
    ("http", "rich", 200, rich("Unknown"), UNKNOWN),
    ("http", "rich", 200, rich("healthy"), UNKNOWN),
    ("http", "rich", 200, rich(None), UNKNOWN),
    ("http", "rich", 200, rich(1), UNKNOWN),
    ("http", "rich", 503, rich("Unhealthy"), UNKNOWN),
    ("http", "rich", 500, rich("Healthy"), UNKNOWN),
    ("https", "rich", 404, "", UNKNOWN),
    ("http", "rich", 302, "", UNKNOWN),
    ("http", "rich", None, None, UNKNOWN),
    ("https", "rich", None, None, UNKNOWN),
    # TCP, either mode: a connect is Healthy, a refused or failed one Unhealthy
    ("tcp", "binary", 200, "", HEALTHY),
    ("tcp", "rich", 200, "", HEALTHY),
    ("tcp", "rich", 503, rich("Unhealthy"), HEALTHY),  # it connected; that is all TCP knows
    ("tcp", "binary", None, None, UNHEALTHY),
    ("tcp", "rich", None, None, UNHEALTHY),
]


@pytest.mark.parametrize(("protocol", "mode", "status", "body", "expected"), TABLE)
def test_interpret_reads_an_answer_as_the_extension_does(protocol, mode, status, body, expected):
    probe = interpret(protocol, mode, status, body)
    assert probe.state == expected
    assert probe.state != HealthState.INITIALIZING  # only the extension itself says that
    assert probe.detail


@pytest.mark.parametrize(
    ("body", "phase", "skip", "note"),
    [
        (rich("Healthy", customMetrics=METRICS), 3, True, None),
        (rich("Unhealthy", customMetrics=METRICS), 3, True, None),
        (
            rich("Healthy", customMetrics=json.dumps({"rollingUpgrade": {"PhaseOrderingNumber": 1}})),
            1,
            False,
            None,
        ),
        (
            rich(
                "Healthy", customMetrics=json.dumps({"rollingUpgrade": {"PhaseOrderingNumber": 1, "New": 2}})
            ),
            1,
            False,
            None,
        ),
        (rich("Healthy", customMetrics="{}"), None, False, None),
        (rich("Healthy", customMetrics="not json"), None, False, "customMetrics ignored"),
        (rich("Healthy", customMetrics=json.dumps([1])), None, False, "customMetrics ignored"),
        # an object, not a JSON string: not what the extension accepts
        (
            rich("Healthy", customMetrics={"rollingUpgrade": {"PhaseOrderingNumber": 2}}),
            None,
            False,
            "JSON string",
        ),
        (
            rich("Healthy", customMetrics=json.dumps({"rollingUpgrade": {"SkipUpgrade": "maybe"}})),
            None,
            False,
            "invalid",
        ),
    ],
)
def test_custom_metrics_come_as_a_json_string_with_rich_states(body, phase, skip, note):
    probe = interpret("http", "rich", 200, body)
    assert probe.state in (HEALTHY, UNHEALTHY)  # unreadable metrics never change the state
    assert probe.custom_metrics.phase_ordering_number == phase
    assert probe.custom_metrics.skip_upgrade is skip
    if note:
        assert note in probe.detail
    # Binary endpoints have no custom metrics.
    assert interpret("http", "binary", 200, body).custom_metrics.phase_ordering_number is None


def test_the_health_mode_is_a_setting_with_a_default_and_a_clear_refusal():
    assert ApplicationHealthSettings().health_states == "rich"
    binary = ApplicationHealthSettings.model_validate({"healthStates": "binary"})
    assert binary.health_states == "binary"
    assert binary.to_json()["healthStates"] == "binary"
    with pytest.raises(ValidationError) as err:
        UpgradePolicy.model_validate({"applicationHealth": {"healthStates": "fancy"}})
    assert describe_validation_error(err.value) == (
        "applicationHealth.healthStates: must be rich or binary (got 'fancy')"
    )


def test_payloads_between_workflows_and_activities_ignore_fields_they_do_not_know():
    health = {"protocol": "http", "numberOfProbes": 2, "probeJitter": "PT1S"}
    request = steps.HealthInput.model_validate(
        {"scaleSet": "web", "instanceId": "3", "health": health, "priority": "high"}
    )
    assert (request.instance_id, request.health.number_of_probes) == ("3", 2)
    assert steps.HealthResult.model_validate({"state": "Healthy", "latencyMs": 4}).state == HEALTHY
    assert (
        steps.ReimageInput.model_validate(
            {"scaleSet": "web", "instanceId": "1", "image": V2.to_json(), "operationId": "x", "surge": 1}
        ).operation_id
        == "x"
    )
    reading = HealthReading.model_validate({"health": {"0": "Healthy"}, "phases": {}, "generation": 7})
    assert reading.health == {"0": HEALTHY}
    view = ScaleSetView.model_validate(
        {
            "name": "web",
            "id": "/x",
            "location": "westeurope",
            "imageReference": V2.to_json(),
            "sku": {"name": "Standard_D2s_v5"},
            "instances": [
                {
                    "instanceId": "0",
                    "imageReference": V2.to_json(),
                    "osDisk": {"name": "d", "imageReference": V2.to_json()},
                    "customMetrics": {"PhaseOrderingNumber": 1, "Weight": 5},
                    "tags": {},
                }
            ],
        }
    )
    assert view.instances[0].custom_metrics.phase_ordering_number == 1
    # What a user writes still refuses a typo.
    with pytest.raises(ValidationError):
        ApplicationHealthSettings.from_user({"probeJitter": "PT1S"})


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


def test_heartbeats_say_news_at_once_and_otherwise_only_keep_the_activity_alive():
    """Each heartbeat is a write on the Temporal server (a billed action on Temporal Cloud): the
    same details again go out only every LIVENESS_SECONDS, well inside the 10 s timeout."""
    now = [100.0]
    sent: list[dict[str, object]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: sent.append(details[0])

    def probing() -> None:
        beat = Heartbeat(clock=lambda: now[0])
        for probes, state, step in [
            (1, "Initializing", 0.0),  # the first: sent
            (2, "Initializing", 1.0),  # nothing new: not sent
            (3, "Initializing", 1.0),
            (4, "Initializing", LIVENESS_SECONDS - 2.0),  # the last is LIVENESS_SECONDS old: sent
            (5, "Unhealthy", 0.1),  # news: sent at once
            (6, "Unhealthy", 0.1),
        ]:
            now[0] += step
            beat({"probes": probes, "state": state}, news=state)

    env.run(probing)
    assert [(b["probes"], b["state"]) for b in sent] == [
        (1, "Initializing"),
        (4, "Initializing"),
        (5, "Unhealthy"),
    ]
    assert LIVENESS_SECONDS <= 10 / 2  # two chances inside the shortest heartbeat timeout


def test_the_last_look_has_time_for_every_probe():
    from workflows.activity_calls import probe_timeouts

    for interval, probes in [(1, 1), (5, 1), (5, 3), (60, 24)]:
        settings = ApplicationHealthSettings(
            interval_in_seconds=interval, number_of_probes=probes, health_wait_timeout=timedelta(hours=1)
        )
        start_to_close, heartbeat = probe_timeouts(settings)
        assert start_to_close >= timedelta(seconds=(probes - 1) * interval + probes * 10)
        assert heartbeat > timedelta(seconds=interval)


async def test_an_instance_booting_reads_initializing_and_stopped_reads_unknown(fleet, azure):
    timing = TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[5, 5])
    name = await make_scale_set(fleet, 1, timing=timing)
    await azure.begin_reimage(name, "0", V2.at_version(V2.version))
    assert (await azure.get_instance(name, "0")).health == UNKNOWN  # stopped for its reimage
    await eventually(lambda: azure.get_instance(name, "0"), lambda i: not i.busy)
    assert (await fleet.show_scale_set(name)).instances[0].health == HealthState.INITIALIZING
    assert (await azure.read_health(name)).health["0"] == HealthState.INITIALIZING
    assert (await azure.get_instance(name, "0")).health == HealthState.INITIALIZING


async def test_probes_keep_their_cadence_whatever_each_read_takes():
    # The extension probes every intervalInSeconds; a wait of a full interval after each answer
    # would add every read's duration to every probe, and to the time an instance is seen healthy.
    start = time.monotonic()
    due = await on_cadence(start - 0.8, 1.0)  # the last probe began 0.8 s ago (its read took that)
    assert due == pytest.approx(start + 0.2, abs=0.01)
    assert time.monotonic() >= due  # slept until it was due, not a full interval
    # A read slower than the interval: the next probe is due at once, on a cadence from now.
    start = time.monotonic()
    due = await on_cadence(start - 1.5, 1.0)
    assert start <= due <= time.monotonic()
