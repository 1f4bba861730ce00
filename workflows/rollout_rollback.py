"""RolloutRollbackWorkflow: a rollout rolled back as a whole, phase by phase in reverse order:
each set's rollback is an upgrade of its own (`rolling-upgrade/<set>`, the set's lock), all the
sets of a phase at once; a rollback that does not complete stops the later phases (the earlier
ones of the rollout, still on the new version, are left as they are)."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from models.rollback import (
        ROLLOUT_ROLLBACK_QUERY,
        ROLLOUT_ROLLBACK_WORKFLOW,
        RollbackSet,
        RollbackState,
        RolloutRollbackRequest,
        RolloutRollbackStatus,
    )
    from models.status import RollingUpgradeStatusCode
    from models.upgrade import ROLLING_UPGRADE_WORKFLOW, UpgradeReport, UpgradeRequest, upgrade_workflow_id


@workflow.defn(name=ROLLOUT_ROLLBACK_WORKFLOW, versioning_behavior=VersioningBehavior.PINNED)
class RolloutRollbackWorkflow:
    @workflow.init
    def __init__(self, request: RolloutRollbackRequest) -> None:
        count = len(request.phases)
        self._status = RolloutRollbackStatus(
            rollout=request.rollout,
            by=request.by,
            start_time=workflow.now(),
            sets=[
                RollbackSet(scale_set=r.scale_set, phase=count - index)
                for index, phase in enumerate(request.phases)
                for r in phase
            ],
        )

    @workflow.query(name=ROLLOUT_ROLLBACK_QUERY)
    def status(self) -> RolloutRollbackStatus:
        return self._status

    @workflow.run
    async def run(self, request: RolloutRollbackRequest) -> RolloutRollbackStatus:
        for phase in request.phases:
            outcomes = await asyncio.gather(*(self._roll_back(r) for r in phase))
            if not all(outcomes):
                for item in self._status.sets:
                    if item.state == RollbackState.PENDING:
                        item.state, item.message = (
                            RollbackState.SKIPPED,
                            "a later phase's rollback did not complete",
                        )
                self._status.state = RollbackState.FAULTED
                break
        else:
            self._status.state = RollbackState.COMPLETED
        self._status.end_time = workflow.now()
        return self._status

    async def _roll_back(self, request: UpgradeRequest) -> bool:
        item = next(i for i in self._status.sets if i.scale_set == request.scale_set)
        item.state = RollbackState.RUNNING
        try:
            report = await workflow.execute_child_workflow(
                ROLLING_UPGRADE_WORKFLOW,
                request,
                id=upgrade_workflow_id(request.scale_set),
                result_type=UpgradeReport,
                parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                static_summary=f"rollback of {request.scale_set} to {request.change_asked}",
            )
        except (ChildWorkflowError, FailureError) as err:  # refused, or another upgrade holds the set
            item.state, item.message = RollbackState.FAULTED, str(err.cause or err)
            return False
        code = report.status.properties.running_status.code if report.status.properties else None
        done = code in (RollingUpgradeStatusCode.COMPLETED,)
        item.state = RollbackState.COMPLETED if done else RollbackState.FAULTED
        item.message = f"{code.value if code else 'no status'}: back to {request.change_asked}"
        return done
