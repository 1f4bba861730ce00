"""Rolling a rollout back as a whole (`upgradectl rollout rollback VERSION`): each of its scale
sets' upgrades undone by a rollback upgrade of its own (rules/rollback.py), phase by phase in
reverse order."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from models.base import AzureModel
from models.upgrade import UpgradeRequest

ROLLOUT_ROLLBACK_WORKFLOW = "RolloutRollbackWorkflow"
ROLLOUT_ROLLBACK_QUERY = "rollback"


def rollout_rollback_id(rollout_id: str) -> str:
    return f"{rollout_id}/rollback"


class RollbackState(StrEnum):
    PENDING = "Pending"
    RUNNING = "RollingBack"
    COMPLETED = "Completed"
    FAULTED = "Faulted"
    SKIPPED = "Skipped"  # not started: an earlier phase's rollback faulted


class RolloutRollbackRequest(AzureModel):
    rollout: str = Field(description="the rollout rolled back (its workflow id)")
    by: str
    phases: list[list[UpgradeRequest]] = Field(description="the rollback upgrades, the last phase first")


class RollbackSet(AzureModel):
    scale_set: str
    phase: int = Field(description="its phase in the rollout rolled back (1: the first)")
    state: RollbackState = RollbackState.PENDING
    message: str | None = None


class RolloutRollbackStatus(AzureModel):
    rollout: str
    by: str
    state: RollbackState = RollbackState.RUNNING
    sets: list[RollbackSet] = Field(default_factory=list)
    start_time: AwareDatetime | None = None
    end_time: AwareDatetime | None = None
