"""Automatic OS image and extension upgrades from the user's side: enroll and withdraw scale sets,
change the watcher's settings, list and steer rollouts. What `upgradectl auto` and `upgradectl rollout` do
over Temporal (the commands: starter/auto_commands.py).

Enrollments live in one durable workflow per deployment (its task queue, UPGRADE_TASK_QUEUE):
`automatic-os-upgrades` on the default queue (models/automatic.py says why), reached by name: the
starter never imports workflows/. Commands that change something start the watcher when it is
not running yet; commands that only read never start it (no watcher: nothing enrolled, no
rollout). Each rollout of one version of one image is a workflow of its own,
`rollout/<image>/<version>` (of an extension: `rollout/ext:<publisher.type>/<version>`, a retry
`.../retry-<n>`), found through the watcher's `rollouts` query.

A refusal of the watcher (an ApplicationError whose type is an Azure-style code) becomes
UpgradeRefused (exit 3); a scale set that is not enrolled or a version with no rollout is
NoSuchEnrollment / NoSuchRollout (exit 5); no worker answering in time is UpgradeFailed (exit 4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.automatic import (
    AUTOMATIC_UPGRADES_WORKFLOW,
    COHORT_QUERY,
    ENDED,
    ENROLL_UPDATE,
    ENROLLMENTS_QUERY,
    HOLD_SIGNAL,
    RESUME_SIGNAL,
    ROLLOUT_CANCEL_SIGNAL,
    ROLLOUT_QUERY,
    ROLLOUTS_QUERY,
    SETTINGS_UPDATE,
    STATE_QUERY,
    WITHDRAW_UPDATE,
    AutomaticSettings,
    AutomaticState,
    CohortStatus,
    Enrollment,
    EnrollRequest,
    HoldRequest,
    RolloutSet,
    RolloutSetState,
    RolloutStatus,
    RolloutSummary,
    WithdrawRequest,
    image_source_key,
    watcher_workflow_id,
)
from models.image import ImageReference
from models.status import RollingUpgradeStatusInfo, UpgradeWaitKind
from models.upgrade import STATUS_QUERY
from starter.upgrades import QUERY_TIMEOUT, NoSuchUpgrade, UpgradeFailed, UpgradeRefused

T = TypeVar("T")
# How long a change (an update of the watcher) may wait for a worker before we give up.
UPDATE_TIMEOUT = 60.0
NOT_ENROLLED = "NotEnrolled"
WATCHER_SUMMARY = "automatic OS image upgrades: enrolled scale sets, new image versions, rollouts"


class NoSuchEnrollment(NoSuchUpgrade):
    """The scale set is not enrolled in automatic OS image upgrades."""


class NoSuchRollout(NoSuchUpgrade):
    """No rollout (or no running one) has that version."""


@dataclass
class Overview:
    """What `upgradectl auto show` prints: the settings in force and every enrollment."""

    running: bool
    settings: AutomaticSettings = field(default_factory=AutomaticSettings)
    enrollments: list[Enrollment] = field(default_factory=list)


def watcher(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
    """The latest run of the task queue's watcher (one per deployment; continue-as-new keeps
    its id): `automatic-os-upgrades` on the default queue."""
    return client.get_workflow_handle(watcher_workflow_id(task_queue))


async def ensure_watcher(client: Client, task_queue: str) -> WorkflowHandle[Any, Any]:
    """Start the watcher unless it runs already. A watcher that ended (terminated from the Web
    UI, say) is started again with its enrollments and settings, read from the ended run, so
    nothing enrolled is lost. The start is tried and an existing run tolerated (the
    time-skipping test server does not take id conflict policies)."""
    handle = watcher(client, task_queue)
    state = AutomaticState()
    try:
        description = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    else:
        if description.status == WorkflowExecutionStatus.RUNNING:
            return handle
        state = await _query(handle, STATE_QUERY, AutomaticState)  # (a worker replays it)
    try:
        await client.start_workflow(
            AUTOMATIC_UPGRADES_WORKFLOW,
            state,
            id=watcher_workflow_id(task_queue),
            task_queue=task_queue,
            static_summary=WATCHER_SUMMARY,
        )
    except WorkflowAlreadyStartedError:
        return handle  # started meanwhile
    except RPCError as err:
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    return watcher(client, task_queue)


async def _answer(call: Awaitable[T], what: str) -> T:
    """A query or update, with the errors users meet as our own exceptions."""
    try:
        return await asyncio.wait_for(call, UPDATE_TIMEOUT)
    except TimeoutError:
        raise UpgradeFailed(
            f"no worker answered {what} within {UPDATE_TIMEOUT:.0f} s: is a worker running "
            "(`upgradectl worker`, the same UPGRADE_TASK_QUEUE)?"
        ) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            if cause.type == NOT_ENROLLED:
                raise NoSuchEnrollment(cause.message) from None
            raise UpgradeRefused(cause.type or "Refused", cause.message) from None
        raise
    except RPCError as err:
        if err.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise UpgradeFailed(
                f"no worker answered {what} within {QUERY_TIMEOUT.total_seconds():.0f} s: "
                "is a worker running?"
            ) from None
        raise


async def _query(handle: WorkflowHandle[Any, Any], name: str, result_type: type[T]) -> T:
    return await _answer(
        handle.query(name, result_type=result_type, rpc_timeout=QUERY_TIMEOUT),
        f"the {name} query of {handle.id}",
    )


async def _update(handle: WorkflowHandle[Any, Any], name: str, arg: Any, result_type: type[T]) -> T:
    return await _answer(
        handle.execute_update(name, arg, result_type=result_type), f"the {name} update of {handle.id}"
    )


async def _watcher_exists(handle: WorkflowHandle[Any, Any]) -> bool:
    try:
        await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


# --- enrollments --------------------------------------------------------------------------------


async def enroll(client: Client, task_queue: str, request: EnrollRequest) -> Enrollment:
    """Opt a scale set in (or change its policy); the watcher refuses what it cannot follow."""
    handle = await ensure_watcher(client, task_queue)
    return await _update(handle, ENROLL_UPDATE, request, Enrollment)


async def withdraw(client: Client, task_queue: str, request: WithdrawRequest) -> Enrollment:
    """Opt a scale set out: no new automatic upgrade starts; one in flight finishes, or is
    cancelled with `cancel_in_flight`. Returns the enrollment removed."""
    handle = watcher(client, task_queue)
    if not await _watcher_exists(handle):
        raise NoSuchEnrollment(f"scale set {request.scale_set!r} is not enrolled (nothing is)")
    return await _update(handle, WITHDRAW_UPDATE, request, Enrollment)


async def enrollments(client: Client, task_queue: str) -> list[Enrollment]:
    handle = watcher(client, task_queue)
    if not await _watcher_exists(handle):
        return []
    return await _query(handle, ENROLLMENTS_QUERY, list[Enrollment])


async def overview(client: Client, task_queue: str) -> Overview:
    """The settings in force and every enrollment; the defaults when no watcher runs."""
    handle = watcher(client, task_queue)
    try:
        description = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return Overview(running=False)
        raise
    if description.status != WorkflowExecutionStatus.RUNNING:  # ended: what the next start keeps
        state = await _query(handle, STATE_QUERY, AutomaticState)
        listed = [state.enrollments[name] for name in sorted(state.enrollments)]
        return Overview(running=False, settings=state.settings, enrollments=listed)
    listed = await _query(handle, ENROLLMENTS_QUERY, list[Enrollment])
    return Overview(running=True, settings=await current_settings(client, task_queue), enrollments=listed)


# --- settings -----------------------------------------------------------------------------------


async def current_settings(client: Client, task_queue: str) -> AutomaticSettings:
    """The settings in force, read from the watcher's current run: those it started with
    (carried across continue-as-new in its input), then the result of each `settings` update
    since. The watcher has no settings query; its history is bounded by continue-as-new."""
    handle = watcher(client, task_queue)
    converter = client.data_converter
    settings = AutomaticSettings()
    names: dict[str, str] = {}  # update id -> update name
    try:
        history = await handle.fetch_history()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return settings
        raise
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if payloads:
                [state] = await converter.decode(payloads[:1], [AutomaticState])
                settings = state.settings
        elif event.HasField("workflow_execution_update_accepted_event_attributes"):
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            names[request.meta.update_id] = request.input.name
        elif event.HasField("workflow_execution_update_completed_event_attributes"):
            completed = event.workflow_execution_update_completed_event_attributes
            if names.get(completed.meta.update_id) == SETTINGS_UPDATE and completed.outcome.HasField(
                "success"
            ):
                payloads = completed.outcome.success.payloads
                if payloads:
                    [settings] = await converter.decode(payloads[:1], [AutomaticSettings])
    return settings


async def change_settings(client: Client, task_queue: str, settings: AutomaticSettings) -> AutomaticSettings:
    """Put these settings in force (the whole of them); returns what the watcher now uses."""
    handle = await ensure_watcher(client, task_queue)
    return await _update(handle, SETTINGS_UPDATE, settings, AutomaticSettings)


# --- rollouts -----------------------------------------------------------------------------------


async def rollouts(client: Client, task_queue: str) -> list[RolloutSummary]:
    """The rollouts in flight and the recent ended ones, as the watcher keeps them."""
    handle = watcher(client, task_queue)
    if not await _watcher_exists(handle):
        return []
    return await _query(handle, ROLLOUTS_QUERY, list[RolloutSummary])


def source_name(summary: RolloutSummary) -> str:
    """The rollout's image as one short text: `<gallery>/<image>` or `publisher:offer:sku` (an
    extension's: `ext:publisher.type`)."""
    try:
        return image_source_key(ImageReference.parse(summary.source))
    except ValueError:
        return summary.source


