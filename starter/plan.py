"""`upgradectl plan`: the batches an upgrade would run now, from the same pure planner and ledger
the workflow uses, after reading the scale set and resolving the image (or the extension
versions, as the admission resolves them): reads only, so it is the safe first command on a real
subscription."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio.exceptions import ApplicationError

from activities.fleet_activities import FleetActivities
from fleet.errors import FleetError
from fleet.protocol import FleetBackend
from models import steps
from models.change import Change, ExtensionRequest, ExtensionTarget
from models.errors import RefusalCode
from models.fleet import ScaleSetView
from models.image import ImageReference
from models.policy import format_duration
from models.status import ApiError
from models.upgrade import InstanceState, UpgradeRequest, extension_settings
from rules.change_kinds import kind_asked, kind_of
from rules.checkpoints import count_at
from rules.gates import in_flight_gate
from rules.ledger import UpgradeLedger
from rules.planner import Candidate, batch_limit, unhealthy_limit
from rules.presentation import change_text
from rules.surge import surges


class ExtensionsRefused(Exception):
    """The admission would refuse the extensions asked for (ExtensionNotFound,
    ExtensionVersionNotFound), in its words."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


async def resolve_extensions(
    fleet: FleetBackend, scale_set: ScaleSetView, asked: list[ExtensionRequest]
) -> list[ExtensionTarget]:
    """The exact version each extension would move to, by the admission's own rules (the same
    activity code, called directly): the newest of the model's major version, or the one asked."""
    try:
        result = await FleetActivities(fleet).resolve_extensions(
            steps.ResolveExtensionsInput(extensions=asked, scale_set=scale_set)
        )
    except ApplicationError as err:
        if isinstance(err.__cause__, FleetError):
            raise err.__cause__ from None  # not reachable, throttled: as any read of the fleet
        if err.type in {c.value for c in RefusalCode}:
            raise ExtensionsRefused(err.type or "Refused", err.message) from None
        raise
    return result.extensions


def admitted(
    request: UpgradeRequest, scale_set: ScaleSetView, change: ImageReference | Change, now: datetime
) -> UpgradeLedger:
    """The upgrade's ledger as its admission would leave it now. `change` is the resolved image
    (or Change) the upgrade would apply."""
    ledger = UpgradeLedger(request, now)
    ledger.admit(scale_set, change if isinstance(change, Change) else Change(image=change))
    return ledger


def gate_before(ledger: UpgradeLedger) -> ApiError | None:
    """What the gate before the first batch would say (maxUnhealthyInstancePercent): the upgrade
    would fault at once, touching nothing."""
    return in_flight_gate(ledger, before_upgrade=True)


def health_line(scale_set: ScaleSetView) -> str:
    """Where the upgrade reads health, and how the extension probes (its model's settings)."""
    line = f"health: read from {scale_set.health_source.described}"
    if scale_set.health_extension is not None:
        line += f"; the extension probes {extension_settings(scale_set.health_extension)}"
    if scale_set.both_health_sources:
        line += " (the set also has a load balancer health probe: automatic upgrades need one source only)"
    return line


def plan_text(ledger: UpgradeLedger, scale_set: ScaleSetView) -> str:
    """The plan as plain text: the scale set, the change, what is skipped, every batch, an
    estimate."""
    request = ledger.request
    kind = kind_of(ledger.change)
    batches = ledger.plan()
    lines = [
        f"scale set {scale_set.name}: {scale_set.orchestration_mode}, {scale_set.location}, "
        f"{len(scale_set.instances)} instances, upgradePolicy.mode {scale_set.upgrade_mode}",
        kind.plan_line(change_text(ledger), request.change_asked),
    ]
    if request.policy_from_scale_set:  # seed 003: "Upgrade policies defined on the scale set are honored"
        lines.append("policy: " + ", ".join(f"{name} {value}" for name, value in request.rolling_policy()))
    lines.append(health_line(scale_set))
    if request.alarms:  # alarm gates: read before every batch and during its health wait
        lines.append(
            "alarms: "
            + "; ".join(f"{alarm.name} ({alarm.source})" for alarm in request.alarms)
            + f"; rollbackOnAlarm {str(request.rollback_on_alarm).lower()}, alarmUnreachableTimeout "
            + format_duration(request.alarm_unreachable_timeout)
        )
    skipped = ledger.in_state(InstanceState.SKIPPED)
    if skipped:
        # Which instance for which reason: the ids listed under each reason.
        by_reason: dict[str, list[str]] = {}
        for progress in skipped:
            by_reason.setdefault(progress.code or "Skipped", []).append(progress.instance_id)
        lines.append(
            f"skipped: {len(skipped)} instance(s): "
            + "; ".join(
                f"{reason} ({len(ids)}): {', '.join(ids)}"
                for reason, ids in sorted(by_reason.items(), key=lambda item: -len(item[1]))
            )
        )
    lines.append(limits_line(ledger))
    surge = surges(request.policy, ledger.change)
    stops = checkpoint_stops(ledger)
    done = 0
    for number, batch in enumerate(batches, start=1):
        ids = ", ".join(c.instance_id for c in batch)
        if surge:  # maxSurge: the new instances first, the old ones deleted once they are healthy
            ids = f"create {len(batch)} new, then delete {ids}"
        lines.append(f"batch {number}: {len(batch)} instance(s) {where(batch)}: {ids}")
        done += len(batch)
        if done in stops and number < len(batches):
            lines.append(stops[done])
    if not batches:
        lines.append(f"nothing to upgrade: {kind.all_done}")
    lines.append(estimate(request, len(batches)))
    return "\n".join(lines)


