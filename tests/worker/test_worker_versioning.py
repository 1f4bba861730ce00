"""New code under running upgrades: two worker builds of one Worker Deployment on the session's
dev server (worker versioning on). An upgrade stays on the build that started it, even when the
new build's upgrade workflow issues different commands without a patch; new upgrades go to the
current build; the old build drains. The watcher (auto-upgrade) moves to the new build, and its
next continue-as-new starts there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.deployment.v1 import WorkerDeploymentVersion as WorkerDeploymentVersionProto
from temporalio.api.enums.v1 import EventType, VersionDrainageStatus
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.api.workflowservice.v1 import DescribeWorkerDeploymentVersionRequest
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowHandle
from temporalio.common import VersioningBehavior, WorkerDeploymentVersion
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from fleet.azure.backend import AzureFleet
from models.automatic import CHECK_NOW_SIGNAL
from models.status import RollingUpgradeStatusCode, UpgradeWaitKind
from models.upgrade import (
    PAUSE_SIGNAL,
    RESUME_SIGNAL,
    ROLLING_UPGRADE_WORKFLOW,
    PauseRequest,
    UpgradeReport,
    UpgradeRequest,
)
from rules import presentation
from starter.automatic import ensure_watcher
from starter.upgrades import final_report, get_status
from tests.helpers.upgrades import eventually, make_scale_set, upgrade
from worker.assembly import WORKFLOWS, build_worker
from worker.deployment import DeploymentSettings, MakeCurrent, take_current
from workflows import automatic_upgrades
from workflows.rolling_upgrade import RollingUpgradeWorkflow

BUILD_2_MARK = "build 2 starts with a timer"
UPGRADE_WAIT = 60  # seconds; an upgrade stuck on a nondeterminism error would wait forever


@workflow.defn(name=ROLLING_UPGRADE_WORKFLOW, versioning_behavior=VersioningBehavior.PINNED, sandboxed=False)
class RollingUpgradeWorkflowBuild2(RollingUpgradeWorkflow):
    """Build 2's upgrade: a timer first, then the same upgrade, and no patch. A history of build
    1 does not replay on it (a nondeterminism error), so no build-1 upgrade may ever reach it.
    (Unsandboxed: the sandbox would re-import this test module, with its fleet back end.)"""

    @workflow.run
    async def run(self, request: UpgradeRequest) -> UpgradeReport:
        await workflow.sleep(timedelta(milliseconds=1), summary=BUILD_2_MARK)
        return await super().run(request)


BUILD_2 = [RollingUpgradeWorkflowBuild2 if w is RollingUpgradeWorkflow else w for w in WORKFLOWS]


@dataclass
class Builds:
    client: Client
    task_queue: str
    one: DeploymentSettings
    two: DeploymentSettings

    async def make_current(self, build: DeploymentSettings) -> None:
        """The operator's `temporal worker deployment set-current-version`."""
        settings = DeploymentSettings(build.name, build.build_id, MakeCurrent.ALWAYS)
        assert await take_current(self.client, settings) == build.version


@asynccontextmanager
async def two_builds(client: Client, azure: AzureFleet, **options: Any) -> AsyncIterator[Builds]:
    """Builds 1 and 2 of a deployment of its own, both polling one task queue; build 1 is
    current (the deployment's first build makes itself so, as `python -m worker` does)."""
    task_queue = f"tq-{uuid.uuid4()}"
    one, two = (DeploymentSettings(task_queue, build_id) for build_id in ("1", "2"))
    async with AsyncExitStack() as stack:
        for build, workflows in ((one, WORKFLOWS), (two, BUILD_2)):
            worker = build_worker(
                client, azure, task_queue, deployment=build.version, workflows=workflows, **options
            )
            await stack.enter_async_context(worker)
            # Build 1 makes itself current; build 2 finds build 1 chosen and leaves it.
            assert await take_current(client, build) == one.version
        yield Builds(client, task_queue, one, two)


def versioning(description: WorkflowExecutionDescription) -> tuple[str, int]:
    info = description.raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id, info.behavior