def matching(summaries: list[RolloutSummary], version: str, source: str | None) -> list[RolloutSummary]:
    """The rollouts of `version` (of the image `source`, by its short name or in full, when
    given), newest first."""
    wanted = source.strip().strip("/").lower() if source is not None else None
    chosen = [
        s
        for s in summaries
        if s.version.lower() == version.lower()
        and (wanted is None or wanted in (s.source.strip("/").lower(), source_name(s).lower()))
    ]
    return sorted(chosen, key=lambda s: (s.state not in ENDED, s.start_time is not None, s.start_time))[::-1]


def _unknown(summaries: list[RolloutSummary], version: str, source: str | None, running: bool) -> str:
    what = f"no {'running ' if running else ''}rollout has version {version!r}"
    if source is not None:
        what += f" of {source!r}"
    pool = [s for s in summaries if not running or s.state not in ENDED]
    known = sorted({f"{s.version} ({source_name(s)})" for s in pool})
    if known:
        return what + "; " + ("running" if running else "known") + ": " + ", ".join(known[:10])
    return what + ("; none is running" if running else "; there are none yet (`upgradectl rollout list`)")


async def rollout_statuses(
    client: Client, task_queue: str, version: str, source: str | None = None
) -> list[RolloutStatus]:
    """Every rollout of `version` (several images may share a version), each as it is now."""
    summaries = await rollouts(client, task_queue)
    chosen = matching(summaries, version, source)
    if not chosen:
        raise NoSuchRollout(_unknown(summaries, version, source, running=False))
    return [await rollout_status(client, s.workflow_id) for s in chosen]


