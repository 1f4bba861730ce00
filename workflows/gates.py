"""The health gates of a rolling upgrade: pure arithmetic with messages that name the figures."""

from __future__ import annotations

from collections.abc import Sequence

from models.errors import UpgradeErrorCode
from models.policy import RollingUpgradePolicy
from models.status import ApiError


def exceeds(count: int, total: int, percent: int) -> bool:
    """More than `percent` of `total`, in whole numbers so 1 of 5 at 20% is allowed."""
    return count * 100 > total * percent


def share(count: int, total: int) -> str:
    return f"{round(count * 100 / total, 1):g}%" if total else "0%"


def _named(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def unhealthy_gate(
    unhealthy: Sequence[str], total: int, policy: RollingUpgradePolicy, *, before_upgrade: bool
) -> ApiError | None:
    """maxUnhealthyInstancePercent, checked before the upgrade and before every later batch."""
    limit = policy.max_unhealthy_instance_percent
    if not exceeds(len(unhealthy), total, limit):
        return None
    if before_upgrade:
        code = UpgradeErrorCode.UNHEALTHY_EXCEEDED_BEFORE_UPGRADE
        when = "before the upgrade started; no instance was touched"
    else:
        code = UpgradeErrorCode.UNHEALTHY_EXCEEDED_IN_UPGRADE
        when = "during the upgrade; it stopped at the end of the current batch"
    return ApiError(
        code=code,
        message=(
            f"{len(unhealthy)} of {total} instances ({share(len(unhealthy), total)}) were "
            f"unhealthy {when}. The policy allows {limit}% (maxUnhealthyInstancePercent). "
            f"Unhealthy instances: {_named(list(unhealthy))}."
        ),
    )


def upgraded_gate(
    failed: Sequence[str], attempted: int, policy: RollingUpgradePolicy, first_failure: str
) -> ApiError | None:
    """maxUnhealthyUpgradedInstancePercent, checked after every batch."""
    limit = policy.max_unhealthy_upgraded_instance_percent
    if not failed or not exceeds(len(failed), attempted, limit):
        return None
    return ApiError(
        code=UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED,
        message=(
            f"{len(failed)} of {attempted} upgraded instances ({share(len(failed), attempted)}) "
            f"are unhealthy; the policy allows {limit}% "
            f"(maxUnhealthyUpgradedInstancePercent). First failed instance: {first_failure}."
        ),
    )
