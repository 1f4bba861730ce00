"""Coalesced health reads: one paged instance list per scale set serves every probe.

A batch of 50 instances each polling every 5 s would otherwise cost 50 ARM reads per poll, and
ARM throttles reads per subscription. Concurrent callers for one scale set share the read in
flight, and a read younger than the caller's max age is reused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from models.fleet import HealthProbe

Probes = Mapping[str, HealthProbe]
MAX_AGE_CAP = 1.0  # seconds: a probe never sees a read older than this


def max_age_for(interval_seconds: float) -> float:
    """Half the caller's probe interval, at most MAX_AGE_CAP."""
    return min(interval_seconds / 2, MAX_AGE_CAP)


@dataclass
class _Read:
    started: float
    probes: Probes


class CoalescingHealthReader:
    """`read(scale_set)` lists every instance's probe; `get` calls it as rarely as allowed."""

    def __init__(
        self, read: Callable[[str], Awaitable[Probes]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read = read
        self._clock = clock
        self._last: dict[str, _Read] = {}
        self._in_flight: dict[str, asyncio.Task[Probes]] = {}

    async def get(self, scale_set: str, max_age: float) -> Probes:
        last = self._last.get(scale_set)
        if last is not None and self._clock() - last.started <= max_age:
            return last.probes
        task = self._in_flight.get(scale_set)
        if task is None:
            task = asyncio.create_task(self._read_and_keep(scale_set))
            self._in_flight[scale_set] = task
            # Its error is retrieved even when every caller was cancelled meanwhile.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        # shield: one caller cancelled (its activity ended) must not cancel the others' read.
        return await asyncio.shield(task)

    async def _read_and_keep(self, scale_set: str) -> Probes:
        started = self._clock()
        try:
            probes = await self._read(scale_set)
            self._last[scale_set] = _Read(started, probes)
            return probes
        finally:
            del self._in_flight[scale_set]
