"""The watcher at fleet scale (issue 17): 1,000 enrollments, streamed in 16 at a time, and several
looks keep every run of `automatic-os-upgrades` under Temporal's 10,240-event warning and its
history under the 10 MB one, every payload under the 2 MB blob limit (each survey call far under
the 512 KB warning), and every enrollment survives each continue-as-new. On the time-skipping
server through the Azure SDK to the emulator, with a worker whose ARM read budget is unpaced (the
paced budget would make the looks last minutes of real time, not change the history)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fleet.azure.backend import AzureFleet
from fleet.azure.read_pacing import UNPACED
from fleet.azure.settings import AzureSettings
from models import steps
from models.automatic import AutomaticState, RolloutRequest, watcher_workflow_id
from starter.processes import EmulatorAddress
from tests.helpers.automatic import Images, enroll, make_set, watcher
from worker.assembly import build_worker
from workflows.automatic_upgrades import HISTORY_LIMIT, SURVEY_CHUNK

SETS = 1_000
REGIONS = ("westeurope", "northeurope", "eastus")
EVENTS_WARNING = 10_240
HISTORY_SIZE_WARNING = 10 * 1024 * 1024
BLOB_LIMIT = 2 * 1024 * 1024
BLOB_WARNING = 512 * 1024


@dataclass
class Run:
    run_id: str
    events: int
    size: int  # bytes, as the server counts them at the run's last workflow task
    largest_payload: int  # the largest input or result in it
    survey_calls: list[int]  # scale sets per survey call
    largest_survey: int  # the largest survey result
    continued: bool
    state: AutomaticState  # its input


async def runs_of(client: Client, workflow_id: str) -> list[Run]:
    """Every run of a workflow, oldest first."""
    run_id = (await client.get_workflow_handle(workflow_id).describe()).run_id
    runs: list[Run] = []
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        [state] = await pydantic_data_converter.decode(started.input.payloads, [AutomaticState])
        sizes, surveys, history_size = [started.input.ByteSize()], [], 0
        kinds: dict[int, str] = {}  # scheduled event id -> activity type
        survey_results = [0]
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled = event.activity_task_scheduled_event_attributes
                sizes.append(scheduled.input.ByteSize())
                kinds[event.event_id] = scheduled.activity_type.name
                if scheduled.activity_type.name == steps.SURVEY_SCALE_SETS:
                    [survey] = await pydantic_data_converter.decode(
                        scheduled.input.payloads, [steps.SurveyInput]
                    )
                    surveys.append(len(survey.scale_sets))
            elif event.HasField("activity_task_completed_event_attributes"):
                completed = event.activity_task_completed_event_attributes
                sizes.append(completed.result.ByteSize())
                if kinds.get(completed.scheduled_event_id) == steps.SURVEY_SCALE_SETS:
                    survey_results.append(completed.result.ByteSize())
            elif event.HasField("workflow_execution_continued_as_new_event_attributes"):
                sizes.append(event.workflow_execution_continued_as_new_event_attributes.input.ByteSize())
            elif event.HasField("workflow_task_started_event_attributes"):
                history_size = event.workflow_task_started_event_attributes.history_size_bytes
        last = history.events[-1].event_type
        runs.append(
            Run(
                run_id=run_id,
                events=len(history.events),
                size=history_size,
                largest_payload=max(sizes),
                survey_calls=surveys,
                largest_survey=max(survey_results),
                continued=last == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
                state=state,
            )
        )
        run_id = started.continued_execution_run_id
    return runs[::-1]


@pytest.fixture
async def unpaced_worker(ts_env: WorkflowEnvironment, emulator: EmulatorAddress) -> AsyncIterator[Worker]:
    env = {**emulator.env(), **UNPACED}
    async with (
        AzureFleet(AzureSettings.from_env(env)) as backend,
        build_worker(ts_env.client, backend, f"tq-{uuid.uuid4()}") as worker,
    ):
        yield worker


async def test_a_watcher_with_a_thousand_enrollments_keeps_every_run_bounded(ts_env, unpaced_worker, fleet):
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    gate = asyncio.Semaphore(16)

    async def one_set(i: int) -> str:
        async with gate:
            return await make_set(fleet, images.latest, REGIONS[i % len(REGIONS)], 1)

    names = await asyncio.gather(*map(one_set, range(SETS)))
    handle = await watcher(ts_env.client, unpaced_worker.task_queue, poll_interval=timedelta(hours=1))

    async def enrolled(name: str) -> None:
        async with gate:  # a script enrolling its estate, 16 at a time
            await enroll(handle, name)

    await asyncio.gather(*map(enrolled, names))
    for _ in range(6):  # six looks at every set
        await ts_env.sleep(timedelta(hours=1))

    runs = await runs_of(ts_env.client, watcher_workflow_id(unpaced_worker.task_queue))
    for run in runs:
        print(
            f"run {run.run_id[:8]}: {run.events} events, {run.size / 1e6:.2f} MB, largest payload "
            f"{run.largest_payload / 1e3:.0f} KB, {len(run.survey_calls)} survey calls (largest result "
            f"{run.largest_survey / 1e3:.0f} KB), "
            f"{len(run.state.enrollments)} enrollments in its input"
        )
        assert run.events < EVENTS_WARNING
        assert run.size < HISTORY_SIZE_WARNING
        assert run.largest_payload < BLOB_LIMIT
        assert all(0 < count <= SURVEY_CHUNK for count in run.survey_calls)
        assert run.largest_survey < BLOB_WARNING
    assert all(run.continued for run in runs[:-1])
    # The enrollments stream past the event limit; the looks of 1,000 sets past the size limit.
    assert any(run.events > HISTORY_LIMIT for run in runs)
    assert any(run.continued and run.events < HISTORY_LIMIT for run in runs)
    # Every enrollment went along, as it was observed.
    for run in runs[1:]:
        assert sorted(run.state.enrollments) == sorted(names)
    state = await handle.query("state", result_type=AutomaticState)
    assert sorted(state.enrollments) == sorted(names)
    assert all(
        e.location and e.note is None and e.applied_version == "1.0.0" for e in state.enrollments.values()
    )
    # What a rollout of a new version to every set would carry fits one payload.
    request = RolloutRequest(
        version="1.1.0", enrollments=list(state.enrollments.values()), phases=[list(REGIONS)]
    )
    [payload] = pydantic_data_converter.payload_converter.to_payloads([request])
    print(f"a rollout request of {SETS} sets: {payload.ByteSize() / 1e3:.0f} KB")
    assert payload.ByteSize() < BLOB_LIMIT
