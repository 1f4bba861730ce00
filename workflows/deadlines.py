"""Many durable deadlines on one timer.

A batch gives every instance its own health-wait deadline. One timer per instance costs two
history events and two server timer operations each (start, cancel), although nearly every
instance is healthy long before its deadline. The clock keeps one timer, armed for the earliest
deadline still awaited; when it fires, the deadlines that have passed resolve and it re-arms for
the next. When nothing is awaited any more the timer is cancelled.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow


class DeadlineClock:
    def __init__(self) -> None:
        self._pending: list[tuple[datetime, asyncio.Future[None]]] = []
        self._ticking: asyncio.Task[None] | None = None

    def after(self, wait: timedelta) -> asyncio.Future[None]:
        """A future that resolves `wait` from now (workflow time); cancel it when not needed."""
        deadline = asyncio.get_running_loop().create_future()
        self._pending.append((workflow.now() + wait, deadline))
        deadline.add_done_callback(self._forget)
        if self._ticking is None or self._ticking.done():
            self._ticking = asyncio.ensure_future(self._tick())
        return deadline

    def _forget(self, done: asyncio.Future[None]) -> None:
        self._pending = [(when, f) for when, f in self._pending if f is not done]
        if not self._pending and self._ticking is not None and not self._ticking.done():
            self._ticking.cancel()  # nothing awaited: cancel the timer

    async def _tick(self) -> None:
        while self._pending:
            now = workflow.now()
            for when, deadline in self._pending:
                if when <= now and not deadline.done():
                    deadline.set_result(None)
            # Resolved futures leave _pending only when their callbacks run, so skip them here.
            waiting = [when for when, deadline in self._pending if not deadline.done()]
            if not waiting:
                return
            wait = max(min(waiting) - now, timedelta(milliseconds=1))
            await workflow.sleep(wait, summary="health-wait deadline")
