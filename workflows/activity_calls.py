"""Typed calls of the fleet activities by name, with their timeouts and retry policies.

Workflows call activities only through this module, so every timeout lives in one place and the
sandbox never imports the implementations. Transient fleet errors and bugs in activity code are
retried with backoff, each call bounded by its schedule-to-close (so a fixed worker deployed in
the meantime resumes it); activities raise non-retryable ApplicationErrors only for what the
fleet refused or failed (an instance that is gone, an operation the back end failed), which the
workflows turn into an instance's Failed outcome.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError
from temporalio.workflow import ActivityCancellationType, ActivityHandle

from models import steps
from models.alarms import READ_ALARMS, Alarm, AlarmReading, ReadAlarmsInput, ReadAlarmsResult
from models.change import ExtensionRequest, ExtensionTarget
from models.errors import UNEXPECTED_ERROR, UpgradeErrorCode
from models.fleet import FleetOperation, HealthReading, ScaleSetView
from models.image import ImageReference
from models.notifications import WebhookDelivery
from models.policy import ApplicationHealthSettings

R = TypeVar("R")

FLEET_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
)
# Reads retry for a while, then the upgrade reports that the fleet could not be reached.
READ_DEADLINE = timedelta(minutes=5)
# One read attempt; short, so a worker that dies mid-read is replaced quickly.
READ_ATTEMPT = timedelta(seconds=15)
# A reimage or restore is a long-running operation; the activity polls it and heartbeats.
OPERATION_DEADLINE = timedelta(hours=1)
OPERATION_HEARTBEAT = timedelta(seconds=10)


def infrastructure_failure(err: ActivityError) -> tuple[str, str]:
    """The back end's error code and message behind a failed activity (here, beside the calls:
    it reads the SDK's exception types, which the pure rules do not import)."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == UNEXPECTED_ERROR:
        return UpgradeErrorCode.INTERNAL_EXECUTION_ERROR, cause.message
    if isinstance(cause, ApplicationError):
        return cause.type or "FleetError", cause.message
    if isinstance(cause, TimeoutError):
        kind = cause.type.name.lower() if cause.type else "activity"
        return "OperationTimedOut", f"the fleet did not answer in time ({kind} timeout)"
    return "FleetError", str(cause or err)


async def describe_scale_set(scale_set: str) -> ScaleSetView:
    result: steps.DescribeScaleSetResult = await workflow.execute_activity(
        steps.DESCRIBE_SCALE_SET,
        steps.DescribeScaleSetInput(scale_set=scale_set),
        result_type=steps.DescribeScaleSetResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=READ_ATTEMPT,
        retry_policy=FLEET_RETRY,
        summary=f"describe {scale_set}",
    )
    return result.scale_set


async def read_health(scale_set: str) -> HealthReading:
    result: HealthReading = await workflow.execute_activity(
        steps.READ_HEALTH,
        steps.ReadHealthInput(scale_set=scale_set),
        result_type=HealthReading,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=READ_ATTEMPT,
        retry_policy=FLEET_RETRY,
        summary=f"read the health of {scale_set}",
    )
    return result


async def resolve_image(image: ImageReference, scale_set: ScaleSetView) -> ImageReference:
    result: steps.ResolveImageResult = await workflow.execute_activity(
        steps.RESOLVE_IMAGE,
        steps.ResolveImageInput(image=image, scale_set=scale_set),
        result_type=steps.ResolveImageResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=READ_ATTEMPT,
        retry_policy=FLEET_RETRY,
        summary=f"resolve {image}",
    )
    return result.image


async def resolve_extensions(
    extensions: list[ExtensionRequest], scale_set: ScaleSetView
) -> list[ExtensionTarget]:
    result: steps.ResolveExtensionsResult = await workflow.execute_activity(
        steps.RESOLVE_EXTENSIONS,
        steps.ResolveExtensionsInput(extensions=extensions, scale_set=scale_set),
        result_type=steps.ResolveExtensionsResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=READ_ATTEMPT,
        retry_policy=FLEET_RETRY,
        summary=f"resolve extension versions of {scale_set.name}",
    )
    return result.extensions


async def install_extension(request: steps.InstallExtensionInput) -> FleetOperation:
    target = request.extension
    summary = f"install {target.name} {target.version} on {request.scale_set}/{request.instance_id}"
    return await _operation(steps.INSTALL_EXTENSION, request, summary)


