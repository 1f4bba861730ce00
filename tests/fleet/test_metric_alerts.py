"""Azure Monitor metric alert rules (Microsoft.Insights/metricAlerts), the source of an alarm gate:
fired and reset on the emulator through its admin API, read by the Azure back end over HTTPS
through the SDK's pipeline (auth, retries, the read pacer), as harshly as ARM answers."""

from __future__ import annotations

import ssl
import uuid

import httpx
import pytest

from fleet.azure import AzureFleet
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetRequestError
from models.alarms import Alarm, AlarmState
from rules import alarms
from starter.processes import EmulatorAddress
from tests.helpers.arm import RG, SUB

STATUS = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Insights/metricAlerts/{{}}/status"


def unique() -> str:
    return f"alert-{uuid.uuid4().hex[:8]}"


async def test_a_rule_fires_and_resets_as_its_status_says(fleet: EmulatorAdmin, azure: AzureFleet) -> None:
    name = unique()
    alarm = Alarm.model_validate({"name": "cpu", "azureMonitor": {"metricAlert": name}})
    await fleet.set_metric_alert(name, "Healthy")
    assert alarms.read_metric_alert(alarm, await azure.read_metric_alert(name)).state == AlarmState.OK
    await fleet.set_metric_alert(name, "Unhealthy")
    fired = alarms.read_metric_alert(alarm, await azure.read_metric_alert(name))
    assert (fired.state, fired.value) == (AlarmState.FIRING, "Unhealthy (1 of 1 series)")
    # By resource id too, and reset.
    await fleet.set_metric_alert(name, "Healthy")
    by_id = STATUS.format(name).removesuffix("/status")
    assert alarms.read_metric_alert(alarm, await azure.read_metric_alert(by_id)).state == AlarmState.OK
    assert (await fleet.metric_alert(name))["reads"] == 3


async def test_throttled_and_failing_reads_are_retried_by_the_sdk(
    fleet: EmulatorAdmin, azure: AzureFleet
) -> None:
    name = unique()
    await fleet.set_metric_alert(name, "Unhealthy", throttle_calls=1, fail_calls=1)
    series = await azure.read_metric_alert(name)
    assert [s.status for s in series] == ["Unhealthy"]
    assert (await fleet.metric_alert(name))["reads"] == 1  # the 429 and the 500 never read it


async def test_a_rule_that_does_not_exist_is_resource_not_found(azure: AzureFleet) -> None:
    with pytest.raises(FleetRequestError) as raised:
        await azure.read_metric_alert(unique())
    assert raised.value.code == "ResourceNotFound" and raised.value.status == 404


async def test_arm_checks_the_token_and_the_api_version(
    emulator: EmulatorAddress, fleet: EmulatorAdmin
) -> None:
    name = unique()
    await fleet.set_metric_alert(name, "Healthy")
    verify = ssl.create_default_context(cafile=str(emulator.ca_file))
    async with httpx.AsyncClient(base_url=emulator.url, verify=verify) as http:
        path = STATUS.format(name)
        anonymous = await http.get(path, params={"api-version": "2018-03-01"})
        assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "AuthenticationFailed")
        versionless = await http.get(path, headers={"Authorization": "Bearer x"})
        assert (versionless.status_code, versionless.json()["error"]["code"]) == (
            400,
            "MissingApiVersionParameter",
        )
        answer = await http.get(
            path, params={"api-version": "2018-03-01"}, headers={"Authorization": "Bearer x"}
        )
        assert answer.json()["value"][0]["properties"]["status"] == "Healthy"
        assert answer.json()["value"][0]["type"] == "Microsoft.Insights/metricAlerts/status"


async def test_the_admin_api_refuses_a_status_azure_does_not_have(fleet: EmulatorAdmin) -> None:
    with pytest.raises(FleetRequestError) as raised:
        await fleet.set_metric_alert(unique(), "Firing")
    assert "status: must be Healthy or Unhealthy" in raised.value.message
