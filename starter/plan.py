"""`upgradectl plan`: the batches an upgrade would run now, from the same pure planner and ledger
the workflow uses, after reading the scale set and resolving the image: reads only, so it is the
safe first command on a real subscription."""

from __future__ import annotations

from datetime import datetime, timedelta

from models.change import Change
from models.fleet import ScaleSetView
from models.image import ImageReference
from models.policy import format_duration
from models.upgrade import InstanceState, UpgradeRequest
from workflows.ledger import UpgradeLedger
from workflows.planner import Candidate

# What one reimage of an instance takes on Azure (OS disk written, VM booted), for the estimate
# only: minutes in practice, depending on the image size and the VM size.
TYPICAL_REIMAGE = timedelta(minutes=3)


def plan_text(request: UpgradeRequest, scale_set: ScaleSetView, image: ImageReference, now: datetime) -> str:
    """The plan as plain text: the scale set, what is skipped, every batch, an estimate."""
    ledger = UpgradeLedger(request, now)
    ledger.admit(scale_set, Change(image=image))
    batches = ledger.plan()
    lines = [
        f"scale set {scale_set.name}: {scale_set.orchestration_mode}, {scale_set.location}, "
        f"{len(scale_set.instances)} instances, upgradePolicy.mode {scale_set.upgrade_mode}",
        # resolve_image keeps the asked version ('latest') and sets the exact one.
        f"target image: {image}"
        + (" ('latest' resolved)" if image.version != image.resolved_version else ""),
    ]
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
    for number, batch in enumerate(batches, start=1):
        ids = ", ".join(c.instance_id for c in batch)
        lines.append(f"batch {number}: {len(batch)} instance(s) {where(batch)}: {ids}")
    if not batches:
        lines.append("nothing to upgrade: every instance is on the target image or skipped")
    lines.append(estimate(request, len(batches)))
    return "\n".join(lines)


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
    health = request.health
    healthy_after = timedelta(
        seconds=max(health.effective_grace_period, health.interval_in_seconds * health.number_of_probes)
    )
    pauses = request.policy.pause_time_between_batches * (batches - 1)
    typical = (TYPICAL_REIMAGE + healthy_after) * batches + pauses
    longest = (TYPICAL_REIMAGE + health.health_wait_timeout) * batches + pauses
    return (
        f"estimate: {batches} batch(es), about {format_duration(typical)} if every instance is healthy "
        f"soon after a reimage of about {format_duration(TYPICAL_REIMAGE)}; up to "
        f"{format_duration(longest)} if instances take the whole healthWaitTimeout "
        f"({format_duration(health.health_wait_timeout)})"
    )
