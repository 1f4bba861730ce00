"""Approval of an upgrade's batches under deferral (osRollingUpgradeDeferral): who approved which
instances and when, and which instances pending approval that releases (pure; the ledger holds one
`Approvals` and passes in its instances and `now`).

An approval may come before its instances are due (they go at once when their batch comes) or
for every instance, now and later (`approve` without instance ids); notBeforeTimeout approves an
instance on its own once it has been pending that long.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from models.policy import format_duration
from models.upgrade import InstanceProgress, InstanceState

Approval = tuple[str, datetime]  # who, when


@dataclass
class Approvals:
    # Approvals given for instances, whether due yet or not.
    instances: dict[str, Approval] = field(default_factory=dict)
    # Every instance pending now and later (an `approve` without instance ids).
    every: Approval | None = None

    def give(self, instance_ids: list[str] | None, by: str, now: datetime) -> None:
        """Of these instances, or of every instance (None); the first approval of each stands."""
        if instance_ids is None:
            if self.every is None:
                self.every = (by, now)
        else:
            for instance_id in instance_ids:
                self.instances.setdefault(instance_id, (by, now))

    def of(self, instance_id: str) -> Approval | None:
        return self.instances.get(instance_id) or self.every

    def release(self, pending: Iterable[InstanceProgress]) -> list[str]:
        """Instances pending approval that are approved go (back to Pending); returns their ids."""
        released = []
        for progress in pending:
            approval = self.of(progress.instance_id)
            if approval is None:
                continue
            by, when = approval
            approve(progress, by, when, f"approved by {by} at {when.isoformat(timespec='seconds')}")
            released.append(progress.instance_id)
        return released


def hold(instances: Iterable[InstanceProgress], now: datetime) -> None:
    """A batch's instances await approval (Azure shows the VM Platform.PendingOSUpgrade), except
    those no longer pending and those approved before (a batch planned again after a wait)."""
    for progress in instances:
        if progress.state != InstanceState.PENDING or progress.approved_by is not None:
            continue
        progress.state = InstanceState.PENDING_APPROVAL
        progress.pending_approval_since = now


def release_due(pending: Iterable[InstanceProgress], timeout: timedelta, now: datetime) -> list[str]:
    """notBeforeTimeout: instances pending approval that long are approved on their own."""
    released = []
    for progress in pending:
        since = progress.pending_approval_since or now
        if since + timeout <= now:
            approve(
                progress,
                "notBeforeTimeout",
                since + timeout,
                f"approved on its own after notBeforeTimeout {format_duration(timeout)} "
                f"(pending approval since {since.isoformat(timespec='seconds')})",
            )
            released.append(progress.instance_id)
    return released


def approve(progress: InstanceProgress, by: str, when: datetime, message: str) -> None:
    progress.state = InstanceState.PENDING
    progress.approved_by = by
    progress.approval_time = when
    progress.message = f"{progress.message}; {message}" if progress.message else message
