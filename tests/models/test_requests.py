"""Requests are checked before anything starts, with messages naming the field and range."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from models.base import AzureModel, describe_validation_error
from models.image import ImageReference
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy, UpgradePolicy
from models.status import (
    RollingUpgradeProgressInfo,
    RollingUpgradeRunningStatus,
    RollingUpgradeStatusInfo,
    RollingUpgradeStatusProperties,
)
from tests.helpers.policies import SEED_POLICY


def problem(model: type[AzureModel], data: Any, prefix: str = "") -> str:
    """How `data`, as a user wrote it, is refused."""
    with pytest.raises(ValidationError) as err:
        model.from_user(data)
    return describe_validation_error(err.value, prefix)


def test_defaults_are_azures():
    policy = RollingUpgradePolicy()
    assert policy.to_json() == {
        "maxBatchInstancePercent": 20,
        "maxUnhealthyInstancePercent": 20,
        "maxUnhealthyUpgradedInstancePercent": 20,
        "pauseTimeBetweenBatches": "PT0S",
        "enableCrossZoneUpgrade": False,
        "prioritizeUnhealthyInstances": False,
        "rollbackFailedInstancesOnPolicyBreach": False,
        "maxSurge": False,
    }
    health = ApplicationHealthSettings()
    assert (health.interval_in_seconds, health.number_of_probes) == (5, 1)
    assert health.health_wait_timeout == timedelta(minutes=5)
    assert health.effective_grace_period == 5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"maxBatchInstancePercent": 3},
            "policy.maxBatchInstancePercent: must be a whole number from 5 to 100 (got 3)",
        ),
        ({"maxBatchInstancePercent": 101}, "from 5 to 100 (got 101)"),
        (
            {"maxUnhealthyInstancePercent": 4},
            "policy.maxUnhealthyInstancePercent: must be a whole number from 5 to 100",
        ),
        ({"maxUnhealthyUpgradedInstancePercent": -1}, "from 0 to 100 (got -1)"),
        (
            {"pauseTimeBetweenBatches": "5 minutes"},
            "policy.pauseTimeBetweenBatches: must be an ISO 8601 duration from PT0S to PT48H",
        ),
        ({"pauseTimeBetweenBatches": "PT5X"}, "such as PT30S or PT5M (got 'PT5X')"),
        ({"pauseTimeBetweenBatches": "PT49H"}, "must be from PT0S to PT48H (got PT49H)"),
        ({"maxSurge": "sometimes"}, "policy.maxSurge: Input should be a valid boolean"),
        ({"maxBatchPercent": 30}, "policy.maxBatchPercent: is not a known field"),
    ],
)
def test_invalid_policies_name_the_field_and_the_allowed_range(data, message):
    assert message in problem(RollingUpgradePolicy, data, "policy")


def test_a_batch_above_the_unhealthy_limit_is_refused_only_when_both_are_given():
    # As Azure checks them: both given and inconsistent is refused, naming both fields.
    both = {"rollingUpgradePolicy": {"maxBatchInstancePercent": 50, "maxUnhealthyInstancePercent": 30}}
    with pytest.raises(ValueError, match=r"\(50\) may not exceed maxUnhealthyInstancePercent \(30\)"):
        UpgradePolicy.from_user(both)
    # One given: the other's default refuses nothing; the batches stay within the limit, and a
    # note says so.
    alone = UpgradePolicy.from_user({"RollingUpgradePolicy": {"MaxBatchInstancePercent": 50}})
    assert alone.rolling_upgrade_policy.max_batch_instance_percent == 50
    assert alone.notes() == [
        "rollingUpgradePolicy.maxBatchInstancePercent (50) is above maxUnhealthyInstancePercent (20): a "
        "batch counts as unhealthy while it upgrades, so batches stay within 20%"
    ]
    # A payload read back (every default written out) is not refused either.
    rolling = alone.rolling_upgrade_policy
    assert RollingUpgradePolicy.model_validate(rolling.to_json()) == rolling


def test_pause_up_to_48_hours_is_allowed_and_printed_as_azure_writes_it():
    policy = RollingUpgradePolicy(pause_time_between_batches="PT48H")
    assert policy.pause_time_between_batches == timedelta(hours=48)
    assert policy.to_json()["pauseTimeBetweenBatches"] == "PT48H"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"protocol": "udp"}, "protocol"),
        ({"port": 0}, "port: must be a whole number from 1 to 65535"),
        ({"intervalInSeconds": 0}, "intervalInSeconds: must be a whole number from 1 to 60"),
        ({"numberOfProbes": 25}, "numberOfProbes: must be a whole number from 1 to 24"),
        ({"gracePeriod": 7201}, "gracePeriod: must be a whole number from 0 to 7200"),
        ({"protocol": "tcp", "requestPath": "/health"}, "requestPath must be empty when protocol is tcp"),
        ({"requestPath": "health"}, "requestPath must start with /"),
        ({"healthWaitTimeout": "PT10S", "gracePeriod": 60}, "must be at least the gracePeriod (60 s)"),
    ],
)
def test_invalid_health_settings_are_refused(data, message):
    assert message in problem(ApplicationHealthSettings, data)


def test_policy_file_reads_azures_upgrade_policy_sections():
    policy = UpgradePolicy.model_validate(
        {
            "rollingUpgradePolicy": {"maxBatchInstancePercent": 10},
            "automaticOSUpgradePolicy": {"disableAutomaticRollback": True},
            "applicationHealth": {"protocol": "tcp", "port": 8080},
        }
    )
    assert policy.rolling_upgrade_policy.max_batch_instance_percent == 10
    assert policy.automatic_os_upgrade_policy.disable_automatic_rollback
    assert policy.application_health.request_path is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Canonical:ubuntu-24_04-lts:server:24.04.202411030",
            {
                "publisher": "Canonical",
                "offer": "ubuntu-24_04-lts",
                "sku": "server",
                "version": "24.04.202411030",
            },
        ),
        (
            "Canonical:ubuntu-24_04-lts:server",
            {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
        ),
        (
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images/web"
            "/versions/1.2.0",
            {
                "id": "/subscriptions/s/resourceGroups/g/providers"
                "/Microsoft.Compute/galleries/gal/images/web",
                "version": "1.2.0",
            },
        ),
    ],
)
def test_image_references_parse_from_urns_and_gallery_ids(text, expected):
    image = ImageReference.parse(text)
    assert image.to_json() == expected
    assert str(image) == (text if expected["version"] != "latest" else text + ":latest")


@pytest.mark.parametrize("text", ["ubuntu", "a:b", "a::c:d", ""])
def test_malformed_images_are_refused(text):
    with pytest.raises(ValueError, match="PUBLISHER:OFFER:SKU:VERSION"):
        ImageReference.parse(text)


def test_status_serializes_as_the_azure_rest_document():
    status = RollingUpgradeStatusInfo(
        name="web",
        properties=RollingUpgradeStatusProperties(
            policy=RollingUpgradePolicy(),
            running_status=RollingUpgradeRunningStatus(
                code="RollingForward",
                start_time="2021-11-30T13:06:23.362Z",
                last_action_time="2021-11-30T13:06:23.362Z",
            ),
            progress=RollingUpgradeProgressInfo(successful_instance_count=6),
        ),
    )
    document = status.to_json()
    assert set(document) == {"name", "type", "properties"}
    assert set(document["properties"]) == {"policy", "runningStatus", "progress"}
    assert document["properties"]["runningStatus"] == {
        "code": "RollingForward",
        "startTime": "2021-11-30T13:06:23.362000Z",
        "lastAction": "Start",
        "lastActionTime": "2021-11-30T13:06:23.362000Z",
    }
    assert set(document["properties"]["progress"]) == {
        "successfulInstanceCount",
        "failedInstanceCount",
        "inProgressInstanceCount",
        "pendingInstanceCount",
    }
    # The REST example's own error block parses.
    error = {
        "details": [{"code": "c", "target": "t", "message": "m"}],
        "innererror": {"exceptiontype": "x", "errordetail": "y"},
        "code": "c",
        "target": "t",
        "message": "m",
    }
    document["properties"]["error"] = error
    assert RollingUpgradeStatusInfo.model_validate(document).to_json()["properties"]["error"] == error


def test_azures_own_upgrade_policy_block_is_read_and_what_is_not_acted_on_is_noted():
    policy = UpgradePolicy.model_validate(SEED_POLICY)
    rolling = policy.rolling_upgrade_policy
    assert (rolling.max_batch_instance_percent, rolling.max_unhealthy_instance_percent) == (20, 25)
    assert rolling.max_unhealthy_upgraded_instance_percent == 25
    assert policy.mode == "Automatic"
    notes = policy.notes()
    assert len(notes) == 4
    assert any(
        n.startswith("automaticOSUpgradePolicy.enableAutomaticOSUpgrade is read but not acted on")
        for n in notes
    )
    assert all("is read but not acted on: " in n for n in notes)


def test_every_field_of_azures_upgrade_policy_schema_is_accepted():
    document = {
        "mode": "rolling",
        "rollingUpgradePolicy": {
            "maxBatchInstancePercent": 10,
            "maxUnhealthyInstancePercent": 30,
            "maxUnhealthyUpgradedInstancePercent": 5,
            "pauseTimeBetweenBatches": "PT1M",
            "enableCrossZoneUpgrade": True,
            "prioritizeUnhealthyInstances": True,
            "rollbackFailedInstancesOnPolicyBreach": True,
            "maxSurge": False,
        },
        "automaticOSUpgradePolicy": {
            "enableAutomaticOSUpgrade": False,
            "disableAutomaticRollback": True,
            "useRollingUpgradePolicy": False,
            "osRollingUpgradeDeferral": True,
        },
    }
    policy = UpgradePolicy.model_validate(document)
    assert policy.mode == "Rolling"
    assert policy.rolling_upgrade_policy.pause_time_between_batches == timedelta(minutes=1)
    assert policy.automatic_os_upgrade_policy.disable_automatic_rollback
    assert policy.automatic_os_upgrade_policy.os_rolling_upgrade_deferral is True
    # Wrapped in "upgradePolicy", keys in Azure's case, applicationHealth beside it: the same.
    wrapped = UpgradePolicy.model_validate({"upgradePolicy": document, "applicationHealth": {"port": 8080}})
    assert wrapped.rolling_upgrade_policy == policy.rolling_upgrade_policy
    assert wrapped.application_health.port == 8080
    # A bare rolling upgrade policy still works; given nothing, nothing is noted.
    assert (
        UpgradePolicy.model_validate(
            {"maxBatchInstancePercent": 10}
        ).rolling_upgrade_policy.max_batch_instance_percent
        == 10
    )
    assert UpgradePolicy().notes() == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"rollingUpgradePolicy": {"maxBatchPercent": 10}},
            "rollingUpgradePolicy.maxBatchPercent: is not a known field",
        ),
        (
            {"upgradePolicy": {"automaticOSUpgradePolicy": {"enableAutoUpgrade": True}}},
            "automaticOSUpgradePolicy.enableAutoUpgrade: is not a known field",
        ),
        ({"mode": "Sideways"}, "mode: Input should be 'Automatic', 'Manual' or 'Rolling'"),
    ],
)
def test_unknown_fields_are_still_refused_by_name(data, message):
    assert message in problem(UpgradePolicy, data)


def test_validation_errors_never_carry_pydantics_documentation_link():
    with pytest.raises(ValidationError) as err:
        ImageReference.parse("/gallery/images/web/versions/")
    assert "errors.pydantic.dev" in str(err.value)  # what pydantic itself prints
    assert "errors.pydantic.dev" not in describe_validation_error(err.value)
    assert "version must not be empty" in describe_validation_error(err.value)


def azure_status_examples() -> list[dict[str, Any]]:
    """The sample responses of the REST reference 'Rolling Upgrades - Get Latest' (seed 002)."""
    seed = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "002_cef4be0f562f9243.txt"
    text = seed.read_text() if seed.exists() else AZURE_STATUS_EXAMPLES
    decoder = json.JSONDecoder()
    return [decoder.raw_decode(text, m.end())[0] for m in re.finditer(r"Sample response\s*", text)]


# Verbatim from the seed, for a checkout without ../shared/seeds.
AZURE_STATUS_EXAMPLES = """
Sample response