def checkpoint_stops(ledger: UpgradeLedger) -> dict[int, str]:
    """`plan`'s line after the batch that reaches each checkpoint, by the instances done then."""
    points = ledger.request.policy.checkpoints or []
    _, upgradable = ledger.checkpoint_counts()
    stops = {}
    for number, point in enumerate(points, start=1):
        what = [f"bake {format_duration(point.bake_time)}"] if point.bake_time else []
        what += ["wait for `upgradectl approve`"] if point.approval else []
        at = count_at(point.percent, upgradable)
        stops[at] = f"checkpoint {number} ({point.percent}%, {at} of {upgradable}): " + (
            ", then ".join(what) or "go on"
        )
    return stops


def limits_line(ledger: UpgradeLedger) -> str:
    """The policy's limits over this set, as the planner and the gates apply them: each the
    percentage's or the absolute count's, whichever is stricter."""
    policy, total = ledger.request.policy, ledger.total
    batch = batch_limit(total, policy, small_sets_one_at_a_time=ledger.rules.small_sets_one_at_a_time)
    down = unhealthy_limit(total, policy)
    upgraded = f"{policy.max_unhealthy_upgraded_instance_percent}% (maxUnhealthyUpgradedInstancePercent)"
    if policy.max_unhealthy_upgraded_instance_count is not None:
        upgraded += f" and {policy.max_unhealthy_upgraded_instance_count} (maxUnhealthyUpgradedInstanceCount)"
    return (
        f"limits over {total} instances: batches of at most {batch.allowed} ({batch.field} {batch.shown}); "
        f"at most {max(1, down.allowed)} unhealthy at once, the batch included ({down.field} "
        f"{down.shown}); of the instances upgraded, at most {upgraded} unhealthy"
    )


def surge_line(room: steps.SurgeRoomResult, largest: int) -> str:
    """`plan`'s quota check (read now; the upgrade reads it again before every batch)."""
    if room.room:
        return (
            f"maxSurge quota: {room.available_cores} vCPUs free for {room.vm_size}; the largest batch's "
            f"{largest} new instance(s) need {room.needed_cores}: batches create before they delete"
        )
    return f"maxSurge quota: no room ({room.detail}): such batches are upgraded in place"


def where(batch: list[Candidate]) -> str:
    """Zones, update domains and phases of a batch, e.g. "(zone 1, UD 0-1, phase 0)"."""
    parts = []
    zones = sorted({c.zone for c in batch if c.zone})
    if zones:
        parts.append(f"zone {', '.join(zones)}")
    domains = sorted({c.update_domain for c in batch})
    parts.append(f"UD {domains[0]}" if len(domains) == 1 else f"UD {domains[0]}-{domains[-1]}")
    phases = sorted({c.phase for c in batch if c.phase is not None})
    if phases:
        parts.append(f"phase {', '.join(map(str, phases))}")
    unhealthy = sum(c.unhealthy for c in batch)
    if unhealthy:
        parts.append(f"{unhealthy} unhealthy now")
    return f"({'; '.join(parts)})"


def estimate(request: UpgradeRequest, batches: int) -> str:
    if not batches:
        return "estimate: nothing to do"
    kind = kind_asked(request)
    change_time = kind.typical
    health = request.health
    healthy_after = timedelta(
        seconds=max(health.effective_grace_period, health.interval_in_seconds * health.number_of_probes)
    )
    pauses = request.policy.pause_time_between_batches * (batches - 1)
    typical = (change_time + healthy_after) * batches + pauses
    longest = (change_time + health.health_wait_timeout) * batches + pauses
    action = kind.action
    return (
        f"estimate: {batches} batch(es), about {format_duration(typical)} if every instance is healthy "
        f"soon after {action} of about {format_duration(change_time)}; up to "
        f"{format_duration(longest)} if instances take the whole healthWaitTimeout "
        f"({format_duration(health.health_wait_timeout)})"
    )
