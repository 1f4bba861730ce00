"""The gates of a rolling upgrade: each returns the breach that stops it, or nothing.

Pure arithmetic over the ledger, with messages that name the figures and say that the upgrade
stops. The checklist in RollingUpgradeWorkflow decides when each gate runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from models.errors import UpgradeErrorCode
from models.fleet import HealthSource
from models.policy import RollingUpgradePolicy, format_duration
from models.status import ApiError, ApiErrorBase
from models.upgrade import ATTEMPTED, FINAL_FAILURES, InstanceProgress, InstanceState
from rules import failures
from rules.ledger import UpgradeLedger
from rules.planner import unhealthy_limit, upgraded_limit
from rules.waves import zone_text

STOPS = "The upgrade stops: no new batch starts."


def share(count: int, total: int) -> str:
    return f"{round(count * 100 / total, 1):g}%" if total else "0%"


def named(ids: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def unhealthy_gate(
    unhealthy: Sequence[str],
    total: int,
    policy: RollingUpgradePolicy,
    *,
    before_upgrade: bool,
    source: HealthSource | None = None,
) -> ApiError | None:
    """maxUnhealthyInstancePercent (or maxUnhealthyInstanceCount, the stricter), checked before
    the upgrade and before every later batch. The message says where health was read (`source`):
    a wrong source is the usual wrong cause."""
    limit = unhealthy_limit(total, policy)
    if len(unhealthy) <= limit.allowed:
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
            f"unhealthy {when}. The policy allows {limit}. "
            f"Unhealthy instances: {named(list(unhealthy))}."
            + (f" Health is read from {source.described}." if source else "")
        ),
    )


def in_flight_gate(ledger: UpgradeLedger, *, before_upgrade: bool) -> ApiError | None:
    request = ledger.request
    return unhealthy_gate(
        ledger.unhealthy(),
        ledger.total,
        request.policy,
        before_upgrade=before_upgrade,
        source=request.health_source,
    )


def upgraded_gate(ledger: UpgradeLedger, *, including_later: bool = False) -> ApiError | None:
    """maxUnhealthyUpgradedInstancePercent (or maxUnhealthyUpgradedInstanceCount, the stricter)
    over the instances upgraded so far.

    `including_later` also counts instances that passed their health wait but have turned
    unhealthy since (Azure: "instances that become unhealthy post an upgrade"). The message
    aggregates the most common error, as Azure's does.
    """
    failed = ledger.failed()
    later = ledger.unhealthy_since_upgrade() if including_later else []
    unhealthy = len(failed) + len(later)
    attempted = len(ledger.attempted())
    limit = upgraded_limit(attempted, ledger.request.policy)
    if not unhealthy or unhealthy <= limit.allowed:
        return None
    if ledger.rules.exact_core:
        pairs = [(p.code, failures.describe(p)) for p in failed]
        pairs += [(failures.UNHEALTHY_SINCE_UPGRADE, describe_later(p)) for p in later]
        cause = f"Most common error: {failures.most_common(pairs)}."
    else:
        first = failures.describe(failed[0]) if failed else describe_later(later[0])
        cause = f"First failed instance: {first}."
    return ApiError(
        code=UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED,
        message=(
            f"{unhealthy} of {attempted} upgraded instances ({share(unhealthy, attempted)}) "
            f"are unhealthy; the policy allows {limit}. {cause}"
            + (f" {STOPS}" if ledger.rules.exact_core else "")
        ),
        details=failure_details(ledger)
        + [
            ApiErrorBase(
                code=failures.UNHEALTHY_SINCE_UPGRADE, target=p.instance_id, message=describe_later(p)
            )
            for p in later
        ],
    )


def describe_later(progress: InstanceProgress) -> str:
    health = progress.health.value if progress.health else "Unknown"
    return f"{progress.instance_id} (upgraded in batch {progress.batch}, {health} since)"


def failure_details(ledger: UpgradeLedger) -> list[ApiErrorBase]:
    return [
        ApiErrorBase(
            code=p.code,
            target=p.instance_id,
            message=f"{p.cause.value if p.cause else 'Unknown'} failure: {p.message}",
        )
        for p in ledger.in_state(*FINAL_FAILURES)
    ]


def internal_failures(ledger: UpgradeLedger) -> ApiError | None:
    """An operation that failed in a way nobody planned for stops the upgrade."""
    broken = [
        p
        for p in ledger.in_state(InstanceState.FAILED)
        if p.code == UpgradeErrorCode.INTERNAL_EXECUTION_ERROR
    ]
    if not broken:
        return None
    return ApiError(
        code=UpgradeErrorCode.INTERNAL_EXECUTION_ERROR,
        message=(
            f"the upgrade stopped after an unexpected error on {len(broken)} instance(s): "
            f"{failures.describe(broken[0])}"
        ),
        details=[ApiErrorBase(code=p.code, target=p.instance_id, message=p.message) for p in broken],
    )


def deadline_gate(ledger: UpgradeLedger, now: datetime) -> ApiError | None:
    """The upgrade's own time limit (upgradeTimeout), checked once the batch in flight settled."""
    if ledger.deadline is None or now < ledger.deadline:
        return None
    attempted = len(ledger.in_state(*ATTEMPTED))
    timeout = ledger.request.upgrade_timeout or timedelta(0)
    remaining = len(ledger.candidates()) + len(ledger.pending_approval())
    held = ""
    if ledger.paused is not None:  # a pause does not extend the timeout
        held = f"; it was {ledger.paused.reason} (since {ledger.paused.since.isoformat()})"
    elif ledger.pending_approval():
        held = f"; it was waiting for approval of {named(ledger.pending_approval())}"
    return ApiError(
        code=UpgradeErrorCode.TIMEOUT,
        message=(
            f"the upgrade did not finish within its timeout of {format_duration(timeout)} "
            f"(started {ledger.start_time.isoformat()}, deadline {ledger.deadline.isoformat()}); "
            f"it stopped after the batch in flight settled, with {attempted} of "
            f"{attempted + remaining} instances upgraded{held}"
        ),
    )


