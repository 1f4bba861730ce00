"""The worker: every workflow and activity of the product on one task queue."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from activities.alarms import AlarmActivities
from activities.automatic_activities import AutomaticActivities
from activities.fleet_activities import FleetActivities
from activities.webhooks import WebhookActivities
from fleet.azure.read_pacing import set_keep_alive
from fleet.protocol import FleetBackend
from worker.keep_alive import HeartbeatMemory, heartbeat_again
from workflows.admission import UpgradePreflightWorkflow
from workflows.automatic_upgrades import AutomaticOSUpgradesWorkflow
from workflows.batch_upgrade import BatchUpgradeWorkflow
from workflows.rolling_upgrade import MAX_INSTANCES_PER_CHILD, RollingUpgradeWorkflow
from workflows.rollout import RolloutWorkflow
from workflows.rollout_cohort import RolloutCohortWorkflow
from workflows.rollout_rollback import RolloutRollbackWorkflow

# Each declares its versioning behavior (a versioned worker refuses a workflow without one):
# the upgrade, its batches and the preflight are pinned to the build that started them; the
# watcher, rollouts and cohorts are auto-upgrade (docs/operating.md, "Releases").
WORKFLOWS: list[type] = [
    RollingUpgradeWorkflow,
    BatchUpgradeWorkflow,
    UpgradePreflightWorkflow,
    AutomaticOSUpgradesWorkflow,
    RolloutWorkflow,
    RolloutCohortWorkflow,
    RolloutRollbackWorkflow,
]


def build_worker(
    client: Client,
    fleet: FleetBackend,
    task_queue: str,
    *,
    max_concurrent_activities: int = 1000,
    webhook_secret: str | None = None,
    deployment: WorkerDeploymentVersion | None = None,
    workflows: Sequence[type] = WORKFLOWS,
    **options: Any,  # more of Worker's keyword arguments
) -> Worker:
    # Health waits are long, mostly idle activities: one per instance of a batch in flight.
    # A heartbeat with news goes out within a second (activities/heartbeats.py paces the
    # others to one every 4 s), so a prober cancelled at its health-wait deadline hears of it
    # within a few seconds. An ARM read waiting for the subscription's read budget heartbeats
    # its activity's last details again every few seconds (worker/keep_alive.py).
    set_keep_alive(heartbeat_again)
    # Versioned (the worker process, worker/main.py) or not (the time-skipping test server has
    # no worker versioning; the tests' in-process workers).
    versioning = None
    if deployment is not None:
        versioning = WorkerDeploymentConfig(version=deployment, use_worker_versioning=True)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=workflows,
        deployment_config=versioning,
        activities=[
            *FleetActivities(fleet).all(),
            *AutomaticActivities(fleet).all(),
            *WebhookActivities(webhook_secret).all(),
            *AlarmActivities(fleet).all(),
        ],
        max_concurrent_activities=max_concurrent_activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        # A batch child schedules all its reimages in one workflow task; where the server allows
        # eager execution they all come back with its reply (the SDK's default takes three).
        max_eager_activity_reservations_per_workflow_task=MAX_INSTANCES_PER_CHILD,
        interceptors=[*options.pop("interceptors", []), HeartbeatMemory()],
        **options,
    )
