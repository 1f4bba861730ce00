"""The one small protocol every fleet back end implements; activities see only this."""

from __future__ import annotations

from typing import Protocol

from models.fleet import FleetOperation, HealthProbe, HealthReading, ScaleSetView
from models.image import ImageReference
from models.policy import ApplicationHealthSettings


class FleetBackend(Protocol):
    async def get_scale_set(self, name: str) -> ScaleSetView:
        """The scale set with every instance and its current health."""

    async def read_health(self, name: str) -> HealthReading:
        """Every instance's health and phase, compactly."""

    async def resolve_image(self, image: ImageReference, location: str) -> ImageReference:
        """The image at an exact version available in `location` ('latest' resolved)."""

    async def begin_reimage(
        self, scale_set: str, instance_id: str, image: ImageReference, operation_id: str
    ) -> FleetOperation:
        """Start replacing the OS disk (data disks kept); a repeated id is the same operation."""

    async def begin_restore(
        self, scale_set: str, instance_id: str, os_disk: str, operation_id: str
    ) -> FleetOperation:
        """Start restoring a previous OS disk; a repeated id is the same operation."""

    async def get_operation(self, scale_set: str, operation_id: str) -> FleetOperation:
        """The current state of a long-running operation."""

    async def probe_health(
        self, scale_set: str, instance_id: str, settings: ApplicationHealthSettings
    ) -> HealthProbe:
        """Probe the instance's application health endpoint once."""

    async def aclose(self) -> None:
        """Release connections."""


# The emulator cannot refuse a TCP connection on behalf of one instance of many behind one
# port, so it answers 502 with this header instead: a client reads it as no connection at all.
NO_CONNECTION_HEADER = "X-Emulated-Connection"
NO_CONNECTION_VALUE = "refused"
