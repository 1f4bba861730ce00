"""Run a worker: connect, register, serve, and on SIGINT/SIGTERM finish what is in hand."""

from __future__ import annotations

import asyncio
import signal

import structlog

from fleet.azure.backend import AzureFleet
from fleet.azure.settings import AzureSettings, AzureSettingsError
from worker.assembly import build_worker
from worker.connection import Settings, connect
from worker.deployment import DeploymentSettings, DeploymentSettingsError, set_current_command, take_current
from worker.logs import configure_logging
from worker.process_exit import exit_after
from worker.search_attribute_setup import ensure_search_attributes

log = structlog.get_logger("worker")


async def run_worker(settings: Settings | None = None) -> None:
    settings = settings or Settings()
    try:  # one line naming the variable, before anything starts
        azure = AzureSettings.from_env()
        deployment = DeploymentSettings.from_env(settings.task_queue)
    except (AzureSettingsError, DeploymentSettingsError) as err:
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
            deployment=deployment.version,
        )
        async with worker:
            current = await take_current(client, deployment)  # once it polls: see the module
            if current != deployment.version:
                log.warning(
                    "this build is not current: it serves only the upgrades pinned to it; make it "
                    "current (or ramp it) to send it new upgrades and the watcher",
                    current=current.to_canonical_string() if current else "unversioned",
                    command=set_current_command(deployment),
                )
            log.info(
                "worker started",
                deployment=deployment.name,
                build_id=deployment.build_id,
                current=current == deployment.version,
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
