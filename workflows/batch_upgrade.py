"""BatchUpgradeWorkflow: upgrade (or restore) the instances of one batch, all at once.

Per instance: apply the change, wait for health up to the health-wait deadline, and if still not
Healthy and rollback is on, roll the change back and probe again. The change is an OS image
(reimage, which keeps data disks and remembers the previous OS disk; roll back as the mode allows:
Uniform reimages back to the previous version, Flexible swaps the previous OS disk back in) or
extension versions (install each; reinstall the versions the instance had). An extension that
fails to install is rolled back at once; since the independent-extensions patch, that extension
alone, and the others still go ahead (seed 003). Every instance ends in exactly one outcome; nothing is
left half done, so a cancel of the upgrade lets a running batch finish.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityHandle

with workflow.unsafe.imports_passed_through():
    from models import steps
    from models.change import ExtensionTarget
    from models.errors import EXTENSION_PROVISIONING_ERROR, FailureCause
    from models.fleet import HealthState
    from models.policy import format_duration
    from models.status import ROLLED_BACK_BY, os_rollback_method
    from models.upgrade import (
        BATCH_UPGRADE_WORKFLOW,
        BatchAction,
        BatchInstance,
        BatchRequest,
        BatchResult,
        ExtensionOutcome,
        InstanceOutcome,
        InstanceState,
    )
    from rules.failures import HEALTH_FAILURE_CODES
    from workflows import activity_calls
    from workflows.deadlines import DeadlineClock

# Patches (see RollingUpgradeWorkflow's list and docs/maintaining.md).
# 2026-11: every instance's health-wait deadline on one timer per batch child (DeadlineClock)
# instead of one timer each: two history events and two server timer operations fewer an instance.
ONE_DEADLINE_TIMER = "one-deadline-timer"

# Longest pause before looking again at an instance that reported Unhealthy.
MAX_HEALTH_RECHECK = timedelta(seconds=60)


def operation_id(upgrade_id: str, instance_id: str, step: str) -> str:
    """Stable across retries, crashes and replays: the back end runs each id once."""
    return f"{upgrade_id}/{instance_id}/{step}"


def joined(first: str | None, then: str) -> str:
    return f"{first}; {then}" if first else then


# Pinned, on its upgrade's build (a child starts on its parent's pinned version).
@workflow.defn(name=BATCH_UPGRADE_WORKFLOW, versioning_behavior=VersioningBehavior.PINNED)
class BatchUpgradeWorkflow:
    @workflow.run
    async def run(self, request: BatchRequest) -> BatchResult:
        # A bug here fails the workflow task (Temporal retries it until a fixed worker runs it);
        # every error of the fleet is an instance's outcome instead.
        self._request = request
        self._clock = DeadlineClock() if workflow.patched(ONE_DEADLINE_TIMER) else None
        self._cancelled_probers: list[ActivityHandle[steps.HealthResult]] = []
        step = self._upgrade if request.action == BatchAction.UPGRADE else self._restore_only
        outcomes = await asyncio.gather(*(step(instance) for instance in request.instances))
        # Probers cancelled at their deadline acknowledge within a heartbeat or so.
        await asyncio.gather(*self._cancelled_probers, return_exceptions=True)
        return BatchResult(outcomes=list(outcomes))

    async def _upgrade(self, instance: BatchInstance) -> InstanceOutcome:
        request = self._request
        outcome = InstanceOutcome(
            instance_id=instance.instance_id,
            state=InstanceState.FAILED,
            start_time=workflow.now(),
        )
        if request.extensions and request.independent_extensions:
            return await self._install_each(outcome, instance)
        if request.extensions:
            failed = await self._install(outcome, instance)
            if failed is not None:
                return failed
            return await self._settle_health(outcome)
        assert request.target_image is not None  # an OS image change
        try:
            operation = await activity_calls.reimage(
                steps.ReimageInput(
                    scale_set=request.scale_set,
                    instance_id=instance.instance_id,
                    image=request.target_image,
                    operation_id=operation_id(request.upgrade_id, instance.instance_id, "reimage"),
                    restore_point=instance.previous_os_disk,
                )
            )
        except ActivityError as err:
            return self._infrastructure(outcome, err, "reimage")
        outcome.previous_os_disk = operation.previous_os_disk
        return await self._settle_health(outcome)

    async def _settle_health(
        self, outcome: InstanceOutcome, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome:
        """After the change: Healthy by the deadline, or failed (and rolled back if on). `moved`:
        the extensions installed (None: every one of the change)."""
        request = self._request
        health = await self._wait_for_health(outcome.instance_id)
        outcome.health = health.state
        if health.state == HealthState.HEALTHY:
            return self._end(outcome, InstanceState.SUCCEEDED)

        outcome.cause = FailureCause.HEALTH
        outcome.code = HEALTH_FAILURE_CODES[health.state]
        waited = format_duration(request.health.health_wait_timeout)
        outcome.message = joined(
            outcome.message if moved else None, f"{health.state.value} after the {waited} health wait"
        )
        return await self._roll_back(outcome, "restore", moved)

    async def _roll_back(
        self, outcome: InstanceOutcome, step: str, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome:
        """The change failed the instance: roll it back when rollback is on."""
        request = self._request
        if not request.rollback:
            target = request.target_image.resolved_version if request.target_image else self._targets(moved)
            outcome.message = joined(outcome.message, f"left on {target}")
            return self._end(outcome, InstanceState.FAILED)
        if request.extensions:
            return await self._reinstall(outcome, outcome.previous_extensions, step, moved)
        return await self._restore(outcome, outcome.previous_os_disk, step)

    async def _restore_only(self, instance: BatchInstance) -> InstanceOutcome:
        """Roll back an instance a previous batch left failed with the change."""
        outcome = InstanceOutcome(
            instance_id=instance.instance_id,
            state=InstanceState.FAILED,
            start_time=workflow.now(),
        )
        if self._request.extensions:
            names = instance.restore_extensions
            only = [t for t in self._request.extensions if names is None or t.name in names]
            outcome = await self._reinstall(outcome, instance.previous_extensions, "policy-restore", only)
            if names is not None:  # the extensions an instance that succeeded left failed
                outcome.extension_outcomes = {t.name: ExtensionOutcome(state=outcome.state) for t in only}
            return outcome
        return await self._restore(outcome, instance.previous_os_disk, "policy-restore")

    # --- extensions ---------------------------------------------------------------------------

    def _targets(self, only: list[ExtensionTarget] | None = None) -> str:
        return ", ".join(str(t) for t in (self._request.extensions if only is None else only))

    async def _install(self, outcome: InstanceOutcome, instance: BatchInstance) -> InstanceOutcome | None:
        """Install each extension version in order; an outcome if one failed (then rolled
        back, when rollback is on), None when all are installed."""
        outcome.previous_extensions = instance.previous_extensions
        for target in self._request.extensions:
            try:
                await self._install_one(outcome.instance_id, target, "install")
            except ActivityError as err:
                code, message = activity_calls.infrastructure_failure(err)
                if code != EXTENSION_PROVISIONING_ERROR:
                    return self._infrastructure(outcome, err, f"install of {target}")
                outcome.cause = FailureCause.INSTALL
                outcome.code = code
                outcome.message = f"{target} failed to install: {message}"
                return await self._roll_back(outcome, "restore")
        return None

    async def _install_each(self, outcome: InstanceOutcome, instance: BatchInstance) -> InstanceOutcome:
        """Each extension on its own (seed 003): one that fails to install is reinstalled at its
        previous version at once (rollback on), and the others still go ahead. The health wait
        then judges what moved; an instance on which nothing moved failed, as a whole."""
        request = self._request
        outcome.previous_extensions = instance.previous_extensions
        before = instance.previous_extensions or {}
        results: dict[str, ExtensionOutcome] = {}
        outcome.extension_outcomes = results
        moved: list[ExtensionTarget] = []
        reinstalled: list[ExtensionTarget] = []
        for target in request.extensions:
            try:
                await self._install_one(outcome.instance_id, target, "install")
            except ActivityError as err:
                code, message = activity_calls.infrastructure_failure(err)
                if code != EXTENSION_PROVISIONING_ERROR:
                    return self._infrastructure(outcome, err, f"install of {target}")
                failure = f"{target} failed to install: {message}"
                outcome.message = joined(outcome.message, failure)
                previous = before.get(target.name) if request.rollback else None
                state, after = InstanceState.FAILED, f"left on {target}"
                if request.rollback and previous is None:
                    after = f"no previous version of {target.name} to reinstall"
                elif previous is not None:
                    back = target.model_copy(update={"version": previous})
                    try:
                        await self._install_one(outcome.instance_id, back, "restore")
                    except ActivityError as err:
                        return self._infrastructure(outcome, err, f"reinstall of {back}")
                    state, after = InstanceState.ROLLED_BACK, f"reinstalled {back}"
                    reinstalled.append(back)
                results[target.name] = ExtensionOutcome(
                    state=state, cause=FailureCause.INSTALL, code=code, message=f"{failure}; {after}"
                )
                continue
            moved.append(target)
            results[target.name] = ExtensionOutcome(state=InstanceState.SUCCEEDED)
        if not moved:  # every extension failed to install: the instance failed the upgrade
            first = next(iter(results.values()))
            outcome.cause, outcome.code = first.cause, first.code
            if not reinstalled:
                outcome.message = joined(outcome.message, f"left on {self._targets()}")
                return self._end(outcome, InstanceState.FAILED)
            outcome.restored = False  # until the instance is back and healthy
            done = "reinstalled " + ", ".join(str(t) for t in reinstalled)
            return await self._health_after_rollback(outcome, done)
        if reinstalled:
            outcome.message = joined(outcome.message, "reinstalled " + ", ".join(str(t) for t in reinstalled))
        settled = await self._settle_health(outcome, moved)
        if settled.state != InstanceState.SUCCEEDED:  # health cannot say which one broke it
            for target in moved:
                results[target.name] = ExtensionOutcome(
                    state=settled.state, cause=settled.cause, code=settled.code, message=settled.message
                )
        return settled

    async def _install_one(self, instance_id: str, target: ExtensionTarget, step: str) -> None:
        request = self._request
        await activity_calls.install_extension(
            steps.InstallExtensionInput(
                scale_set=request.scale_set,
                instance_id=instance_id,
                extension=target,
                operation_id=operation_id(request.upgrade_id, instance_id, f"{step}-{target.name}"),
            )
        )

    async def _reinstall(
        self,
        outcome: InstanceOutcome,
        previous: dict[str, str] | None,
        step: str,
        only: list[ExtensionTarget] | None = None,
    ) -> InstanceOutcome:
        """Reinstall the versions the instance had before (of `only` these extensions, else
        every one of the change), then probe again."""
        outcome.restored = False  # until the instance is back and healthy
        before = previous or {}
        targets = self._request.extensions if only is None else only
        missing = [t.name for t in targets if t.name not in before]
        if missing:
            outcome.cause = FailureCause.INFRASTRUCTURE  # as an OS disk that is not there
            outcome.message = joined(
                outcome.message, f"no previous version of {', '.join(missing)} to reinstall"
            )
            return self._end(outcome, InstanceState.FAILED)
        back = [  # (an extension the instance already had at its target stays as it is)
            t.model_copy(update={"version": before[t.name]}) for t in targets if before[t.name] != t.version
        ]
        for target in back:
            try:
                await self._install_one(outcome.instance_id, target, step)
            except ActivityError as err:
                return self._infrastructure(outcome, err, f"reinstall of {target}")
        return await self._health_after_rollback(outcome, "reinstalled " + ", ".join(str(t) for t in back))

    # --- OS image -----------------------------------------------------------------------------

    async def _restore(self, outcome: InstanceOutcome, os_disk: str | None, step: str) -> InstanceOutcome:
        request = self._request
        outcome.restored = False  # until the instance is back and healthy
        if not os_disk:
            outcome.cause = FailureCause.INFRASTRUCTURE
            outcome.message = joined(outcome.message, "no previous OS disk to restore")
            return self._end(outcome, InstanceState.FAILED)
        try:
            await activity_calls.restore_os_disk(
                steps.RestoreInput(
                    scale_set=request.scale_set,
                    instance_id=outcome.instance_id,
                    os_disk=os_disk,
                    operation_id=operation_id(request.upgrade_id, outcome.instance_id, step),
                )
            )
        except ActivityError as err:
            return self._infrastructure(outcome, err, "restore")
        return await self._health_after_rollback(outcome, ROLLED_BACK_BY[os_rollback_method(os_disk)])

    async def _health_after_rollback(self, outcome: InstanceOutcome, done: str) -> InstanceOutcome:
        after = await self._wait_for_health(outcome.instance_id)
        outcome.health_after_restore = after.state
        outcome.restored = after.state == HealthState.HEALTHY
        outcome.message = joined(
            outcome.message, done + ("" if outcome.restored else f", but {after.state.value} after it")
        )
        return self._end(outcome, InstanceState.ROLLED_BACK)

    async def _wait_for_health(self, instance_id: str) -> steps.HealthResult:
        """Wait for Healthy until the health-wait deadline, a durable timer.

        A prober activity waits out Initializing and the grace period in one go. When it
        reports the instance Unhealthy, the workflow looks again after a growing pause: the
        instance may still recover before the deadline. Between looks no activity runs, which
        keeps history small and lets a time-skipping test server jump to the deadline.
        """
        health = self._request.health
        scale_set = self._request.scale_set
        started = workflow.now()
        deadline: asyncio.Future[Any]  # awaited together with the prober, an ActivityHandle
        if self._clock is not None:
            deadline = self._clock.after(health.health_wait_timeout)
        else:  # upgrades started before ONE_DEADLINE_TIMER: a timer per instance
            deadline = asyncio.ensure_future(
                workflow.sleep(health.health_wait_timeout, summary="health-wait deadline")
            )
        pause = timedelta(seconds=health.interval_in_seconds)
        while True:
            elapsed = (workflow.now() - started).total_seconds()
            prober = activity_calls.start_wait_for_health(
                scale_set, instance_id, health, max(0.0, health.effective_grace_period - elapsed)
            )
            await workflow.wait([prober, deadline], return_when=asyncio.FIRST_COMPLETED)
            if not prober.done():
                prober.cancel()
                self._cancelled_probers.append(prober)
                break
            try:
                if prober.result().state == HealthState.HEALTHY:
                    deadline.cancel()
                    return prober.result()
            except ActivityError:
                pass  # the prober gave up; look again like after an Unhealthy answer
            look_again = asyncio.ensure_future(workflow.sleep(pause, summary="look again"))
            await workflow.wait([look_again, deadline], return_when=asyncio.FIRST_COMPLETED)
            if deadline.done():
                look_again.cancel()
                break
            pause = min(pause * 2, MAX_HEALTH_RECHECK)
        # At the deadline, one last probe says how the instance is (and may find it Healthy).
        try:
            return await activity_calls.probe_health(scale_set, instance_id, health)
        except ActivityError as err:
            return steps.HealthResult(state=HealthState.UNKNOWN, detail=str(err.cause or err))

    def _infrastructure(self, outcome: InstanceOutcome, err: ActivityError, step: str) -> InstanceOutcome:
        code, message = activity_calls.infrastructure_failure(err)
        outcome.cause = FailureCause.INFRASTRUCTURE
        outcome.code = code
        outcome.message = joined(outcome.message, f"{step} failed: {message}")
        return self._end(outcome, InstanceState.FAILED)

    def _end(self, outcome: InstanceOutcome, state: InstanceState) -> InstanceOutcome:
        outcome.state = state
        outcome.end_time = workflow.now()
        workflow.logger.info(
            "instance %s: %s",
            state.value,
            outcome.message or "on the target image and healthy",
            extra={
                "scale_set": self._request.scale_set,
                "batch": self._request.batch,
                "instance": outcome.instance_id,
                "step": self._request.action.value,
            },
        )
        return outcome
