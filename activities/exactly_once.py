"""The pieces of an action that runs at most once on Azure, where nothing deduplicates actions:
what an attempt remembers in its heartbeat details, and how long it waits between looks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeats import Heartbeat
from models.errors import FLEET_OPERATION_FAILED
from models.fleet import FleetOperation, InstanceView, OperationKind, OperationStatus

# Polling a long-running operation: honour the back end's Retry-After within these bounds.
MIN_POLL_SECONDS = 0.05
MAX_POLL_SECONDS = 2.0
# Waiting after a throttled, refused or unanswered action: Retry-After within these bounds.
MAX_BACKOFF_SECONDS = 8.0
# Reads of an instance that does not yet show an operation that succeeded, before giving up.
MAX_MISMATCHES = 5


def poll_seconds(retry_after: float | None) -> float:
    return min(
        max(MAX_POLL_SECONDS if retry_after is None else retry_after, MIN_POLL_SECONDS), MAX_POLL_SECONDS
    )


def backoff_seconds(retry_after: float | None, errors: int) -> float:
    """Retry-After when the service said (throttling), else 0.5 s doubling; at most 8 s so the
    activity's heartbeat (every loop) never lapses."""
    wait = retry_after if retry_after is not None else 0.5 * 2 ** min(errors, 4)
    return min(max(wait, MIN_POLL_SECONDS), MAX_BACKOFF_SECONDS)


def operation_failure(operation: FleetOperation) -> ApplicationError:
    error = operation.error
    return ApplicationError(
        error.message if error else f"{operation.kind.value} {operation.status.value.lower()}",
        type=error.code if error else FLEET_OPERATION_FAILED,
        non_retryable=True,
    )


@dataclass
class Progress:
    """What one action's attempts know, carried in heartbeat details across retries: the
    restore point the instance had before the action, and the operation sent (its status URL)."""

    kind: OperationKind
    before: str | None = None
    operation: FleetOperation | None = None
    sent: int = 0
    # The failure the instance showed before the action was sent (its status time): a failure
    # read later with another time is the action's own.
    failure_before: str | None = None
    errors: int = 0
    mismatches: int = 0
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    heartbeat: Heartbeat = field(default_factory=Heartbeat, compare=False, repr=False)

    @classmethod
    def resumed(cls, kind: OperationKind) -> Progress:
        progress = cls(kind)
        details = activity.info().heartbeat_details
        last: Any = details[-1] if details else None
        if isinstance(last, dict) and last.get("kind") == kind.value:
            progress.before = last.get("before")
            progress.sent = int(last.get("sent") or 0)
            progress.failure_before = last.get("failure_before")
            if last.get("operation"):
                try:
                    progress.operation = FleetOperation.model_validate(last["operation"])
                except ValidationError:
                    progress.operation = None
        return progress

    def beat(self, waiting: str | None = None) -> None:
        """What a retry resumes from, at once when it changed (the restore point, the operation
        sent, its status); the same again only as often as liveness needs (activities/heartbeats.py)."""
        self.heartbeat(
            {
                "kind": self.kind.value,
                "before": self.before,
                "sent": self.sent,
                "failure_before": self.failure_before,
                "operation": self.operation.to_json() if self.operation else None,
                "waiting": waiting,
            }
        )

    def done(
        self, kind: OperationKind, scale_set: str, instance: InstanceView, known_before: str | None = None
    ) -> FleetOperation:
        """The action's result as the workflow reads it: the OS disk before (as read before the
        action; else as the workflow last knew it) and after."""
        operation = self.operation
        now = datetime.now(UTC)
        return FleetOperation(
            operation_id=operation.operation_id
            if operation
            else f"{kind.value}-{instance.instance_id}-reconciled",
            kind=kind,
            scale_set=scale_set,
            instance_id=instance.instance_id,
            status=OperationStatus.SUCCEEDED,
            start_time=operation.start_time if operation else self.started,
            end_time=now,
            previous_os_disk=self.before or known_before,
            os_disk=instance.os_disk.name,
            request_count=self.sent,
            status_url=operation.status_url if operation else None,
        )
