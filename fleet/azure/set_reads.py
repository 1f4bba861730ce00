"""Coalesced reads of a scale set: one paged instance list serves every probe and every look at
an instance (before an action, and until it shows done).

A batch of 50 instances each polling every 5 s would otherwise cost 50 ARM reads per poll, and
ARM throttles reads per subscription (an instance's reimage alone would cost a read before it and
a poll of its operation every Retry-After until done: some seven reads an instance). A caller is
only ever served by a read that STARTED after it asked: a read begun before an instance's
reimage finished would show it healthy on its old disk. So callers gather for a short window
(and while the read waits for its share of the read budget), one read serves them all, and
callers that arrive while it runs wait for the next one. Reads of one set start at least
`min_gap` apart (half the callers' probe interval): instances of a batch that began waiting at
different moments would otherwise each bring a read of their own, several a second on a large
set. Callers with a `min_gap` watch (a probe, a look until an action shows done); a read that
any caller without one joined before its turn came is waited for, and goes ahead of watching
reads when the read budget runs short (fleet/azure/read_pacing.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Generic, TypeVar

from fleet.azure.read_pacing import kept_alive, watching

T = TypeVar("T")
# How long the first caller waits for others to join its read: the probes of one batch, started
# together, arrive within a few milliseconds of each other.
GATHER_SECONDS = 0.05


class CoalescingReader(Generic[T]):
    """`read(scale_set)` lists every instance; `get` shares one call among the callers that ask
    at about the same time, never serving one a read that began before it asked."""

    def __init__(
        self,
        read: Callable[[str], Awaitable[T]],
        gather_seconds: float = GATHER_SECONDS,
        turn: Callable[[bool], Awaitable[object]] | None = None,
    ) -> None:
        self._read = read
        self._gather = gather_seconds
        # Waits for the read's turn (its token of the read budget, taken ahead): callers keep
        # joining meanwhile, so a budget that runs short makes reads fewer, not later. Its
        # argument: whether every caller so far only watches.
        self._turn = turn
        # The read callers may still join (not started yet), per scale set.
        self._next: dict[str, asyncio.Task[T]] = {}
        # When the last read of each scale set started (time.monotonic()).
        self._started: dict[str, float] = {}
        # The sets whose next read a caller that does not watch (no min_gap) joined.
        self._waited_for: set[str] = set()

    async def get(self, scale_set: str, min_gap: float = 0.0) -> T:
        task = self._next.get(scale_set)
        if task is None:
            task = asyncio.create_task(self._gather_then_read(scale_set, min_gap))
            self._next[scale_set] = task
            # Its error is retrieved even when every caller was cancelled meanwhile.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        if min_gap <= 0:
            self._waited_for.add(scale_set)
        # Shielded: one caller cancelled (its activity ended) must not cancel the others' read.
        # Kept alive: the read may wait for the subscription's read budget, and only the
        # caller that started it waits inside it (fleet/azure/read_pacing.py).
        return await kept_alive(task)

    async def _gather_then_read(self, scale_set: str, min_gap: float) -> T:
        try:
            since = time.monotonic() - self._started.get(scale_set, float("-inf"))
            await asyncio.sleep(max(self._gather, min_gap - since))
            watches = scale_set not in self._waited_for
            if self._turn is not None:
                await self._turn(watches)
        finally:
            # From here on, new callers need a read that starts after them: the next one.
            del self._next[scale_set]
            self._waited_for.discard(scale_set)
        self._started[scale_set] = time.monotonic()
        # Its further GETs (the list's next pages, a 202's Location) wait as its first did.
        with watching() if watches else nullcontext():
            return await self._read(scale_set)