def approval_wait_reason(ledger: UpgradeLedger, batch: int, waiting: Sequence[str]) -> str:
    """Why the next batch has not started: its instances await approval."""
    request = ledger.request
    how = f"`approve` (upgradectl approve {request.scale_set})"
    if request.not_before_timeout is not None:
        how += f", or on their own after notBeforeTimeout {format_duration(request.not_before_timeout)}"
    return (
        f"waiting for approval of batch {batch}: {len(waiting)} instance(s) pending approval "
        f"({named(list(waiting))}); approve with {how}"
    )


def zone_wave_reason(region: str, done: str | None, left: Mapping[str, int]) -> str:
    """Why the next batch waits in a rollout's zone waves: its zones left, the region's turn."""
    remaining = ", ".join(f"{zone_text(z)}: {n}" for z, n in sorted(left.items()))
    after = f"{zone_text(done)} done; " if done is not None else ""
    return (
        f"{after}waiting for the rollout's zone wave in {region} (one zone of a region in flight "
        f"at a time); instances left by zone: {remaining}"
    )


def budget_wait_reason(ledger: UpgradeLedger) -> str:
    """Why no batch can start while instances outside the batch are unhealthy."""
    unhealthy = ledger.unhealthy()
    policy = ledger.request.policy
    limit = unhealthy_limit(ledger.total, policy)
    return (
        f"waiting for health to recover: {len(unhealthy)} of {ledger.total} instances are "
        f"unhealthy ({named(unhealthy)}) and the policy allows {max(1, limit.allowed)} down at once "
        f"({limit.field} {limit.shown}), so the next batch would exceed it"
    )


def budget_gate(ledger: UpgradeLedger, waited: timedelta) -> ApiError:
    """Health did not recover in time for the next batch to start within the budget."""
    return ApiError(
        code=UpgradeErrorCode.UNHEALTHY_EXCEEDED_IN_UPGRADE,
        message=(
            f"no batch could start for {format_duration(waited)}: "
            f"{budget_wait_reason(ledger).removeprefix('waiting for health to recover: ')}. "
            f"{STOPS}"
        ),
    )


# --- several extensions, each on its own (seed 003) ---------------------------------------------


def extension_failures(ledger: UpgradeLedger, name: str) -> list[InstanceProgress]:
    """Instances extension `name` failed on (rolled back or left failed)."""
    return [p for p in ledger.tried(name) if (p.extension_outcomes or {})[name].state in FINAL_FAILURES]


def extension_gates(ledger: UpgradeLedger) -> dict[str, ApiError]:
    """maxUnhealthyUpgradedInstancePercent (or the count, the stricter) for each extension still
    going, over the instances it was tried on: an extension past it stops alone (Azure upgrades
    each extension on its own: "A failure on one extension doesn't affect the other extensions")."""
    if not ledger.rules.independent_extensions:
        return {}
    breaches = {}
    for target in ledger.extensions_going():
        tried, failed = ledger.tried(target.name), extension_failures(ledger, target.name)
        limit = upgraded_limit(len(tried), ledger.request.policy)
        if not failed or len(failed) <= limit.allowed:
            continue
        outcomes = [(p.extension_outcomes or {})[target.name] for p in failed]
        cause = failures.most_common(
            (o.code, f"{p.instance_id} ({o.message})") for p, o in zip(failed, outcomes, strict=True)
        )
        breaches[target.name] = ApiError(
            code=UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED,
            target=target.name,
            message=(
                f"extension {target}: {len(failed)} of {len(tried)} instances it was tried on "
                f"({share(len(failed), len(tried))}) failed; the policy allows {limit}. "
                f"Most common error: {cause}. It stopped "
                f"after batch {ledger.batches}: no later batch installs {target.name}."
            ),
            details=[
                ApiErrorBase(code=o.code, target=p.instance_id, message=o.message)
                for p, o in zip(failed, outcomes, strict=True)
            ],
        )
    return breaches


def extensions_stopped(ledger: UpgradeLedger) -> ApiError | None:
    """The upgrade's error once an extension stopped on its own breach: which stopped, and that
    the others went on without it (they are not affected)."""
    stopped = ledger.stopped_extensions
    if not stopped:
        return None
    going = [t.name for t in ledger.extensions_going()]
    others = f"the upgrade went on with {', '.join(going)}" if going else "no extension was left to install"
    return ApiError(
        code=UpgradeErrorCode.UPGRADED_UNHEALTHY_EXCEEDED,
        message=(
            f"{len(stopped)} of {len(ledger.change.extensions)} extensions stopped on their own "
            f"policy breach ({', '.join(stopped)}); {others}. "
            + " ".join(error.message or "" for error in stopped.values())
        ),
        details=[detail for error in stopped.values() for detail in error.details or []],
    )
