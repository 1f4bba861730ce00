"""DeadlineClock: each health-wait deadline fires at its own time, on a single durable timer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.deadlines import DeadlineClock


@workflow.defn(sandboxed=False)
class ThreeDeadlinesWorkflow:
    """Deadlines armed at 0 s, 10 s and 20 s, each 60 s long; the second is withdrawn at 30 s
    (its instance became healthy). Returns when each deadline fired, in seconds from the start."""

    @workflow.run
    async def run(self) -> list[float | None]:
        clock = DeadlineClock()
        start = workflow.now()
        fired: list[float | None] = [None, None, None]

        async def wait(index: int, armed_at: float, withdraw_at: float | None) -> None:
            if armed_at:
                await workflow.sleep(armed_at)
            deadline = clock.after(timedelta(seconds=60))
            if withdraw_at is not None:
                await workflow.sleep(withdraw_at - armed_at)
                deadline.cancel()
                return
            await deadline
            fired[index] = (workflow.now() - start).total_seconds()

        await asyncio.gather(wait(0, 0, None), wait(1, 10, 30), wait(2, 20, None))
        return fired


async def test_each_deadline_fires_at_its_own_time_on_one_timer(ts_env: WorkflowEnvironment) -> None:
    task_queue = f"tq-{uuid.uuid4()}"
    async with Worker(ts_env.client, task_queue=task_queue, workflows=[ThreeDeadlinesWorkflow]):
        handle = await ts_env.client.start_workflow(
            ThreeDeadlinesWorkflow.run, id=f"deadlines-{uuid.uuid4()}", task_queue=task_queue
        )
        fired = await handle.result()
        history = await handle.fetch_history()

    assert fired[0] is not None and 60 <= fired[0] < 61
    assert fired[1] is None
    assert fired[2] is not None and 80 <= fired[2] < 81
    started = [
        e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    # Sleeps of 10 s, 20 s (arming) and 20 s (withdrawing); the clock's timers: 60 s from the
    # start, then 20 s to the third deadline at 80 s. The withdrawn one never had a timer.
    assert sorted(round(t.total_seconds()) for t in started) == [10, 20, 20, 20, 60]
