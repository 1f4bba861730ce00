"""Every side effect of an upgrade: reading the fleet, reimaging, restoring, probing health.

The activities are methods of a class that receives its fleet back end, so the worker injects
the emulator's client (or, later, a real cloud's) and tests inject whatever they need. Fleet
errors become ApplicationErrors: transient ones stay retryable (the workflow's retry policy
backs off), permanent ones are non-retryable and carry the back end's error code, so the
workflow reports them as infrastructure failures, never as "unhealthy".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from fleet.errors import FleetError
from fleet.protocol import FleetBackend
from models import steps
from models.errors import (
    FLEET_OPERATION_FAILED,
    TRANSIENT_FLEET_ERROR,
    UNEXPECTED_ERROR,
    RefusalCode,
)
from models.fleet import FleetOperation, HealthReading, HealthState, OperationStatus

FAILING_STATES = (HealthState.UNHEALTHY, HealthState.UNKNOWN)
# Polling a long-running operation: honour the back end's Retry-After within these bounds.
MIN_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 2.0


@contextmanager
def fleet_errors(refusals: dict[str, RefusalCode] | None = None) -> Iterator[None]:
    """Translate back-end errors; `refusals` maps back-end codes to refusal codes.

    Anything else (a malformed answer, a bug) is not retried: it is UNEXPECTED_ERROR.
    """
    try:
        yield
    except FleetError as err:
        if err.retryable:
            raise ApplicationError(err.message, type=TRANSIENT_FLEET_ERROR) from err
        code = (refusals or {}).get(err.code, err.code)
        raise ApplicationError(err.message, type=code, non_retryable=True) from err
    except ApplicationError:
        raise
    except Exception as err:
        raise ApplicationError(
            f"{type(err).__name__}: {err}", type=UNEXPECTED_ERROR, non_retryable=True
        ) from err


class FleetActivities:
    def __init__(self, fleet: FleetBackend) -> None:
        self.fleet = fleet

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.describe_scale_set,
            self.read_health,
            self.resolve_image,
            self.reimage_instance,
            self.restore_os_disk,
            self.wait_for_health,
            self.probe_health,
        ]

    @activity.defn(name=steps.DESCRIBE_SCALE_SET)
    async def describe_scale_set(self, request: steps.DescribeScaleSetInput) -> steps.DescribeScaleSetResult:
        with fleet_errors({"ResourceNotFound": RefusalCode.SCALE_SET_NOT_FOUND}):
            view = await self.fleet.get_scale_set(request.scale_set)
        return steps.DescribeScaleSetResult(scale_set=view)

    @activity.defn(name=steps.READ_HEALTH)
    async def read_health(self, request: steps.ReadHealthInput) -> HealthReading:
        with fleet_errors({"ResourceNotFound": RefusalCode.SCALE_SET_NOT_FOUND}):
            return await self.fleet.read_health(request.scale_set)

    @activity.defn(name=steps.RESOLVE_IMAGE)
    async def resolve_image(self, request: steps.ResolveImageInput) -> steps.ResolveImageResult:
        target, current = request.image, request.scale_set.image_reference
        if not target.id and not current.id and target.definition[:2] != current.definition[:2]:
            raise ApplicationError(
                f"the image publisher and offer of scale set {request.scale_set.name!r} "
                f"({current.publisher}:{current.offer}) cannot change to "
                f"{target.publisher}:{target.offer}",
                type=RefusalCode.IMAGE_DEFINITION_CHANGED,
                non_retryable=True,
            )
        refusals = {
            "ImageNotFound": RefusalCode.IMAGE_NOT_FOUND,
            "ImageNotReplicatedToRegion": RefusalCode.IMAGE_NOT_REPLICATED,
        }
        with fleet_errors(refusals):
            image = await self.fleet.resolve_image(target, request.scale_set.location)
        return steps.ResolveImageResult(image=image)

    @activity.defn(name=steps.REIMAGE_INSTANCE)
    async def reimage_instance(self, request: steps.ReimageInput) -> steps.OperationResult:
        with fleet_errors():
            operation = await self.fleet.begin_reimage(
                request.scale_set, request.instance_id, request.image, request.operation_id
            )
            return steps.OperationResult(operation=await self._until_done(operation))

    @activity.defn(name=steps.RESTORE_OS_DISK)
    async def restore_os_disk(self, request: steps.RestoreInput) -> steps.OperationResult:
        with fleet_errors():
            operation = await self.fleet.begin_restore(
                request.scale_set, request.instance_id, request.os_disk, request.operation_id
            )
            return steps.OperationResult(operation=await self._until_done(operation))

    async def _until_done(self, operation: FleetOperation) -> FleetOperation:
        """Poll a long-running operation, heartbeating, until it succeeds or fails."""
        while operation.status == OperationStatus.IN_PROGRESS:
            activity.heartbeat(operation.operation_id)
            wait = operation.retry_after_seconds
            if wait is None:
                wait = MAX_POLL_SECONDS
            await asyncio.sleep(min(max(wait, MIN_POLL_SECONDS), MAX_POLL_SECONDS))
            operation = await self.fleet.get_operation(operation.scale_set, operation.operation_id)
        context = {
            "scale_set": operation.scale_set,
            "instance": operation.instance_id,
            "step": operation.kind.value,
        }
        if operation.status == OperationStatus.FAILED:
            activity.logger.warning("%s failed: %s", operation.kind.value, operation.error, extra=context)
            error = operation.error
            raise ApplicationError(
                error.message if error else f"{operation.kind} failed",
                type=error.code if error else FLEET_OPERATION_FAILED,
                non_retryable=True,
            )
        activity.logger.info(
            "%s done: %s → %s (asked %s time(s))",
            operation.kind.value,
            operation.previous_os_disk,
            operation.os_disk,
            operation.request_count,
            extra=context,
        )
        return operation

    @activity.defn(name=steps.WAIT_FOR_HEALTH)
    async def wait_for_health(self, request: steps.HealthInput) -> steps.HealthResult:
        """Probe every intervalInSeconds until numberOfProbes Healthy answers in a row.

        Inside the grace period any other answer means the instance is still warming up.
        After it, numberOfProbes Unhealthy (or unanswered) probes in a row end the activity
        with that state; the workflow looks again later, until its deadline (a durable timer).
        """
        settings = request.health
        started = time.monotonic()
        probes = healthy = failing = 0
        while True:
            with fleet_errors():
                probe = await self.fleet.probe_health(request.scale_set, request.instance_id, settings)
            probes += 1
            healthy = healthy + 1 if probe.state == HealthState.HEALTHY else 0
            failing = failing + 1 if probe.state in FAILING_STATES else 0
            if healthy >= settings.number_of_probes:
                activity.logger.info(
                    "healthy after %s probe(s)",
                    probes,
                    extra={"scale_set": request.scale_set, "instance": request.instance_id},
                )
                return steps.HealthResult(state=HealthState.HEALTHY, probes=probes)
            in_grace = time.monotonic() - started < request.grace_remaining_seconds
            if not in_grace and failing >= settings.number_of_probes:
                return steps.HealthResult(state=probe.state, probes=probes, detail=probe.detail)
            state = HealthState.INITIALIZING if in_grace else probe.state
            activity.heartbeat({"probes": probes, "state": state.value, "detail": probe.detail})
            await asyncio.sleep(settings.interval_in_seconds)

    @activity.defn(name=steps.PROBE_HEALTH)
    async def probe_health(self, request: steps.HealthInput) -> steps.HealthResult:
        """The last look at the health-wait deadline: Healthy only after numberOfProbes Healthy
        answers in a row, every intervalInSeconds; the first other answer is the verdict."""
        settings = request.health
        probes = 0
        while True:
            with fleet_errors():
                probe = await self.fleet.probe_health(request.scale_set, request.instance_id, settings)
            probes += 1
            activity.heartbeat({"probes": probes, "state": probe.state.value, "detail": probe.detail})
            if probe.state != HealthState.HEALTHY or probes >= settings.number_of_probes:
                return steps.HealthResult(state=probe.state, probes=probes, detail=probe.detail)
            await asyncio.sleep(settings.interval_in_seconds)
