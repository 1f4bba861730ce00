"""Requests are checked before anything starts, with messages naming the field and range."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from models.base import describe_validation_error
from models.image import ImageReference
from models.policy import ApplicationHealthSettings, RollingUpgradePolicy, UpgradePolicy
from models.status import (
    RollingUpgradeProgressInfo,
    RollingUpgradeRunningStatus,
    RollingUpgradeStatusInfo,
    RollingUpgradeStatusProperties,
)


def problem(model, data, prefix=""):
    with pytest.raises(ValidationError) as err:
        model.model_validate(data)
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
        ({"maxBatchInstancePercent": 3}, "policy.maxBatchInstancePercent: must be a whole number from 5 to 100 (got 3)"),
        ({"maxBatchInstancePercent": 101}, "from 5 to 100 (got 101)"),
        ({"maxUnhealthyInstancePercent": 4}, "policy.maxUnhealthyInstancePercent: must be a whole number from 5 to 100"),
        ({"maxUnhealthyUpgradedInstancePercent": -1}, "from 0 to 100 (got -1)"),
        ({"pauseTimeBetweenBatches": "5 minutes"}, "policy.pauseTimeBetweenBatches: must be an ISO 8601 duration from PT0S to PT48H"),
        ({"pauseTimeBetweenBatches": "PT5X"}, "such as PT30S or PT5M (got 'PT5X')"),
        ({"pauseTimeBetweenBatches": "PT49H"}, "must be from PT0S to PT48H (got PT49H)"),
        ({"maxBatchInstancePercent": 30}, "maxBatchInstancePercent (30) may not exceed maxUnhealthyInstancePercent (20)"),
        ({"maxSurge": True}, "maxSurge is not supported"),
        ({"maxBatchPercent": 30}, "policy.maxBatchPercent: is not a known field"),
    ],
)
def test_invalid_policies_name_the_field_and_the_allowed_range(data, message):
    assert message in problem(RollingUpgradePolicy, data, "policy")


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
        ("Canonical:ubuntu-24_04-lts:server:24.04.202411030", {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "24.04.202411030"}),
        ("Canonical:ubuntu-24_04-lts:server", {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}),
        ("/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images/web/versions/1.2.0", {"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/galleries/gal/images/web", "version": "1.2.0"}),
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
    error = {"details": [{"code": "c", "target": "t", "message": "m"}], "innererror": {"exceptiontype": "x", "errordetail": "y"}, "code": "c", "target": "t", "message": "m"}
    document["properties"]["error"] = error
    assert RollingUpgradeStatusInfo.model_validate(document).to_json()["properties"]["error"] == error
