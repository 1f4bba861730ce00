"""The floors the upgrade is measured against, in the same run.

(a) A bare Temporal workflow that runs the same number of no-op activities as the upgrade
    needed, at most 100 in flight (the per-workflow limit the upgrade respects too).
(b) A plain asyncio loop, not durable, making the same HTTP calls to the emulator: read the
    scale set's health per batch, then per instance reimage, poll the operation, probe until healthy.

`python -m bench.floors` runs the worker for (a) as its own process, like the upgrade's worker.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import activity, workflow

if TYPE_CHECKING:
    from models.image import ImageReference

NOOP_WORKFLOW = "BenchNoopWorkflow"
WINDOW = 100


@activity.defn(name="bench_noop")
async def noop(index: int) -> int:
    return index


@workflow.defn(name=NOOP_WORKFLOW)
class NoopWorkflow:
    @workflow.run
    async def run(self, count: int) -> int:
        window = asyncio.Semaphore(WINDOW)

        async def one(index: int) -> int:
            async with window:
                return await workflow.execute_activity(
                    noop, index, start_to_close_timeout=timedelta(seconds=30)
                )

        return len(await asyncio.gather(*(one(i) for i in range(count))))


async def http_floor(
    fleet_url: str, scale_set: str, batches: list[list[str]], image: ImageReference, interval: float
) -> None:
    """The upgrade's HTTP calls with nothing around them: the fastest the fleet allows."""
    from fleet.client import EmulatorClient
    from models.fleet import HealthState, OperationStatus
    from models.policy import ApplicationHealthSettings

    health = ApplicationHealthSettings(interval_in_seconds=max(1, int(interval)))
    async with EmulatorClient(fleet_url) as fleet:

        async def upgrade_one(instance_id: str) -> None:
            operation = await fleet.begin_reimage(
                scale_set, instance_id, image, f"floor/{scale_set}/{instance_id}"
            )
            while operation.status == OperationStatus.IN_PROGRESS:
                await asyncio.sleep(min(max(operation.retry_after_seconds or 0, 0.05), 2.0))
                operation = await fleet.get_operation(scale_set, operation.operation_id)
            while (await fleet.probe_health(scale_set, instance_id, health)).state != HealthState.HEALTHY:
                await asyncio.sleep(interval)

        for batch in batches:
            await fleet.read_health(scale_set)
            await asyncio.gather(*(upgrade_one(i) for i in batch))


async def _serve() -> None:
    import os

    from temporalio.worker import Worker

    from worker.connection import connect

    client = await connect()
    async with Worker(
        client,
        task_queue=os.environ["UPGRADE_TASK_QUEUE"],
        workflows=[NoopWorkflow],
        activities=[noop],
        max_concurrent_activities=1000,
        max_eager_activity_reservations_per_workflow_task=WINDOW,  # as the upgrade's worker
    ):
        print("worker started", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    from worker.process_exit import exit_after

    exit_after(lambda: asyncio.run(_serve()))
