"""RollingUpgradeWorkflow: one upgrade of one scale set, batch by batch, behind health gates.

1. Admission: describe the scale set, resolve the target image, skip instances already on it;
   `upgradectl start` waits on the `admit` update, so a refusal reaches the user at once.
2. The pre-upgrade gate (maxUnhealthyInstancePercent), then per batch: re-read health and check
   the in-flight gate, plan the next batch, run it as child workflow(s), fold the outcomes in,
   check the upgraded-unhealthy gate, pause (a durable timer that a cancel interrupts).
3. The end: Completed (returns the report), Cancelled (returns the report), or Faulted (fails
   with the Azure error code as the ApplicationError type and the report as its details).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.errors import FailureCause
    from models.fleet import HealthReading
    from models.status import ApiError, RollingUpgradeStatusInfo
    from models.upgrade import (
        ADMIT_UPDATE,
        CANCEL_SIGNAL,
        INSTANCES_QUERY,
        PLAN_QUERY,
        REPORT_QUERY,
        ROLLING_UPGRADE_WORKFLOW,
        STATUS_QUERY,
        Admission,
        BatchAction,
        BatchInstance,
        BatchRequest,
        BatchResult,
        InstanceOutcome,
        InstanceProgress,
        InstanceState,
        UpgradeReport,
        UpgradeRequest,
    )
    from workflows import activity_calls, presentation, search_attributes
    from workflows.admission import admit
    from models.notifications import NotificationEvent
    from workflows.batch_upgrade import BatchUpgradeWorkflow
    from workflows.notifier import Notifier
    from workflows.ledger import UpgradeLedger, internal_error
    from workflows.planner import next_batch

T = TypeVar("T")

# Patches: each id guards a change to the commands the workflow issues, so upgrades started
# by older code replay (see the README's section on changing workflow code).
# 2026-11: upgraded instances that turn unhealthy after their batch count against
# maxUnhealthyUpgradedInstancePercent, with one more health reading after the last batch.
COUNT_UNHEALTHY_SINCE_UPGRADE = "count-unhealthy-since-upgrade"
# 2026-11: the UpgradeStatus and TargetImage search attributes follow the upgrade, and its
# outcome is kept in the memo for `upgradectl history`.
VISIBILITY = "visibility"
# 2026-11: the gates re-read only health (a few bytes an instance) instead of describing the
# whole scale set before each batch, which put every instance's full view in the history again
# for every batch.
COMPACT_HEALTH_READS = "compact-health-reads"

# Activities in flight per child workflow stay near the server's buffered-event limit (100).
MAX_INSTANCES_PER_CHILD = 100


def split(items: list[BatchInstance], size: int) -> list[list[BatchInstance]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@workflow.defn(name=ROLLING_UPGRADE_WORKFLOW)
class RollingUpgradeWorkflow:
    @workflow.init
    def __init__(self, request: UpgradeRequest) -> None:
        self._ledger = UpgradeLedger(request, workflow.now())
        self._admission: Admission | None = None
        self._refusal: ApplicationError | None = None
        self._cancel_requested = False
        self._cancel_requested_by_temporal = False
        info = workflow.info()
        self._notifier = Notifier(request.notifications, f"{info.workflow_id}/{info.first_execution_run_id}")
        self._ledger.notifications = self._notifier.records  # the report shows them as they go

    # --- messages ---------------------------------------------------------------------------

    @workflow.update(name=ADMIT_UPDATE)
    async def admit(self) -> Admission:
        """Returns once the upgrade is admitted (or raises why it was refused)."""
        await workflow.wait_condition(lambda: self._admission is not None or self._refusal is not None)
        if self._refusal is not None:
            raise self._refusal
        assert self._admission is not None
        return self._admission

    @workflow.signal(name=CANCEL_SIGNAL)
    def cancel(self) -> None:
        """No new batch starts; the batch in flight finishes (or rolls back)."""
        if not self._cancel_requested:
            self._cancel_requested = True
            self._ledger.cancel_requested(workflow.now())
            self._publish()

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> RollingUpgradeStatusInfo:
        return self._ledger.status()

    @workflow.query(name=INSTANCES_QUERY)
    def instances(self) -> list[InstanceProgress]:
        return list(self._ledger.instances.values())

    @workflow.query(name=PLAN_QUERY)
    def plan(self) -> list[list[str]]:
        """The batches still to come, as planned from the latest health readings."""
        return [[c.instance_id for c in batch] for batch in self._ledger.plan()]

    # --- the upgrade ------------------------------------------------------------------------

    @workflow.query(name=REPORT_QUERY)
    def report(self) -> UpgradeReport:
        return self._ledger.report()

    # --- the upgrade ------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: UpgradeRequest) -> UpgradeReport:
        self._visible = workflow.patched(VISIBILITY)
        self._publish()
        self._notify(NotificationEvent.SUBMISSION)
        try:
            report = await self._upgrade(request)
        except ApplicationError:
            raise  # a fault or refusal, already in the status
        except Exception as err:  # noqa: BLE001 - nothing may leave a workflow retrying a task
            return await self._fault(internal_error(err))
        if self._cancel_requested_by_temporal:
            raise asyncio.CancelledError("cancel requested")  # the Web UI shows it Canceled
        return report

    async def _upgrade(self, request: UpgradeRequest) -> UpgradeReport:
        ledger = self._ledger
        info = workflow.info()
        upgrade_id = f"{info.workflow_id}/{info.first_execution_run_id}"

        try:
            scale_set, image = await self._through_cancel(admit(request))
        except ApplicationError as refusal:
            return await self._refuse(refusal)
        ledger.admit(scale_set, image)
        self._notify(NotificationEvent.SUBMISSION_OUTCOME)
        if self._visible:
            workflow.upsert_search_attributes([search_attributes.TARGET_IMAGE.value_set(str(image))])
        self._publish()
        self._admission = Admission(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            scale_set=request.scale_set,
            target_image=image,
            instance_count=len(ledger.instances),
            to_upgrade=len(ledger.candidates()),
            skipped=len(ledger.in_state(InstanceState.SKIPPED)),
            planned_batches=len(ledger.plan()),
        )
        workflow.logger.info(
            "upgrade admitted: %s of %s instances to %s, about %s batches",
            self._admission.to_upgrade,
            self._admission.instance_count,
            image,
            self._admission.planned_batches,
            extra={"scale_set": request.scale_set},
        )

        if breach := ledger.unhealthy_gate(before_upgrade=True):
            return await self._fault(breach)

        while ledger.candidates() and not self._cancel_requested:
            if ledger.batches:
                if breach := self._deadline_gate():
                    return await self._fault(breach)
                ledger.observe(await self._through_cancel(self._read_health()))
                if breach := ledger.unhealthy_gate(before_upgrade=False):
                    return await self._fault(breach)
                if workflow.patched(COUNT_UNHEALTHY_SINCE_UPGRADE):
                    if breach := ledger.upgraded_gate(including_later=True):
                        return await self._breach(upgrade_id, breach)
                if self._cancel_requested:
                    break
            batch = next_batch(
                ledger.candidates(), ledger.total, len(ledger.unhealthy()), request.policy
            )
            if not batch:
                break
            number = ledger.start_batch((c.instance_id for c in batch), workflow.now())
            self._publish()
            workflow.logger.info(
                "batch started",
                extra={"scale_set": request.scale_set, "batch": number, "instance": [c.instance_id for c in batch]},
            )
            outcomes = await self._through_cancel(
                self._run_batch(
                    upgrade_id,
                    number,
                    BatchAction.UPGRADE,
                    [BatchInstance(instance_id=c.instance_id) for c in batch],
                )
            )
            ledger.settle(outcomes)
            self._publish()
            self._notify(NotificationEvent.BATCH_OUTCOME, key=f"/batch-{number}")
            if breach := ledger.internal_failures():
                return await self._fault(breach)
            if breach := ledger.upgraded_gate():
                return await self._breach(upgrade_id, breach)
            await self._pause()

        if ledger.batches and not self._cancel_requested and workflow.patched(COUNT_UNHEALTHY_SINCE_UPGRADE):
            # One last health reading: an upgraded instance that went down since its batch
            # counts against maxUnhealthyUpgradedInstancePercent, even after the last batch.
            ledger.observe(await self._through_cancel(self._read_health()))
            if breach := ledger.upgraded_gate(including_later=True):
                return await self._breach(upgrade_id, breach)

        if self._cancel_requested:
            ledger.cancelled()
        else:
            ledger.completed()
        workflow.logger.info("upgrade ended: %s", ledger.code.value, extra={"scale_set": request.scale_set})
        await self._close()
        return ledger.report()

    async def _read_health(self) -> HealthReading:
        """Fresh health readings, before each batch and after the last."""
        scale_set = self._ledger.request.scale_set
        if workflow.patched(COMPACT_HEALTH_READS):
            return await activity_calls.read_health(scale_set)
        return HealthReading.of(await activity_calls.describe_scale_set(scale_set))

    def _publish(self) -> None:
        """Keep the Web UI's current details in step with the ledger."""
        workflow.set_current_details(presentation.current_details(self._ledger))

    def _notify(self, event: NotificationEvent, key: str = "") -> None:
        info = workflow.info()
        body = {
            "scaleSet": self._ledger.request.scale_set,
            "workflowId": info.workflow_id,
            "runId": info.run_id,
            "time": workflow.now().isoformat(),
            "status": self._ledger.status().to_json(),
        }
        self._notifier.notify(event, body, key)

    async def _close(self) -> None:
        """The outcome for the Web UI, `upgradectl history` and the webhooks; then the end."""
        self._publish()
        if self._admission is not None:
            self._notify(NotificationEvent.COMPLETION_OUTCOME)
        else:
            self._notify(NotificationEvent.SUBMISSION_OUTCOME)  # refused: with the reason
        if self._visible:
            ledger = self._ledger
            workflow.upsert_search_attributes([search_attributes.UPGRADE_STATUS.value_set(ledger.code.value)])
            workflow.upsert_memo({"upgrade": ledger.report().history_entry(workflow.now()).to_json()})
        await self._through_cancel(self._notifier.drain())
        await self._handlers_finished()

    async def _through_cancel(self, work: Awaitable[T]) -> T:
        """Await work that must finish even if the upgrade is cancelled meanwhile.

        A cancel request from outside (the Web UI's Cancel, `client.cancel`) arrives as a
        CancelledError at the workflow's current await. Shielded, the batch in flight runs on
        (its instances finish or roll back); the request only stops what comes after, exactly
        like the cancel signal.
        """
        task = asyncio.ensure_future(work)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                self._cancel_requested_by_temporal = True
                self.cancel()

    async def _handlers_finished(self) -> None:
        await self._through_cancel(workflow.wait_condition(workflow.all_handlers_finished))

    def _deadline_gate(self) -> ApiError | None:
        return self._ledger.deadline_gate(workflow.now())

    async def _run_batch(
        self, upgrade_id: str, number: int, action: BatchAction, instances: list[BatchInstance]
    ) -> list[InstanceOutcome]:
        """One child per part of at most MAX_INSTANCES_PER_CHILD instances, all at once."""
        request = self._ledger.request
        parts = split(instances, MAX_INSTANCES_PER_CHILD)
        base = f"{workflow.info().workflow_id}/" + (
            f"batch-{number}" if action == BatchAction.UPGRADE else "rollback"
        )
        ids = [i.instance_id for i in instances]
        summary = (
            presentation.batch_summary(self._ledger, number, ids)
            if action == BatchAction.UPGRADE
            else presentation.restore_summary(ids)
        )
        children = [
            workflow.execute_child_workflow(
                BatchUpgradeWorkflow.run,
                BatchRequest(
                    upgrade_id=upgrade_id,
                    scale_set=request.scale_set,
                    batch=number,
                    action=action,
                    instances=part,
                    target_image=self._ledger.target_image,
                    health=request.health,
                    rollback=not request.disable_automatic_rollback,
                ),
                id=base if len(parts) == 1 else f"{base}-part-{index + 1}",
                result_type=BatchResult,
                static_summary=summary,
            )
            for index, part in enumerate(parts)
        ]
        results = await asyncio.gather(*children)
        return [outcome for result in results for outcome in result.outcomes]

    async def _breach(self, upgrade_id: str, breach: ApiError) -> UpgradeReport:
        """The upgraded-unhealthy gate tripped: restore if the policy says so, then fault."""
        if self._ledger.request.policy.rollback_failed_instances_on_policy_breach:
            await self._through_cancel(self._restore_failed(upgrade_id))
        return await self._fault(breach)

    async def _restore_failed(self, upgrade_id: str) -> None:
        """rollbackFailedInstancesOnPolicyBreach: restore instances left failed on the new image."""
        stranded = [
            BatchInstance(instance_id=p.instance_id, previous_os_disk=p.previous_os_disk)
            for p in self._ledger.in_state(InstanceState.FAILED)
            if p.cause == FailureCause.HEALTH and p.previous_os_disk
        ]
        if stranded:
            outcomes = await self._run_batch(
                upgrade_id, self._ledger.batches, BatchAction.RESTORE, stranded
            )
            self._ledger.settle_restores(outcomes)
            self._publish()

    async def _pause(self) -> None:
        """pauseTimeBetweenBatches: a durable timer that a cancel (or the upgrade timeout) cuts short."""
        ledger = self._ledger
        pause = ledger.request.policy.pause_time_between_batches
        if pause <= timedelta(0) or not ledger.candidates() or self._cancel_requested:
            return
        if ledger.deadline is not None:
            pause = min(pause, max(ledger.deadline - workflow.now(), timedelta(seconds=1)))
        try:
            await workflow.wait_condition(
                lambda: self._cancel_requested,
                timeout=pause,
                timeout_summary="pauseTimeBetweenBatches",
            )
        except asyncio.TimeoutError:
            pass
        except asyncio.CancelledError:
            self._cancel_requested_by_temporal = True
            self.cancel()

    async def _fault(self, error: ApiError) -> UpgradeReport:
        self._ledger.faulted(error)
        workflow.logger.warning(
            "upgrade faulted: %s: %s",
            error.code,
            error.message,
            extra={"scale_set": self._ledger.request.scale_set, "batch": self._ledger.batches},
        )
        await self._close()
        raise ApplicationError(
            error.message or str(error.code),
            self._ledger.report(),
            type=error.code,
            non_retryable=True,
        )

    async def _refuse(self, refusal: ApplicationError) -> UpgradeReport:
        """Admission failed (unknown scale set or image): nothing was touched."""
        self._refusal = refusal
        return await self._fault(
            ApiError(code=refusal.type, message=refusal.message, target=self._ledger.request.scale_set)
        )

