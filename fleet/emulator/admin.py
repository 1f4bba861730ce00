"""The emulator's admin API over HTTPS: setting up scenarios and reading what happened (tests and
`upgradectl fleet ...`). The cloud itself is reached through ARM, with azure-mgmt-compute."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import TypeAdapter

from fleet.errors import FleetRequestError, FleetTransientError
from models.fleet import (
    FaultSpec,
    FleetOperation,
    GalleryImageVersion,
    HealthState,
    InstanceRecord,
    QuotaUsage,
    ScaleSetSpec,
    ScaleSetView,
)
from models.image import ImageReference

_OPERATIONS = TypeAdapter(list[FleetOperation])
_IMAGES = TypeAdapter(list[GalleryImageVersion])
_RECORDS = TypeAdapter(list[InstanceRecord])
_USAGES = TypeAdapter(list[QuotaUsage])


@dataclass(frozen=True)
class ArmCalls:
    """ARM requests about one scale set that reached the emulator (GET /admin/scaleSets/{name}/calls):
    reads (GET, HEAD), actions (anything else), and counts by "<METHOD> <path shape>"."""

    reads: int
    actions: int
    requests: dict[str, int]


class EmulatorAdmin:
    """`https://HOST:PORT` of the emulator, trusting its CA file (fleet/emulator/tls.py)."""

    def __init__(self, base_url: str, ca_file: str | Path, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, verify=ssl.create_default_context(cafile=str(ca_file))
        )

    async def __aenter__(self) -> EmulatorAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TimeoutException as err:
            raise FleetTransientError("Timeout", f"{method} {self.base_url}{path} timed out") from err
        except httpx.TransportError as err:
            raise FleetTransientError("ConnectionError", f"{method} {self.base_url}{path}: {err}") from err
        if response.is_success:
            return response.json() if response.content else None
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = f"HTTP{response.status_code}", response.text[:200]
        raise FleetRequestError(code, message, response.status_code)

    # --- scale sets -------------------------------------------------------------------------

    async def create_scale_set(self, spec: ScaleSetSpec) -> ScaleSetView:
        body = spec.model_dump(mode="json", exclude={"name"})
        return ScaleSetView.model_validate(await self._call("PUT", f"/admin/scaleSets/{spec.name}", body))

    async def show_scale_set(self, name: str) -> ScaleSetView:
        """The scale set as the emulator holds it (health without consuming scripted answers)."""
        return ScaleSetView.model_validate(await self._call("GET", f"/admin/scaleSets/{name}"))

    async def delete_scale_set(self, name: str) -> None:
        await self._call("DELETE", f"/admin/scaleSets/{name}")

    async def list_scale_sets(self) -> list[str]:
        return list(await self._call("GET", "/admin/scaleSets"))

    async def set_faults(self, name: str, faults: FaultSpec) -> None:
        """Replace the scale set's faults; a 429 storm (throttleCalls/throttleSeconds) starts now."""
        await self._call("PUT", f"/admin/scaleSets/{name}/faults", faults.to_json())

    async def injected_faults(self, name: str) -> int:
        """How many faults were injected on the scale set's calls since the emulator started."""
        return int((await self._call("GET", f"/admin/scaleSets/{name}/faults"))["injected"])

    async def calls(self, name: str) -> ArmCalls:
        """The ARM requests about the scale set since the emulator started, from every client
        (operation polls included; throttled and failed requests too)."""
        body = await self._call("GET", f"/admin/scaleSets/{name}/calls")
        return ArmCalls(int(body["reads"]), int(body["actions"]), dict(body["requests"]))

    async def operations(self, name: str) -> list[FleetOperation]:
        """Every accepted action on the scale set's instances, in order (one per accepted call)."""
        return _OPERATIONS.validate_python(await self._call("GET", f"/admin/scaleSets/{name}/operations"))

    async def instance_records(self, name: str) -> list[InstanceRecord]:
        """Every instance the set ever had, by creation: when it was created, provisioned, ready
        (booted), and when its deletion began and ended (InstanceRecord)."""
        return _RECORDS.validate_python(await self._call("GET", f"/admin/scaleSets/{name}/instanceRecords"))

    # --- core quota -------------------------------------------------------------------------

    async def set_core_quota(self, location: str, family: str, limit: int | None) -> None:
        """Limit `family`'s vCPUs (e.g. standardDSv3Family; `cores`: the region's total) in
        `location`; None: back to the emulator's generous default."""
        await self._call("PUT", f"/admin/quotas/{location}/{family}", {"limit": limit})

    async def core_usage(self, location: str) -> list[QuotaUsage]:
        """The region's vCPU usage and limits, as the Compute usages API reports them."""
        return _USAGES.validate_python(await self._call("GET", f"/admin/quotas/{location}"))

    # --- instances --------------------------------------------------------------------------

    async def delete_instance(self, name: str, instance_id: str) -> None:
        await self._call("DELETE", f"/admin/scaleSets/{name}/instances/{instance_id}")

    async def set_health(self, name: str, instance_id: str, state: HealthState | None) -> None:
        """Force what the instance's application answers (None: back to its own state)."""
        body = {"state": state.value if state else None}
        await self._call("PUT", f"/admin/scaleSets/{name}/instances/{instance_id}/health", body)

    async def scale_out(self, name: str, count: int, image: ImageReference | None = None) -> ScaleSetView:
        body: dict[str, Any] = {"count": count}
        if image is not None:
            body["imageReference"] = image.to_json()
        return ScaleSetView.model_validate(
            await self._call("POST", f"/admin/scaleSets/{name}/scaleOut", body)
        )

    async def start_operation(
        self, name: str, instance_id: str, seconds: float, operation_id: str | None = None
    ) -> FleetOperation:
        """Keep an instance busy from outside the upgrade: a restart lasting `seconds`."""
        body: dict[str, Any] = {"seconds": seconds}
        if operation_id:
            body["operationId"] = operation_id
        path = f"/admin/scaleSets/{name}/instances/{instance_id}/restart"
        return FleetOperation.model_validate(await self._call("POST", path, body))

    async def set_probe_answers(self, name: str, instance_id: str, answers: list[str]) -> None:
        """The application's next answers to its health extension, one per ARM read of the
        instance view: "Healthy", "Unhealthy", "Unknown" (an error answer) or "Down"."""
        path = f"/admin/scaleSets/{name}/instances/{instance_id}/probeAnswers"
        await self._call("PUT", path, {"answers": answers})

    # --- images and extensions --------------------------------------------------------------

    async def publish_image(
        self,
        image: ImageReference,
        regions: list[str] | None = None,
        *,
        exclude_from_latest: bool = False,
        excluded_from_latest_in: list[str] | None = None,
        end_of_life_date: str | None = None,
    ) -> GalleryImageVersion:
        body: dict[str, Any] = {
            "imageReference": image.to_json(),
            "regions": regions or ["*"],
            "excludeFromLatest": exclude_from_latest,
        }
        if excluded_from_latest_in:
            body["excludedFromLatestIn"] = excluded_from_latest_in
        if end_of_life_date:
            body["endOfLifeDate"] = end_of_life_date
        return GalleryImageVersion.model_validate(await self._call("POST", "/admin/images", body))

    async def images(self) -> list[GalleryImageVersion]:
        return _IMAGES.validate_python(await self._call("GET", "/admin/images"))

    async def publish_extension_version(
        self, publisher: str, type_: str, version: str, regions: list[str] | None = None
    ) -> None:
        """Publish a version of an extension in `regions` (None: everywhere), as the extension
        images route (…/artifacttypes/vmextension/types/{type}/versions) then lists it."""
        body = {"publisher": publisher, "type": type_, "version": version, "regions": regions or ["*"]}
        await self._call("POST", "/admin/extensionVersions", body)

    async def extension_versions(self) -> list[dict[str, Any]]:
        """Every published extension version: {"publisher", "type", "version", "regions"}."""
        return list(await self._call("GET", "/admin/extensionVersions"))

    async def fix_extension_version(self, publisher: str, type_: str, version: str) -> list[str]:
        """The publisher fixes a version: no scale set's failingExtensionVersions or
        unhealthyExtensionVersions name it any more. The scale sets whose faults changed."""
        body = {"publisher": publisher, "type": type_, "version": version}
        return list((await self._call("POST", "/admin/extensionVersions/fix", body))["scaleSets"])

    # --- Azure Monitor metric alerts (alarm gates) ----------------------------------------------

    async def set_metric_alert(
        self,
        name: str,
        status: str = "Healthy",
        *,
        answers: list[str] | None = None,
        throttle_calls: int = 0,
        fail_calls: int = 0,
    ) -> dict[str, Any]:
        """Create a metric alert rule or change it: fire it (status "Unhealthy") or reset it
        ("Healthy"); `answers`: the next status reads' answers, one each, then `status`; the next
        `throttle_calls` reads of it answered 429, then `fail_calls` 500."""
        body = {
            "status": status,
            "answers": answers or [],
            "throttleCalls": throttle_calls,
            "failCalls": fail_calls,
        }
        return dict(await self._call("PUT", f"/admin/metricAlerts/{name}", body))

    async def metric_alert(self, name: str) -> dict[str, Any]:
        """{"name", "status", "answers" left, "reads"}: how many times ARM read its status."""
        return dict(await self._call("GET", f"/admin/metricAlerts/{name}"))

    async def api_versions(self) -> dict[str, int]:
        """The api-versions ARM calls carried, with their counts."""
        return dict(await self._call("GET", "/admin/apiVersions"))
