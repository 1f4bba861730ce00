"""The floors the upgrade is measured against, in the same run.

(a) A bare Temporal workflow that runs the same number of no-op activities as the upgrade
    needed, at most 100 in flight (the per-workflow limit the upgrade respects too).
(b) A plain asyncio loop, not durable, making the same ARM calls to the emulator through the same
    client (AzureFleet over HTTPS): read the scale set's health per batch, then per instance read
    it, reimage, poll the operation, read it again, probe until healthy.

`python -m bench.floors` runs the worker for (a) as its own process, like the upgrade's worker.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import activity, workflow

if TYPE_CHECKING:
    from models.image import ImageReference
    from starter.processes import EmulatorAddress

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
    emulator: EmulatorAddress,
    scale_set: str,
    batches: list[list[str]],
    image: ImageReference,
    interval: float,
) -> dict[str, int]:
    """The upgrade's ARM calls with nothing around them: the fastest the fleet allows.

    The same client (AzureFleet, built from the environment a worker gets) and the same calls as
    the activities: per batch a health read; per instance a read of the instance, the reimage,
    polls of its status URL as Retry-After says, a read of the instance, then (coalesced) health
    reads every `interval` until healthy. Returns AzureFleet.calls (this process's ARM calls).
    """
    from activities.exactly_once import poll_seconds
    from fleet.azure.backend import AzureFleet
    from fleet.azure.settings import AzureSettings
    from models.fleet import HealthState, OperationStatus
    from models.policy import ApplicationHealthSettings

    health = ApplicationHealthSettings(interval_in_seconds=max(1, int(interval)))
    from fleet.azure.read_pacing import UNPACED

    async with AzureFleet(AzureSettings.from_env({**emulator.env(), **UNPACED})) as fleet:

        async def upgrade_one(instance_id: str) -> None:
            await fleet.get_instance(scale_set, instance_id)
            operation = await fleet.begin_reimage(scale_set, instance_id, image)
            while (operation := await fleet.get_operation(operation)).status == OperationStatus.IN_PROGRESS:
                await asyncio.sleep(poll_seconds(operation.retry_after_seconds))
            await fleet.get_instance(scale_set, instance_id)
            while (await fleet.probe_health(scale_set, instance_id, health)).state != HealthState.HEALTHY:
                await asyncio.sleep(interval)

        for batch in batches:
            await fleet.read_health(scale_set)
            await asyncio.gather(*(upgrade_one(i) for i in batch))
        return dict(fleet.calls)


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
