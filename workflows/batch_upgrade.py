"""BatchUpgradeWorkflow: upgrade (or restore) the instances of one batch, all at once.

Per instance: apply the change, wait for health up to the health-wait deadline, and if still not
Healthy and rollback is on, roll the change back and probe again. How each kind of change (an
OS image, extension versions) is applied and rolled back is in workflows/change_kinds.py. Every
instance ends in exactly one outcome; nothing is left half done, so a cancel of the upgrade lets
a running batch finish.
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
    from models.alarms import AlarmSignal
    from models.change import ExtensionTarget
    from models.errors import AlarmErrorCode, FailureCause
    from models.fleet import HealthState
    from models.policy import format_duration
    from models.upgrade import (
        ALARM_SIGNAL,
        BATCH_UPGRADE_WORKFLOW,
        BatchAction,
        BatchInstance,
        BatchRequest,
        BatchResult,
        InstanceOutcome,
        InstanceState,
    )
    from rules.change_kinds import kind_of
    from rules.failures import HEALTH_FAILURE_CODES
    from workflows import activity_calls
    from workflows.change_kinds import await_replacement, joined, steps_of
    from workflows.deadlines import DeadlineClock

# Patches (see RollingUpgradeWorkflow's list and docs/maintaining.md).
# 2026-11: every instance's health-wait deadline on one timer per batch child (DeadlineClock)
# instead of one timer each: two history events and two server timer operations fewer an instance.
ONE_DEADLINE_TIMER = "one-deadline-timer"

# Longest pause before looking again at an instance that reported Unhealthy.
MAX_HEALTH_RECHECK = timedelta(seconds=60)


# Pinned, on its upgrade's build (a child starts on its parent's pinned version).
@workflow.defn(name=BATCH_UPGRADE_WORKFLOW, versioning_behavior=VersioningBehavior.PINNED)
class BatchUpgradeWorkflow:
    @workflow.run
    async def run(self, request: BatchRequest) -> BatchResult:
        # A bug here fails the workflow task (Temporal retries it until a fixed worker runs it);
        # every error of the fleet is an instance's outcome instead.
        self._request = request
        self._steps = steps_of(kind_of(request.change))
        self._clock = DeadlineClock() if workflow.patched(ONE_DEADLINE_TIMER) else None
        self._cancelled_probers: list[ActivityHandle[steps.HealthResult]] = []
        # Alarm gates: set by the `alarm` signal, which ends every health wait of the batch (kept
        # if it came before this line ran).
        self._alarm: str | None = getattr(self, "_alarm", None) if request.alarms else None
        self._alarmed: asyncio.Future[Any] | None = None
        if request.alarms:
            self._alarmed = asyncio.ensure_future(workflow.wait_condition(lambda: self._alarm is not None))
        step = self._upgrade if request.action == BatchAction.UPGRADE else self._restore_only
        outcomes = await asyncio.gather(*(step(instance) for instance in request.instances))
        if self._alarmed is not None:
            self._alarmed.cancel()
        # Probers cancelled at their deadline acknowledge within a heartbeat or so.
        await asyncio.gather(*self._cancelled_probers, return_exceptions=True)
        return BatchResult(outcomes=list(outcomes))

    @workflow.signal(name=ALARM_SIGNAL)
    def alarm(self, signal: AlarmSignal) -> None:
        """An alarm fired (rollbackOnAlarm): no instance waits for health any longer; each
        ends failed with cause Alarm, and the upgrade rolls the batch back."""
        request: BatchRequest | None = getattr(self, "_request", None)
        if (request is None or request.alarms) and getattr(self, "_alarm", None) is None:
            self._alarm = signal.reason

    @property
    def request(self) -> BatchRequest:
        return self._request

    async def _upgrade(self, instance: BatchInstance) -> InstanceOutcome:
        outcome = InstanceOutcome(
            instance_id=instance.instance_id,
            state=InstanceState.FAILED,
            start_time=workflow.now(),
        )
        if instance.replacement is not None:  # maxSurge
            return await await_replacement(self, outcome, instance)
        return await self._steps.apply(self, outcome, instance)

    async def settle_health(
        self, outcome: InstanceOutcome, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome:
        """After the change: Healthy by the deadline, or failed (and rolled back if on). `moved`:
        the extensions installed (None: every one of the change)."""
        request = self._request
        health = None if self._alarm is not None else await self.wait_for_health(outcome.instance_id, True)
        if health is not None and health.state == HealthState.HEALTHY:
            outcome.health = health.state
            return self.end(outcome, InstanceState.SUCCEEDED)
        if self._alarm is not None:
            outcome.cause, outcome.code = FailureCause.ALARM, AlarmErrorCode.FIRED
            outcome.message = joined(outcome.message, f"its health wait was cut short: {self._alarm}")
            return self.end(outcome, InstanceState.FAILED)
        assert health is not None
        outcome.health = health.state

        outcome.cause = FailureCause.HEALTH
        outcome.code = HEALTH_FAILURE_CODES[health.state]
        waited = format_duration(request.health.health_wait_timeout)
        outcome.message = joined(
            outcome.message if moved else None, f"{health.state.value} after the {waited} health wait"
        )
        return await self.roll_back(outcome, "restore", moved)

    async def roll_back(
        self, outcome: InstanceOutcome, step: str, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome:
        """The change failed the instance: roll it back when rollback is on."""
        if not self._request.rollback:
            outcome.message = joined(outcome.message, f"left on {self._steps.kind.target(moved)}")
            return self.end(outcome, InstanceState.FAILED)
        return await self._steps.roll_back(self, outcome, step, moved)

    async def _restore_only(self, instance: BatchInstance) -> InstanceOutcome:
        """Roll back an instance a previous batch left failed with the change."""
        outcome = InstanceOutcome(
            instance_id=instance.instance_id,
            state=InstanceState.FAILED,
            start_time=workflow.now(),
        )
        return await self._steps.restore(self, outcome, instance)

    async def health_after_rollback(self, outcome: InstanceOutcome, done: str) -> InstanceOutcome:
        after = await self.wait_for_health(outcome.instance_id)
        outcome.health_after_restore = after.state
        outcome.restored = after.state == HealthState.HEALTHY
        outcome.message = joined(
            outcome.message, done + ("" if outcome.restored else f", but {after.state.value} after it")
        )
        return self.end(outcome, InstanceState.ROLLED_BACK)

    async def wait_for_health(self, instance_id: str, alarmed: bool = False) -> steps.HealthResult:
        """Wait for Healthy until the health-wait deadline, a durable timer.

        A prober activity waits out Initializing and the grace period in one go. When it
        reports the instance Unhealthy, the workflow looks again after a growing pause: the
        instance may still recover before the deadline. Between looks no activity runs, which
        keeps history small and lets a time-skipping test server jump to the deadline.
        `alarmed`: the `alarm` signal ends the wait too (the caller reads self._alarm).
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
        # (An old batch has no alarm future: it waits on exactly what it always did.)
        cut = [self._alarmed] if alarmed and self._alarmed is not None else []
        while True:
            elapsed = (workflow.now() - started).total_seconds()
            prober = activity_calls.start_wait_for_health(
                scale_set, instance_id, health, max(0.0, health.effective_grace_period - elapsed)
            )
            await workflow.wait([prober, deadline, *cut], return_when=asyncio.FIRST_COMPLETED)
            if not prober.done():
                prober.cancel()
                self._cancelled_probers.append(prober)
                if self._alarm is not None:
                    deadline.cancel()
                    return steps.HealthResult(state=HealthState.UNKNOWN, detail="an alarm fired")
                break
            try:
                if prober.result().state == HealthState.HEALTHY:
                    deadline.cancel()
                    return prober.result()
            except ActivityError:
                pass  # the prober gave up; look again like after an Unhealthy answer
            look_again = asyncio.ensure_future(workflow.sleep(pause, summary="look again"))
            await workflow.wait([look_again, deadline, *cut], return_when=asyncio.FIRST_COMPLETED)
            if self._alarm is not None:
                look_again.cancel()
                deadline.cancel()
                return steps.HealthResult(state=HealthState.UNKNOWN, detail="an alarm fired")
            if deadline.done():
                look_again.cancel()
                break
            pause = min(pause * 2, MAX_HEALTH_RECHECK)
        # At the deadline, one last probe says how the instance is (and may find it Healthy).
        try:
            return await activity_calls.probe_health(scale_set, instance_id, health)
        except ActivityError as err:
            return steps.HealthResult(state=HealthState.UNKNOWN, detail=str(err.cause or err))

    def infrastructure(self, outcome: InstanceOutcome, err: ActivityError, step: str) -> InstanceOutcome:
        code, message = activity_calls.infrastructure_failure(err)
        outcome.cause = FailureCause.INFRASTRUCTURE
        outcome.code = code
        outcome.message = joined(outcome.message, f"{step} failed: {message}")
        return self.end(outcome, InstanceState.FAILED)

    def end(self, outcome: InstanceOutcome, state: InstanceState) -> InstanceOutcome:
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
