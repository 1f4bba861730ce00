"""Heartbeats that say something new go out at once; the others only keep an activity alive.

Every heartbeat that reaches Temporal is a write of the activity's state on the server (and a
billed action on Temporal Cloud). Reimages polling their operation and health waits probing
every second sent three heartbeats for every activity they completed (20 scale sets upgraded
at once: 6,600 heartbeats for 2,200 activities). A heartbeat whose details say nothing new only
shows that the worker is alive, and one every LIVENESS_SECONDS does that, well inside the
shortest heartbeat timeout the workflows set (10 s). The price: a cancel, which an activity
hears in a heartbeat's answer, reaches a quiet one within LIVENESS_SECONDS (a prober cancelled
at its health-wait deadline).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from temporalio import activity

LIVENESS_SECONDS = 4.0


class Heartbeat:
    """`beat(details, news=...)`: heartbeat `details` when `news` (what counts as new; the
    details themselves by default) differs from the last heartbeat's, or when the last one is
    LIVENESS_SECONDS old. The first call always beats."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._said: Any = None
        self._at: float | None = None

    def __call__(self, details: Any, *, news: Any = None) -> None:
        said = details if news is None else news
        now = self._clock()
        if self._at is None or said != self._said or now - self._at >= LIVENESS_SECONDS:
            activity.heartbeat(details)
            self._said, self._at = said, now
