"""Run a worker: connect, register, serve, and on SIGINT/SIGTERM finish what is in hand."""

from __future__ import annotations

import asyncio
import signal

import structlog

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings, AzureSettingsError
from worker.assembly import build_worker
from worker.connection import Settings, connect
from worker.logs import configure_logging
from worker.process_exit import exit_after
from worker.search_attribute_setup import ensure_search_attributes

log = structlog.get_logger("worker")


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    try:
        azure = AzureSettings.from_env()
    except AzureSettingsError as err:  # one line naming the variable, before anything starts
        raise SystemExit(f"error: {err}") from None
    client = await connect()
    if added := await ensure_search_attributes(client):
        log.info("registered search attributes", names=added, namespace=client.namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AzureFleet(azure) as fleet:
        worker = build_worker(
            client,
            fleet,
            settings.task_queue,
            max_concurrent_activities=settings.max_concurrent_activities,
        )
        async with worker:
            log.info(
                "worker started",
                task_queue=settings.task_queue,
                namespace=client.namespace,
                arm_endpoint=azure.endpoint,
                subscription=azure.subscription_id,
                resource_group=azure.resource_group,
            )
            await stop.wait()
            log.info("worker stopping: finishing activities in hand")
    log.info("worker stopped")


def main() -> None:
    configure_logging()
    exit_after(lambda: asyncio.run(run_worker()))