async def rollout_status(client: Client, workflow_id: str) -> RolloutStatus:
    handle = client.get_workflow_handle(workflow_id)
    return await with_cohorts(client, await _query(handle, ROLLOUT_QUERY, RolloutStatus))


async def with_cohorts(client: Client, status: RolloutStatus) -> RolloutStatus:
    """A rollout as it is now: each cohort in flight (a child workflow of the rollout, so that
    no history grows with the fleet) has its sets' progress and its zone wave; the rollout's
    own status has them once the cohort ends. A cohort that ended meanwhile is left out."""
    if not status.cohorts:
        return status
    answers = await asyncio.gather(
        *(_query(client.get_workflow_handle(c), COHORT_QUERY, CohortStatus) for c in status.cohorts),
        return_exceptions=True,
    )
    cohorts = [answer for answer in answers if isinstance(answer, CohortStatus)]
    live = {item.scale_set: item for cohort in cohorts for item in cohort.sets}
    waves = {cohort.region: cohort.wave for cohort in cohorts if cohort.wave}
    sets = await _with_windows(client, [live.get(item.scale_set, item) for item in status.sets])
    return status.model_copy(update={"sets": sets, "waves": waves})


async def _with_windows(client: Client, sets: list[RolloutSet]) -> list[RolloutSet]:
    """Each set in flight whose upgrade holds for its maintenance window says until when (the
    upgrade's own status: the sets in flight are few, bounded per region)."""
    running = [s for s in sets if s.state == RolloutSetState.RUNNING and s.workflow_id]
    answers = await asyncio.gather(
        *(
            _query(client.get_workflow_handle(str(s.workflow_id)), STATUS_QUERY, RollingUpgradeStatusInfo)
            for s in running
        ),
        return_exceptions=True,
    )
    waits = {
        s.scale_set: answer.properties.wait.reason
        for s, answer in zip(running, answers, strict=True)
        if isinstance(answer, RollingUpgradeStatusInfo)
        and answer.properties is not None
        and answer.properties.wait is not None
        and answer.properties.wait.kind == UpgradeWaitKind.MAINTENANCE_WINDOW
    }
    return [s.model_copy(update={"message": waits[s.scale_set]}) if s.scale_set in waits else s for s in sets]


