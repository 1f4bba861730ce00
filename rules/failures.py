"""Failure classification: what an instance's failure (or the upgrade's) is called and why.

Pure: the batch workflow codes each instance's failure here, and the parent uses the same codes
to tell an instance that is gone (deleted under us: no failure at all) from one that failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from models.errors import UpgradeErrorCode
from models.fleet import HealthState
from models.status import ApiError, ApiErrorBase, InnerError
from models.upgrade import InstanceProgress

# How a health failure is coded in an instance's outcome and the status's error details.
HEALTH_FAILURE_CODES = {
    HealthState.UNHEALTHY: "ApplicationUnhealthy",
    HealthState.UNKNOWN: "ApplicationHealthUnknown",
    HealthState.INITIALIZING: "ApplicationStillInitializing",
}

# The back end's codes for "this instance (or what we asked about) does not exist".
GONE_CODES = frozenset({"NotFound", "ResourceNotFound"})

# Why an instance left the upgrade without failing.
SKIP_ALREADY_ON_TARGET = "AlreadyOnTargetImage"
SKIP_CUSTOM_METRIC = "SkipUpgradeCustomMetric"
SKIP_GONE = "InstanceNoLongerExists"
# A rollback moves only the instances the upgrade it rolls back moved.
SKIP_NOT_MOVED = "NotMovedByTheUpgradeRolledBack"
UNHEALTHY_SINCE_UPGRADE = "UnhealthySinceUpgrade"


def describe(progress: InstanceProgress) -> str:
    return f"{progress.instance_id} ({progress.message or progress.code})"


def most_common(failures: Iterable[tuple[str | None, str]]) -> str:
    """The most common error among (code, description) pairs, with its count and an example:
    "ApplicationUnhealthy on 3 instance(s), e.g. 4 (Unhealthy after the PT5M health wait)"."""
    failures = [(code or "Unknown", description) for code, description in failures]
    if not failures:
        return ""
    counts = Counter(code for code, _ in failures)
    code, count = counts.most_common(1)[0]
    example = next(description for c, description in failures if c == code)
    others = len(counts) - 1
    tail = f"; {others} other error code(s)" if others else ""
    return f"{code} on {count} instance(s), e.g. {example}{tail}"


def internal_error(err: BaseException) -> ApiError:
    """InternalExecutionError: the fleet failed in a way the upgrade has no rule for.

    The chain of causes (an activity's, a child workflow's) goes in `details`, so the user sees
    what actually broke, not just that something did.
    """
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and len(chain) < 5:
        chain.append(current)
        current = getattr(current, "cause", None) or current.__cause__
    details = []
    for error in chain:
        code = getattr(error, "type", None)
        details.append(
            ApiErrorBase(
                code=code if isinstance(code, str) and code else type(error).__name__,
                message=getattr(error, "message", None) or str(error),
            )
        )
    root = details[-1]
    return ApiError(
        code=UpgradeErrorCode.INTERNAL_EXECUTION_ERROR,
        message=f"the upgrade stopped on an unexpected error: {root.code}: {root.message}",
        details=details,
        innererror=InnerError(exceptiontype=type(err).__name__, errordetail=str(err)),
    )