async def reimage(request: steps.ReimageInput) -> FleetOperation:
    summary = f"reimage {request.scale_set}/{request.instance_id} → {request.image.resolved_version}"
    return await _operation(steps.REIMAGE_INSTANCE, request, summary)


async def restore_os_disk(request: steps.RestoreInput) -> FleetOperation:
    summary = f"restore {request.scale_set}/{request.instance_id} → {request.os_disk}"
    return await _operation(steps.RESTORE_OS_DISK, request, summary)


async def _operation(
    activity: str,
    request: steps.ReimageInput | steps.RestoreInput | steps.InstallExtensionInput,
    summary: str,
) -> FleetOperation:
    result: steps.OperationResult = await workflow.execute_activity(
        activity,
        request,
        result_type=steps.OperationResult,
        schedule_to_close_timeout=OPERATION_DEADLINE,
        heartbeat_timeout=OPERATION_HEARTBEAT,
        retry_policy=FLEET_RETRY,
        summary=summary,
    )
    return result.operation


async def surge_room(scale_set: str, count: int) -> steps.SurgeRoomResult:
    result: steps.SurgeRoomResult = await workflow.execute_activity(
        steps.SURGE_ROOM,
        steps.SurgeRoomInput(scale_set=scale_set, count=count),
        result_type=steps.SurgeRoomResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=READ_ATTEMPT,
        retry_policy=FLEET_RETRY,
        summary=f"core quota for {count} new instance(s) of {scale_set}",
    )
    return result


async def create_instances(request: steps.CreateInstancesInput) -> steps.CreateInstancesResult:
    summary = f"create {request.count} instance(s) of {request.scale_set} on {request.image}"
    return await _set_action(steps.CREATE_INSTANCES, request, steps.CreateInstancesResult, summary)


async def delete_instances(request: steps.DeleteInstancesInput) -> steps.DeleteInstancesResult:
    summary = f"delete {request.scale_set}/" + ",".join(request.instance_ids)
    return await _set_action(steps.DELETE_INSTANCES, request, steps.DeleteInstancesResult, summary)


async def _set_action(activity: str, request: object, result_type: type[R], summary: str) -> R:
    """A scale set's long-running action (MaxSurge's capacity raise, its deletes): polled and
    heartbeated like an instance's operation."""
    result: R = await workflow.execute_activity(
        activity,
        request,
        result_type=result_type,
        schedule_to_close_timeout=OPERATION_DEADLINE,
        heartbeat_timeout=OPERATION_HEARTBEAT,
        retry_policy=FLEET_RETRY,
        summary=summary,
    )
    return result


def start_wait_for_health(
    scale_set: str, instance_id: str, health: ApplicationHealthSettings, grace_remaining: float
) -> ActivityHandle[steps.HealthResult]:
    """Probe until Healthy (or Unhealthy after the grace period); the caller enforces the
    deadline with a durable timer.

    When the deadline fires the caller cancels the prober and moves on at once, but collects
    the cancelled prober before its workflow ends (WAIT_CANCELLATION_COMPLETED), so no activity
    outlives the workflow that started it.
    """
    return workflow.start_activity(
        steps.WAIT_FOR_HEALTH,
        steps.HealthInput(
            scale_set=scale_set,
            instance_id=instance_id,
            health=health,
            grace_remaining_seconds=grace_remaining,
        ),
        result_type=steps.HealthResult,
        schedule_to_close_timeout=health.health_wait_timeout + timedelta(minutes=1),
        heartbeat_timeout=timedelta(seconds=max(10, 3 * health.interval_in_seconds)),
        retry_policy=FLEET_RETRY,
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=f"wait for health of {scale_set}/{instance_id}",
    )


# One probe's answer, at most (the fleet client's own timeout is 10 s).
PROBE_ATTEMPT = timedelta(seconds=10)


def probe_timeouts(health: ApplicationHealthSettings) -> tuple[timedelta, timedelta]:
    """The last look's start-to-close (numberOfProbes answers, intervalInSeconds apart) and
    heartbeat timeouts (one heartbeat a probe)."""
    interval = timedelta(seconds=health.interval_in_seconds)
    probes = health.number_of_probes
    start_to_close = (probes - 1) * interval + probes * PROBE_ATTEMPT
    heartbeat = interval + PROBE_ATTEMPT + timedelta(seconds=5)
    return start_to_close, heartbeat


