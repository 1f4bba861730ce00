"""The HTTP client of the fleet emulator: the FleetBackend the worker uses, plus its admin calls."""

from __future__ import annotations

import os
from typing import Any

import httpx
from pydantic import TypeAdapter

from fleet.errors import FleetError, FleetRequestError, FleetTransientError
from fleet.protocol import NO_CONNECTION_HEADER, NO_CONNECTION_VALUE
from models.fleet import (
    FaultSpec,
    FleetOperation,
    GalleryImageVersion,
    HealthProbe,
    HealthReading,
    HealthState,
    ScaleSetSpec,
    ScaleSetView,
)
from models.health import interpret
from models.image import ImageReference
from models.policy import ApplicationHealthSettings

DEFAULT_FLEET_URL = "http://127.0.0.1:8780"
_OPERATIONS = TypeAdapter(list[FleetOperation])
_IMAGES = TypeAdapter(list[GalleryImageVersion])


def fleet_url_from_env() -> str:
    return os.environ.get("FLEET_URL", DEFAULT_FLEET_URL).rstrip("/")


def parse_health(response: httpx.Response, settings: ApplicationHealthSettings) -> HealthProbe:
    """Read one answer of an instance's health endpoint as the Application Health extension
    does (models.health.interpret); the emulator's no-connection answer is no answer at all."""
    if response.headers.get(NO_CONNECTION_HEADER) == NO_CONNECTION_VALUE:
        probe = interpret(settings.protocol, settings.health_states, None, None)
        reason = response.text.strip()
        return probe.model_copy(update={"detail": f"{probe.detail}: {reason}" if reason else probe.detail})
    return interpret(settings.protocol, settings.health_states, response.status_code, response.text)


# Azure answers 409 Conflict / AnotherOperationInProgress while an instance is busy with another
# operation: the same request succeeds once that one is done.
RETRYABLE_CONFLICTS = frozenset({"Conflict", "AnotherOperationInProgress"})