async def running_rollout(
    client: Client, task_queue: str, version: str, source: str | None = None
) -> RolloutSummary:
    """The one running rollout of `version`: NoSuchRollout if none, UpgradeRefused if the
    version is running for several images and `source` does not pick one."""
    summaries = await rollouts(client, task_queue)
    chosen = [s for s in matching(summaries, version, source) if s.state not in ENDED]
    if not chosen:
        raise NoSuchRollout(_unknown(summaries, version, source, running=True))
    if len(chosen) > 1:
        sources = ", ".join(source_name(s) for s in chosen)
        raise UpgradeRefused(
            "AmbiguousRollout",
            f"version {version!r} is rolling out for {len(chosen)} images ({sources}): "
            "pick one with --source",
        )
    return chosen[0]


async def _signal(client: Client, summary: RolloutSummary, name: str, request: HoldRequest) -> None:
    try:
        await client.get_workflow_handle(summary.workflow_id).signal(name, request)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise NoSuchRollout(
                f"the rollout of {summary.version} ({source_name(summary)}) ended just now: nothing to {name}"
            ) from None
        raise


# What `rollout hold|resume|cancel` send: hold starts no new upgrade of the rollout until
# resumed (those in flight finish); cancel also cancels those in flight.
STEERING = {"hold": HOLD_SIGNAL, "resume": RESUME_SIGNAL, "cancel": ROLLOUT_CANCEL_SIGNAL}


async def steer(
    client: Client,
    task_queue: str,
    action: str,
    version: str,
    request: HoldRequest,
    source: str | None = None,
) -> RolloutSummary:
    """Send `action` (a key of STEERING) to the running rollout of `version`."""
    summary = await running_rollout(client, task_queue, version, source)
    await _signal(client, summary, STEERING[action], request)
    return summary
