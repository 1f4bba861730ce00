"""Maintenance configurations on the emulator, made through ARM as `az maintenance configuration
create` and `az maintenance assignment create` make them (PUT, api-version 2023-04-01)."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from starter.processes import EmulatorAddress
from tests.helpers.arm import PROVIDER, RG, SUB

API_VERSION = "2023-04-01"
MAINTENANCE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Maintenance"
# A window as `az maintenance configuration create --maintenance-scope OSImage` takes it.
NIGHTLY = {"startDateTime": "2025-01-01 22:00", "duration": "05:00", "timeZone": "Pacific Standard Time"}


def configuration_id(name: str) -> str:
    return f"{MAINTENANCE}/maintenanceConfigurations/{name}"


def assignments_path(scale_set: str) -> str:
    return f"{PROVIDER}/virtualMachineScaleSets/{scale_set}/providers/Microsoft.Maintenance/" + (
        "configurationAssignments"
    )


class MaintenanceArm:
    """`async with MaintenanceArm(address) as arm: ...`: ARM requests with a bearer token."""

    def __init__(self, address: EmulatorAddress) -> None:
        self._http = httpx.AsyncClient(
            base_url=address.url,
            verify=ssl.create_default_context(cafile=str(address.ca_file)),
            headers={"Authorization": "Bearer test"},
            params={"api-version": API_VERSION},
        )

    async def __aenter__(self) -> MaintenanceArm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self._http.request(method, path, json=body)

    async def put_configuration(
        self, name: str, window: dict[str, Any], scope: str = "OSImage", location: str | None = "westeurope"
    ) -> httpx.Response:
        body: dict[str, Any] = {"properties": {"maintenanceScope": scope, "maintenanceWindow": window}}
        if location is not None:
            body["location"] = location
        return await self.request("PUT", f"{MAINTENANCE}/maintenanceConfigurations/{name}", body)

    async def assign(self, scale_set: str, configuration: str, name: str | None = None) -> httpx.Response:
        body = {"properties": {"maintenanceConfigurationId": configuration_id(configuration)}}
        return await self.request("PUT", f"{assignments_path(scale_set)}/{name or configuration}", body)

    async def configure(
        self, scale_set: str, name: str, window: dict[str, Any], scope: str = "OSImage"
    ) -> None:
        """A configuration, and its assignment to the scale set: both must succeed."""
        (await self.put_configuration(name, window, scope)).raise_for_status()
        (await self.assign(scale_set, name)).raise_for_status()
