"""Checkpoints (rollingUpgradePolicy.checkpoints), pure: how far the next batch may go, and which
checkpoint the upgrade has just reached.

A checkpoint at `percent` is reached once that share of the instances to upgrade (those done and
those still to do; skipped ones never count) have been through a batch: at least one instance,
rounded up, so 5% of 12 is 1. A batch never runs past the next checkpoint not yet passed, so the
upgrade stops exactly there to bake and, where asked, to wait for approval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from models.policy import Checkpoint


def count_at(percent: int, upgradable: int) -> int:
    """How many instances a checkpoint at `percent` stands after."""
    return min(upgradable, max(1, math.ceil(upgradable * percent / 100)))


def room(checkpoints: Sequence[Checkpoint], passed: int, done: int, upgradable: int) -> int | None:
    """The most instances the next batch may take before the next checkpoint not yet passed
    (`passed`: how many are behind the upgrade); None when none is ahead."""
    for checkpoint in checkpoints[passed:]:
        at = count_at(checkpoint.percent, upgradable)
        if at > done:
            return at - done
    return None


def reached(checkpoints: Sequence[Checkpoint], passed: int, done: int, upgradable: int) -> int | None:
    """The index of the last checkpoint `done` instances reach that is not passed yet (a batch
    that reached two at once stops at the later one), or None."""
    last = None
    for index in range(passed, len(checkpoints)):
        if count_at(checkpoints[index].percent, upgradable) <= done:
            last = index
    return last
