"""Health as Azure's Application Health extension reads it (models/health.py): every protocol x mode
x answer as a table, custom metrics, the health mode setting, and payloads that ignore fields they
do not know; pure. (Each kind of endpoint and the probers against the emulator:
tests/activities/test_health_probes.py.)"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from models import steps
from models.base import describe_validation_error
from models.fleet import HealthReading, HealthState, ScaleSetView
from models.health import interpret
from models.policy import ApplicationHealthSettings, UpgradePolicy
from tests.helpers.upgrades import V2

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