async def probe_health(
    scale_set: str, instance_id: str, health: ApplicationHealthSettings
) -> steps.HealthResult:
    """The last look at the health-wait deadline: the platform's verdict (timeouts sized for
    numberOfProbes looks, as upgrades started before one look was the verdict ran it). Retried
    as a read is, so a failing look (a bug, the fleet out of reach) gets a fixed worker's or the
    fleet's recovery before the instance is judged Unknown."""
    start_to_close, heartbeat = probe_timeouts(health)
    result: steps.HealthResult = await workflow.execute_activity(
        steps.PROBE_HEALTH,
        steps.HealthInput(scale_set=scale_set, instance_id=instance_id, health=health),
        result_type=steps.HealthResult,
        schedule_to_close_timeout=start_to_close + READ_DEADLINE,
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=heartbeat,
        retry_policy=FLEET_RETRY,
        summary=f"probe {scale_set}/{instance_id}",
    )
    return result


async def read_alarms(alarms: list[Alarm]) -> list[AlarmReading]:
    """Every alarm's state now. An alarm that cannot be read is a reading (Unreachable), so
    only a bug or a lost worker fails an attempt: retried as a read is."""
    result: ReadAlarmsResult = await workflow.execute_activity(
        READ_ALARMS,
        ReadAlarmsInput(alarms=alarms),
        result_type=ReadAlarmsResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=timedelta(minutes=1),  # ARM's paced reads may wait for a token
        retry_policy=FLEET_RETRY,
        summary="read alarms " + ", ".join(a.name for a in alarms),
    )
    return result.readings


async def deliver_webhook(delivery: WebhookDelivery) -> None:
    """A few quick retries: a notification may be lost, the upgrade may not wait on it."""
    await workflow.execute_activity(
        steps.DELIVER_WEBHOOK,
        delivery,
        start_to_close_timeout=timedelta(seconds=15),
        schedule_to_close_timeout=timedelta(seconds=60),
        retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=4),
        summary=f"notify {delivery.event.value} to {delivery.url}",
    )


async def survey_scale_sets(scale_sets: list[str]) -> list[steps.ScaleSetSurvey]:
    result: steps.SurveyResult = await workflow.execute_activity(
        steps.SURVEY_SCALE_SETS,
        steps.SurveyInput(scale_sets=scale_sets),
        result_type=steps.SurveyResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=timedelta(minutes=1),
        retry_policy=FLEET_RETRY,
        summary=f"read {len(scale_sets)} enrolled scale set(s)",
    )
    return result.sets


async def summarize_health(scale_sets: list[str]) -> list[steps.HealthSummary]:
    """Each set's unhealthy count now, at most HEALTH_SUMMARY_CHUNK sets a call."""
    chunks = [
        scale_sets[i : i + steps.HEALTH_SUMMARY_CHUNK]
        for i in range(0, len(scale_sets), steps.HEALTH_SUMMARY_CHUNK)
    ]
    results: list[steps.SummarizeHealthResult] = await asyncio.gather(
        *(
            workflow.execute_activity(
                steps.SUMMARIZE_HEALTH,
                steps.SummarizeHealthInput(scale_sets=chunk),
                result_type=steps.SummarizeHealthResult,
                schedule_to_close_timeout=READ_DEADLINE,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=FLEET_RETRY,
                summary=f"read the health of {len(chunk)} scale set(s)",
            )
            for chunk in chunks
        )
    )
    return [summary for result in results for summary in result.sets]


async def latest_versions(queries: list[steps.VersionQuery]) -> list[steps.LatestVersion]:
    result: steps.LatestVersionsResult = await workflow.execute_activity(
        steps.LATEST_VERSIONS,
        steps.LatestVersionsInput(queries=queries),
        result_type=steps.LatestVersionsResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=timedelta(minutes=1),
        retry_policy=FLEET_RETRY,
        summary="what 'latest' is in " + ", ".join(sorted({q.region for q in queries})),
    )
    return result.versions


async def newest_extension_versions(
    queries: list[steps.ExtensionVersionQuery],
) -> list[steps.NewestExtensionVersion]:
    result: steps.NewestExtensionVersionsResult = await workflow.execute_activity(
        steps.NEWEST_EXTENSION_VERSIONS,
        steps.NewestExtensionVersionsInput(queries=queries),
        result_type=steps.NewestExtensionVersionsResult,
        schedule_to_close_timeout=READ_DEADLINE,
        start_to_close_timeout=timedelta(minutes=1),
        retry_policy=FLEET_RETRY,
        summary="newest extension versions in " + ", ".join(sorted({q.region for q in queries})),
    )
    return result.versions