{
  "properties": {
    "policy": {
      "maxBatchInstancePercent": 49,
      "maxUnhealthyInstancePercent": 81,
      "maxUnhealthyUpgradedInstancePercent": 98,
      "pauseTimeBetweenBatches": "aaaaaaaaaaaaaaa",
      "enableCrossZoneUpgrade": true,
      "prioritizeUnhealthyInstances": true,
      "rollbackFailedInstancesOnPolicyBreach": true,
      "maxSurge": true
    },
    "runningStatus": {
      "code": "RollingForward",
      "startTime": "2021-11-30T13:06:23.362Z",
      "lastAction": "Start",
      "lastActionTime": "2021-11-30T13:06:23.362Z"
    },
    "progress": {
      "successfulInstanceCount": 6,
      "failedInstanceCount": 25,
      "inProgressInstanceCount": 20,
      "pendingInstanceCount": 27
    },
    "error": {
      "details": [
        {
          "code": "aaaaaaaaaaaaaaaaaaaaaaaa",
          "target": "aaaa",
          "message": "aa"
        }
      ],
      "innererror": {
        "exceptiontype": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "errordetail": "aaaaaaaaaaaaaaaaaaaaaaaa"
      },
      "code": "aaaaaaa",
      "target": "aaaaaaa",
      "message": "aaaaaaaaa"
    }
  },
  "id": "aaaaaaaaaa",
  "name": "aaaaaaaaaaaaaaaaaaa",
  "type": "aaaaaaaaaaaaaaaaaaaaa",
  "location": "aaaaaa",
  "tags": {
    "key8533": "aaaaaaaaaaaaaaaaaaaaaaaa"
  }
}

