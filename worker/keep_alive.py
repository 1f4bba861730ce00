"""Activities stay alive while an ARM read waits for the subscription's read budget.

A read may wait for its token (fleet/azure/read_pacing.py) longer than an activity's heartbeat
timeout allows between heartbeats: after a 429 every read of the subscription waits out its
Retry-After, and at fleet scale reads queue. While it waits, the read calls the keep-alive hook
every few seconds, in the waiting activity's context, and the worker heartbeats that activity
again with the details it last heartbeated. The same details, never others: a heartbeat
replaces the details a retried attempt resumes from, and an exactly-once action keeps there the
operation it sent (activities/exactly_once.py). Before the attempt's first heartbeat, those are
the details the previous attempt left (what the server holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)


class _Said:
    """The details an activity attempt last heartbeated."""

    def __init__(self, details: Sequence[Any]) -> None:
        self.details = tuple(details)


_said: ContextVar[_Said | None] = ContextVar("heartbeat_said", default=None)


def heartbeat_again() -> None:
    """Heartbeat the running activity's last details again; nothing outside an activity."""
    said = _said.get()
    if said is not None and activity.in_activity():
        activity.heartbeat(*said.details)


class _Outbound(ActivityOutboundInterceptor):
    def heartbeat(self, *details: Any) -> None:
        said = _said.get()
        if said is not None:
            said.details = details
        super().heartbeat(*details)


class _Inbound(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        _said.set(_Said(activity.info().heartbeat_details))
        return await super().execute_activity(input)


class HeartbeatMemory(Interceptor):
    """Remembers each activity attempt's last heartbeat details, for `heartbeat_again`."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)