class EmulatorClient:
    """Talks to `upgradectl fleet serve` over HTTP; one connection pool per client."""

    def __init__(self, base_url: str | None = None, timeout: float | None = None) -> None:
        self.base_url = (base_url or fleet_url_from_env()).rstrip("/")
        if timeout is None:
            timeout = float(os.environ.get("FLEET_HTTP_TIMEOUT", "10"))
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def __aenter__(self) -> EmulatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TimeoutException as err:
            raise FleetTransientError("Timeout", f"{method} {path} timed out") from err
        except httpx.TransportError as err:
            raise FleetTransientError("ConnectionError", f"{method} {self.base_url}{path}: {err}") from err
        if response.is_success:
            return response.json() if response.content else None
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = f"HTTP{response.status_code}", response.text[:200]
        transient = (
            response.status_code == 429
            or response.status_code >= 500
            or (response.status_code == 409 and code in RETRYABLE_CONFLICTS)
        )
        kind = FleetTransientError if transient else FleetRequestError
        raise kind(code, message, response.status_code)

    # --- FleetBackend -----------------------------------------------------------------------

    async def get_scale_set(self, name: str) -> ScaleSetView:
        return ScaleSetView.model_validate(await self._call("GET", f"/scaleSets/{name}"))

    async def read_health(self, name: str) -> HealthReading:
        return HealthReading.model_validate(await self._call("GET", f"/scaleSets/{name}/health"))

    async def resolve_image(self, image: ImageReference, location: str) -> ImageReference:
        body = {"imageReference": image.to_json(), "location": location}
        return ImageReference.model_validate(await self._call("POST", "/images/resolve", body))

    async def begin_reimage(
        self, scale_set: str, instance_id: str, image: ImageReference, operation_id: str
    ) -> FleetOperation:
        body = {"operationId": operation_id, "imageReference": image.to_json()}
        path = f"/scaleSets/{scale_set}/instances/{instance_id}/reimage"
        return FleetOperation.model_validate(await self._call("POST", path, body))

    async def begin_restore(
        self, scale_set: str, instance_id: str, os_disk: str, operation_id: str
    ) -> FleetOperation:
        body = {"operationId": operation_id, "osDisk": os_disk}
        path = f"/scaleSets/{scale_set}/instances/{instance_id}/restoreOsDisk"
        return FleetOperation.model_validate(await self._call("POST", path, body))

    async def get_operation(self, scale_set: str, operation_id: str) -> FleetOperation:
        path = f"/scaleSets/{scale_set}/operations/{operation_id}"
        return FleetOperation.model_validate(await self._call("GET", path))

    async def probe_health(
        self, scale_set: str, instance_id: str, settings: ApplicationHealthSettings
    ) -> HealthProbe:
        # The emulator serves every instance's endpoint under /vm/<scale set>/<instance>;
        # a real back end would probe <instance address>:<port><requestPath>.
        path = settings.request_path if settings.protocol != "tcp" else f"/tcp/{settings.port}"
        try:
            response = await self._http.get(f"/vm/{scale_set}/{instance_id}{path}")
        except httpx.TransportError as err:  # refused, unreachable, timed out
            probe = interpret(settings.protocol, settings.health_states, None, None)
            return probe.model_copy(update={"detail": f"{probe.detail}: {err!r}"})
        return parse_health(response, settings)

    # --- emulator administration ------------------------------------------------------------

    async def create_scale_set(self, spec: ScaleSetSpec) -> ScaleSetView:
        body = spec.to_json()
        return ScaleSetView.model_validate(await self._call("PUT", f"/admin/scaleSets/{spec.name}", body))

    async def show_scale_set(self, name: str) -> ScaleSetView:
        """The scale set as the admin API shows it (never subject to injected faults)."""
        return ScaleSetView.model_validate(await self._call("GET", f"/admin/scaleSets/{name}"))

    async def delete_scale_set(self, name: str) -> None:
        await self._call("DELETE", f"/admin/scaleSets/{name}")

    async def list_scale_sets(self) -> list[str]:
        return await self._call("GET", "/admin/scaleSets")

    async def set_faults(self, name: str, faults: FaultSpec) -> None:
        await self._call("PUT", f"/admin/scaleSets/{name}/faults", faults.to_json())

    async def injected_faults(self, name: str) -> int:
        """How many transient, slow or malformed answers the emulator injected for the set."""
        return (await self._call("GET", f"/admin/scaleSets/{name}/faults"))["injected"]

    async def operations(self, name: str) -> list[FleetOperation]:
        return _OPERATIONS.validate_python(await self._call("GET", f"/admin/scaleSets/{name}/operations"))

    async def delete_instance(self, name: str, instance_id: str) -> None:
        await self._call("DELETE", f"/admin/scaleSets/{name}/instances/{instance_id}")

    async def set_health(self, name: str, instance_id: str, state: HealthState | None) -> None:
        body = {"state": state.value if state else None}
        await self._call("PUT", f"/admin/scaleSets/{name}/instances/{instance_id}/health", body)

    async def scale_out(self, name: str, count: int, image: ImageReference | None = None) -> ScaleSetView:
        """Add `count` instances to the scale set, placed over zones, update and fault domains
        as create places them, ids continuing the ordinals; booted on the scale set model's
        image, or on `image` (an exact version or 'latest', resolved in the set's region)."""
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
        """Script the instance endpoint's next answers, one per probe: "Healthy", "Unhealthy",
        "Unknown" (an error answer) or "Down" (no connection); then it answers as usual."""
        path = f"/admin/scaleSets/{name}/instances/{instance_id}/probeAnswers"
        await self._call("PUT", path, {"answers": answers})

    async def publish_image(
        self, image: ImageReference, regions: list[str] | None = None, *, exclude_from_latest: bool = False
    ) -> GalleryImageVersion:
        body = {
            "imageReference": image.to_json(),
            "regions": regions or ["*"],
            "excludeFromLatest": exclude_from_latest,
        }
        return GalleryImageVersion.model_validate(await self._call("POST", "/admin/images", body))

    async def images(self) -> list[GalleryImageVersion]:
        return _IMAGES.validate_python(await self._call("GET", "/admin/images"))


__all__ = ["EmulatorClient", "FleetError", "fleet_url_from_env", "parse_health"]