Sample response

{
  "location": "aaaaaa",
  "id": "aaaaaaaaaa"
}
"""


def test_the_rest_references_sample_statuses_parse():
    examples = azure_status_examples()
    assert len(examples) == 2
    full, minimal = (RollingUpgradeStatusInfo.model_validate(document) for document in examples)
    assert full.properties.running_status.code == "RollingForward"
    assert full.properties.running_status.last_action == "Start"
    assert full.properties.progress.total == 6 + 25 + 20 + 27
    assert full.properties.error.details[0].target == "aaaa"
    assert full.tags == {"key8533": "aaaaaaaaaaaaaaaaaaaaaaaa"}
    # The policy is reported as it is, values this product would refuse in a request included.
    reported = full.to_json()["properties"]["policy"]
    assert reported == examples[0]["properties"]["policy"]
    assert (minimal.id, minimal.location, minimal.properties) == ("aaaaaaaaaa", "aaaaaa", None)
    # Every status code and action Azure names parses.
    document = examples[0]
    for code in ("RollingForward", "Cancelled", "Completed", "Faulted"):
        for action in ("Start", "Cancel"):
            document["properties"]["runningStatus"].update(code=code, lastAction=action)
            parsed = RollingUpgradeStatusInfo.model_validate(document)
            assert (parsed.properties.running_status.code, parsed.properties.running_status.last_action) == (
                code,
                action,
            )


def test_a_status_of_ours_keeps_its_policy_typed_and_its_shape():
    status = RollingUpgradeStatusInfo.model_validate(
        {
            "name": "web",
            "properties": {
                "policy": RollingUpgradePolicy(pause_time_between_batches="PT5M").to_json(),
                "runningStatus": {
                    "code": "Completed",
                    "startTime": "2021-11-30T13:06:23Z",
                    "lastActionTime": "2021-11-30T13:06:23Z",
                },
                "progress": {"successfulInstanceCount": 3},
            },
        }
    )
    assert isinstance(status.properties.policy, RollingUpgradePolicy)
    assert status.properties.policy.pause_time_between_batches == timedelta(minutes=5)
    assert status.properties.progress.labelled() == [
        ("succeeded", 3),
        ("failed", 0),
        ("in progress", 0),
        ("pending", 0),
    ]
