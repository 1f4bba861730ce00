"""Which build this worker is, as a Temporal Worker Deployment version, and when it makes itself
current.

An upgrade and its batches are pinned to the build that started them; the watcher and rollouts
move to the current build (docs/operating.md, "Releases"). A version serves new workflows only
once it is current: the first build of a deployment makes itself current, later ones wait for
the operator (`temporal worker deployment set-current-version` or `set-ramping-version`), unless
UPGRADE_MAKE_CURRENT says otherwise.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version

from temporalio.api.workflowservice.v1 import (
    DescribeWorkerDeploymentRequest,
    SetWorkerDeploymentCurrentVersionRequest,
)
from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.service import RPCError, RPCStatusCode

PACKAGE = "rolling-upgrades"
# A version is known to the server some 50 ms after its first poll; until then it cannot be made
# current (NOT_FOUND, or FAILED_PRECONDITION for a version without pollers yet). Asked again
# sooner than that, the dev server answers at once; later, a describe sometimes waits a second.
REGISTRATION_WAIT = 30.0
REGISTRATION_POLL = 0.05
_NOT_YET = (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.ABORTED)


class MakeCurrent(StrEnum):
    IF_NONE = "if-none"  # the deployment's first build (no current version chosen yet)
    ALWAYS = "always"  # a dev server or the demo: whatever starts serves
    NEVER = "never"  # the deploy pipeline or the operator decides


class DeploymentSettingsError(ValueError):
    """One environment variable has a value the worker cannot use; the message names it."""


@dataclass(frozen=True)
class DeploymentSettings:
    name: str
    build_id: str
    make_current: MakeCurrent = MakeCurrent.IF_NONE

    @property
    def version(self) -> WorkerDeploymentVersion:
        return WorkerDeploymentVersion(self.name, self.build_id)

    @classmethod
    def from_env(cls, task_queue: str, env: Mapping[str, str] | None = None) -> DeploymentSettings:
        """UPGRADE_DEPLOYMENT_NAME (default: the task queue), UPGRADE_BUILD_ID (default: the
        package's version, so a release must bump it), UPGRADE_MAKE_CURRENT."""
        env = os.environ if env is None else env
        name = env.get("UPGRADE_DEPLOYMENT_NAME", "").strip() or task_queue
        if "." in name or not name:
            raise DeploymentSettingsError(
                f"UPGRADE_DEPLOYMENT_NAME must be a name without '.' (got {name!r}; it defaults to "
                "UPGRADE_TASK_QUEUE)"
            )
        build_id = env.get("UPGRADE_BUILD_ID", "").strip() or package_version()
        chosen = env.get("UPGRADE_MAKE_CURRENT", "").strip() or MakeCurrent.IF_NONE.value
        try:
            make_current = MakeCurrent(chosen)
        except ValueError:
            allowed = ", ".join(m.value for m in MakeCurrent)
            raise DeploymentSettingsError(
                f"UPGRADE_MAKE_CURRENT must be one of {allowed} (got {chosen!r})"
            ) from None
        return cls(name, build_id, make_current)


def package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.0.0-dev"


async def take_current(client: Client, settings: DeploymentSettings) -> WorkerDeploymentVersion | None:
    """Make this worker's version current if settings.make_current says so; returns the current
    version afterwards (None: unversioned workers). Call it once the worker polls: a version
    exists on the server only from its first poll. A version someone else made current meanwhile
    wins (the conflict token)."""
    service = client.workflow_service
    deadline = time.monotonic() + REGISTRATION_WAIT
    while True:
        try:
            described = await service.describe_worker_deployment(
                DescribeWorkerDeploymentRequest(namespace=client.namespace, deployment_name=settings.name)
            )
            routing = described.worker_deployment_info.routing_config
            found = routing.current_deployment_version
            current = None  # unversioned workers (no build id)
            if found.build_id:
                current = WorkerDeploymentVersion(found.deployment_name, found.build_id)
            # Chosen by anyone, ever (even "unversioned", or a ramp): IF_NONE leaves it be.
            chosen = routing.HasField("current_version_changed_time") or routing.HasField(
                "ramping_version_changed_time"
            )
            if (
                current == settings.version
                or settings.make_current == MakeCurrent.NEVER
                or (settings.make_current == MakeCurrent.IF_NONE and chosen)
            ):
                return current
            await service.set_worker_deployment_current_version(
                SetWorkerDeploymentCurrentVersionRequest(
                    namespace=client.namespace,
                    deployment_name=settings.name,
                    build_id=settings.build_id,
                    conflict_token=described.conflict_token,
                    identity=client.identity,
                )
            )
            return settings.version
        except RPCError as err:
            if err.status not in _NOT_YET or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(REGISTRATION_POLL)


def set_current_command(settings: DeploymentSettings) -> str:
    """The operator's command that makes this build current."""
    return (
        f"temporal worker deployment set-current-version --deployment-name {settings.name} "
        f"--build-id {settings.build_id}"
    )