async def task_builds(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The build of each workflow task of the run, in order; fails on any failed task (a
    nondeterminism error, say)."""
    builds = []
    async for event in handle.fetch_history_events():
        assert event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, event
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            builds.append(event.workflow_task_completed_event_attributes.deployment_version.build_id)
    return builds


async def timer_summaries(client: Client, handle: WorkflowHandle[Any, Any]) -> list[str]:
    converter = client.data_converter.payload_converter
    return [
        converter.from_payload(event.user_metadata.summary, str)
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED and event.user_metadata.HasField("summary")
    ]


async def drainage(client: Client, version: WorkerDeploymentVersion) -> int:
    described = await client.workflow_service.describe_worker_deployment_version(
        DescribeWorkerDeploymentVersionRequest(
            namespace=client.namespace,
            deployment_version=WorkerDeploymentVersionProto(
                deployment_name=version.deployment_name, build_id=version.build_id
            ),
        )
    )
    return described.worker_deployment_version_info.drainage_info.status


async def replays(workflows: Sequence[type], handle: WorkflowHandle[Any, Any]) -> bool:
    replayer = Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
    if result.replay_failure is not None:
        assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure
    return result.replay_failure is None


async def test_a_running_upgrade_ends_on_its_build_while_a_new_build_takes_new_upgrades(
    local_env, azure, fleet, upgradectl
):
    client = local_env.client
    async with two_builds(client, azure) as builds:
        # Build 1 starts an upgrade, held after its first batch.
        first = await make_scale_set(fleet, 4, update_domains=1)
        handle, _ = await upgrade(client, builds.task_queue, first)
        await handle.signal(PAUSE_SIGNAL, PauseRequest(reason="release", by="test"))
        held = await eventually(
            lambda: get_status(client, first),
            lambda s: s.properties.wait is not None and s.properties.wait.kind == UpgradeWaitKind.PAUSED,
        )
        assert held.properties.progress.pending_instance_count > 0  # more to do after the release

        # Build 2 becomes current mid-upgrade; the upgrade goes on, and ends, on build 1.
        await builds.make_current(builds.two)
        await handle.signal(RESUME_SIGNAL)
        report = await asyncio.wait_for(final_report(handle), UPGRADE_WAIT)
        assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
        assert report.status.properties.progress.successful_instance_count == 4
        description = await handle.describe()
        assert versioning(description) == ("1", VersioningBehavior.PINNED)
        assert set(await task_builds(handle)) == {"1"}
        # `upgradectl status` and the Web UI's details say which build runs it.
        shown = await upgradectl("status", first)
        assert f"1 of worker deployment {builds.task_queue} (pinned)" in shown.out
        metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert presentation.running_on(builds.one.version) in metadata.current_details
        assert BUILD_2_MARK not in await timer_summaries(client, handle)
        # Had it reached build 2, build 2 could not have carried it on.
        assert await replays(WORKFLOWS, handle) and not await replays(BUILD_2, handle)

        # A new upgrade runs on build 2, its code.
        second = await make_scale_set(fleet, 2, update_domains=1)
        handle, _ = await upgrade(client, builds.task_queue, second)
        report = await asyncio.wait_for(final_report(handle), UPGRADE_WAIT)
        assert report.status.properties.running_status.code == RollingUpgradeStatusCode.COMPLETED
        assert versioning(await handle.describe()) == ("2", VersioningBehavior.PINNED)
        assert set(await task_builds(handle)) == {"2"}
        assert BUILD_2_MARK in await timer_summaries(client, handle)

        # Nothing pinned to build 1 is open any more: it drains, and can be stopped.
        await eventually(
            lambda: drainage(client, builds.one.version),
            lambda status: status == VersionDrainageStatus.VERSION_DRAINAGE_STATUS_DRAINED,
        )


async def test_the_watcher_moves_to_the_new_build_and_continues_as_new_there(
    local_env: WorkflowEnvironment, azure: AzureFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run continues as new past HISTORY_LIMIT events: a few looks here (module constants are
    # shared with unsandboxed workflows).
    monkeypatch.setattr(automatic_upgrades, "HISTORY_LIMIT", 30)
    client = local_env.client
    async with two_builds(client, azure, workflow_runner=UnsandboxedWorkflowRunner()) as builds:
        watcher = await ensure_watcher(client, builds.task_queue)
        started = await eventually(watcher.describe, lambda d: versioning(d)[0] == "1")
        assert versioning(started) == ("1", VersioningBehavior.AUTO_UPGRADE)

        await builds.make_current(builds.two)

        async def look_again():
            await watcher.signal(CHECK_NOW_SIGNAL)
            return await watcher.describe()

        continued = await eventually(look_again, lambda d: d.run_id != started.run_id)
        first_run = client.get_workflow_handle(watcher.id, run_id=started.run_id)
        builds_of_first_run = await task_builds(first_run)
        assert builds_of_first_run[0] == "1" and builds_of_first_run[-1] == "2"
        new_run = await eventually(
            lambda: client.get_workflow_handle(watcher.id, run_id=continued.run_id).describe(),
            lambda d: versioning(d)[0] != "",
        )
        assert versioning(new_run) == ("2", VersioningBehavior.AUTO_UPGRADE)
        assert set(await task_builds(client.get_workflow_handle(watcher.id, run_id=new_run.run_id))) == {"2"}
        await watcher.terminate("test over")
