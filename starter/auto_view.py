"""How automatic upgrades look on a terminal: a rollout (its phases of regions, every scale set,
why it stopped, its hold, the failure a retry follows), the rollout list, an enrollment (with each
extension's automatic state and its maintenance window) and the watcher's settings.

Everything a user, the fleet or a workflow chose (names, images, messages, reasons) is printed
through `plain`/`clean` (starter/terminal.py): never markup, control characters made visible.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from models.automatic import (
    AutomaticSettings,
    Enrollment,
    ExtensionEnrollment,
    RolloutSetState,
    RolloutState,
    RolloutStatus,
    RolloutSummary,
)
from models.policy import RollingUpgradePolicy, format_duration
from models.upgrade import absolute_limits
from rules.maintenance_windows import next_window, occurrence_text
from starter.automatic import source_name
from starter.progress import clock
from starter.terminal import clean, plain

STATE_STYLES = {
    RolloutState.RUNNING: "yellow",
    RolloutState.HELD: "bold magenta",
    RolloutState.COMPLETED: "green",
    RolloutState.FAULTED: "bold red",
    RolloutState.CANCELLED: "magenta",
    RolloutState.SUPERSEDED: "blue",
}
SET_STYLES = {
    RolloutSetState.PENDING: "grey50",
    RolloutSetState.WAITING_FOR_REPLICATION: "cyan",
    RolloutSetState.WAITING_FOR_SCALE_SET: "cyan",
    RolloutSetState.RUNNING: "bold yellow",
    RolloutSetState.COMPLETED: "green",
    RolloutSetState.FAULTED: "bold red",
    RolloutSetState.CANCELLED: "magenta",
    RolloutSetState.SKIPPED: "blue",
}


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def flag(value: bool | None) -> str:
    return "true" if value else "false"


# --- rollouts -----------------------------------------------------------------------------------


def phase_state(status: RolloutStatus, number: int) -> str:
    """Phase `number`'s state (phases count from 1), from its scale sets' states."""
    states = {s.state for s in status.sets if s.phase == number}
    if not states:
        return "no scale sets"
    for state in (
        RolloutSetState.FAULTED,
        RolloutSetState.RUNNING,
        RolloutSetState.WAITING_FOR_SCALE_SET,
        RolloutSetState.WAITING_FOR_REPLICATION,
        RolloutSetState.CANCELLED,
    ):
        if state in states:
            return state.value
    if states == {RolloutSetState.SKIPPED}:
        return RolloutSetState.SKIPPED.value
    if states <= {RolloutSetState.COMPLETED, RolloutSetState.SKIPPED}:
        return RolloutSetState.COMPLETED.value
    return RolloutSetState.PENDING.value


def rollout_lines(status: RolloutStatus, now: datetime | None = None) -> list[Text]:
    """The rollout's headline and why it holds or stopped, one Text per line."""
    now = now or datetime.now(UTC)
    state = status.state
    title = Text.assemble(
        ("rollout of ", ""),
        (clean(status.subject), "bold"),  # short: contoso/shop-os 1.1.0, never the resource id
        ": ",
        (state.value, STATE_STYLES.get(state, "")),
    )
    if status.start_time:
        end = status.end_time or now
        title.append(f"  started {when(status.start_time)}, {clock(end - status.start_time)}")
    if status.phases and status.current_phase:
        title.append(f"  phase {status.current_phase} of {len(status.phases)}")
    lines = [title, plain(f"workflow {status.workflow_id}", "grey50", None)]
    if status.retry:
        lines.append(plain(status.retry.text(status.version), "yellow", None))
    if status.hold:
        lines.append(
            plain(
                f"held by {status.hold.by} since {when(status.hold.since)}: {status.hold.reason}",
                "magenta",
                None,
            )
        )
    if status.stopped_by:
        error = status.stopped_by
        where = f" ({error.target})" if error.target else ""
        lines.append(
            plain(f"stopped by {error.code or 'an error'}{where}: {error.message or ''}", "red", None)
        )
        for detail in error.details or []:
            lines.append(
                plain(f"  {detail.code or ''} {detail.target or ''}: {detail.message or ''}", "red", None)
            )
    if status.superseded_by:
        lines.append(plain(f"superseded by version {status.superseded_by}", "blue", None))
    if status.bake_until:
        lines.append(plain(f"baking: the next phase starts after {when(status.bake_until)}", "cyan", None))
    for region, wave in sorted(status.waves.items()):
        lines.append(plain(f"{region}: {wave}", "cyan", None))
    return lines


def phases_table(status: RolloutStatus) -> Table:
    table = Table(title="phases", title_justify="left")
    for column in ("phase", "regions", "scale sets", "state"):
        table.add_column(column)
    for number, regions in enumerate(status.phases, 1):
        members = [s.scale_set for s in status.sets if s.phase == number]
        state = phase_state(status, number)
        marker = " ◀" if number == status.current_phase and status.state == RolloutState.RUNNING else ""
        table.add_row(
            f"{number}{marker}",
            plain(", ".join(regions), limit=None),
            plain(", ".join(members) or "-", limit=None),
            Text(state, SET_STYLES.get(RolloutSetState(state), "") if state in _SET_VALUES else "grey50"),
        )
    return table


_SET_VALUES = {s.value for s in RolloutSetState}


def sets_table(status: RolloutStatus) -> Table:
    table = Table(title="scale sets", title_justify="left")
    for column in ("scale set", "region", "phase", "state", "started", "ended"):
        table.add_column(column)
    table.add_column("message", overflow="fold")
    table.add_column("upgrade")
    for item in sorted(status.sets, key=lambda s: (s.phase, s.region, s.scale_set)):
        table.add_row(
            plain(item.scale_set),
            plain(item.region),
            str(item.phase or "-"),
            Text(item.state.value, SET_STYLES.get(item.state, "")),
            when(item.start_time),
            when(item.end_time),
            plain(item.message or "", limit=300),
            plain(item.workflow_id or "-", limit=None),
        )
    return table


def render_rollout(status: RolloutStatus, now: datetime | None = None) -> RenderableType:
    return Panel(
        Group(*rollout_lines(status, now), phases_table(status), sets_table(status)),
        title="automatic extension upgrade" if status.extension else "automatic OS image upgrade",
        border_style="cyan",
    )


def rollouts_table(summaries: list[RolloutSummary]) -> Table:
    table = Table(title="rollouts (in flight and recently ended)", title_justify="left")
    for column in ("rollout", "state", "scale sets", "started", "ended", "message"):
        table.add_column(column)
    for s in summaries:
        table.add_row(
            plain(f"{source_name(s)} {s.version}" + (f" (retry {s.retry})" if s.retry else ""), limit=None),
            Text(s.state.value, STATE_STYLES.get(s.state, "")),
            plain(", ".join(s.scale_sets) or "-", limit=120),
            when(s.start_time),
            when(s.end_time),
            plain(s.message or "", limit=200),
        )
    return table


# --- enrollments and settings ---------------------------------------------------------------------


def rolling_summary(policy: RollingUpgradePolicy) -> str:
    return (
        f"maxBatchInstancePercent {policy.max_batch_instance_percent}, "
        f"maxUnhealthyInstancePercent {policy.max_unhealthy_instance_percent}, "
        f"maxUnhealthyUpgradedInstancePercent {policy.max_unhealthy_upgraded_instance_percent}, "
        f"pauseTimeBetweenBatches {format_duration(policy.pause_time_between_batches)}, "
        f"enableCrossZoneUpgrade {flag(policy.enable_cross_zone_upgrade)}, "
        f"prioritizeUnhealthyInstances {flag(policy.prioritize_unhealthy_instances)}"
        + "".join(f", {name} {value}" for name, value in absolute_limits(policy))
    )


def extension_row(extension: ExtensionEnrollment, retry_interval: timedelta) -> tuple[str, Text]:
    """One extension of an enrollment: its type and model version, and its automatic state."""
    state = extension.state_text(retry_interval)
    style = "red" if extension.failed_version else ("grey50" if extension.note else "")
    return (
        f"extension {clean(extension.name)}",
        plain(f"{extension.full_type} {extension.model_version}: {state}", style, None),
    )


def enrolled_text(enrollment: Enrollment) -> str:
    if enrollment.enrolled_extensions is None:
        return "those with enableAutomaticUpgrade (enrolled before extensions were enrolled one by one)"
    return ", ".join(enrollment.enrolled_extensions) or "none"


def window_rows(enrollment: Enrollment, now: datetime) -> list[tuple[str, Text]]:
    """The window the set's automatic upgrades keep to, where it comes from, and its next
    occurrence in the window's time zone and UTC (or the one open now)."""
    window = enrollment.effective_maintenance_window
    if window is None:
        return [("maintenance window", Text("no window: automatic upgrades start when a version is found"))]
    assigned = enrollment.assigned_maintenance_window is not None
    source = "the OSImage maintenance configuration assigned to it in Azure" if assigned else "enrolled"
    rows = [("maintenance window", plain(f"{window.text()} ({source})", limit=None))]
    enrolled = enrollment.maintenance_window
    if assigned and enrolled is not None and enrolled != window:
        rows.append(("not used", plain(f"the enrolled window, {enrolled.text()}", "yellow", None)))
    found = next_window(window, now)
    if found is None:
        rows.append(("next window", Text(f"none: the window expired at {window.expiration_date_time}")))
    else:
        label = "open now" if found[0] <= now else "next window"
        rows.append((label, plain(occurrence_text(window, found), limit=None)))
    return rows


def enrollment_rows(
    enrollment: Enrollment, retry_interval: timedelta = timedelta(days=3), now: datetime | None = None
) -> list[tuple[str, Text]]:
    automatic = enrollment.policy.automatic_os_upgrade_policy
    use_rolling = bool(automatic.use_rolling_upgrade_policy)
    rolling = enrollment.policy.rolling_upgrade_policy if use_rolling else RollingUpgradePolicy()
    health = enrollment.policy.application_health
    image = enrollment.image_reference
    rows = [
        ("enableAutomaticOSUpgrade", Text(flag(enrollment.os_upgrades))),
        ("enrolled extensions", plain(enrolled_text(enrollment), limit=None)),
        ("disableAutomaticRollback", Text(flag(automatic.disable_automatic_rollback))),
        ("useRollingUpgradePolicy", Text(flag(use_rolling))),
        (
            "rolling upgrade policy",
            Text(rolling_summary(rolling) + ("" if use_rolling else " (the defaults)")),
        ),
        ("osRollingUpgradeDeferral", Text(flag(automatic.os_rolling_upgrade_deferral))),
        (
            "notBeforeTimeout",
            Text(format_duration(enrollment.not_before_timeout) if enrollment.not_before_timeout else "none"),
        ),
        (
            "health",
            plain(
                f"{health.protocol} :{health.port}{health.request_path or ''}, every "
                f"{health.interval_in_seconds} s, healthWaitTimeout "
                + format_duration(health.health_wait_timeout),
                limit=None,
            ),
        ),
        ("region", plain(enrollment.location or "not read yet")),
        ("image reference", plain(image if image else "not read yet", limit=None)),
        ("follows latest", Text(flag(enrollment.follows_latest) if image else "-")),
        ("note", plain(enrollment.note or "-", "yellow" if enrollment.note else "", None)),
        ("applied version", plain(enrollment.applied_version or "-")),
        (
            "failed version",
            plain(enrollment.failed_version or "-", "red" if enrollment.failed_version else ""),
        ),
        ("enrolled", plain(f"by {enrollment.enrolled_by} at {when(enrollment.enrolled_at)}", limit=None)),
        *window_rows(enrollment, now or datetime.now(UTC)),
    ]
    for extension in sorted(enrollment.extensions.values(), key=lambda e: e.name.lower()):
        rows.append(extension_row(extension, retry_interval))
    if not enrollment.extensions:
        rows.append(("extensions", Text("none in the model" if image else "not read yet")))
    return rows


def enrollment_table(enrollment: Enrollment, retry_interval: timedelta = timedelta(days=3)) -> Table:
    table = Table(title=plain(f"automatic upgrades of {clean(enrollment.scale_set)}"), show_header=False)
    for name, value in enrollment_rows(enrollment, retry_interval):
        table.add_row(name, value)
    return table


STAGED = "one canary region (the fewest enrolled instances), then up to 2, 4, ... regions; geo-pairs apart"


def phases_text(phases: list[list[str]] | None) -> str:
    if not phases:
        return f"staged: {STAGED}"
    return "; ".join(f"{n}: {', '.join(regions)}" for n, regions in enumerate(phases, 1)) + (
        " (regions not named follow in staged phases)"
    )


def settings_table(settings: AutomaticSettings, *, running: bool = True) -> Table:
    title = "watcher settings" + (
        "" if running else " (the watcher is not running: `auto enable` or `auto settings` starts it)"
    )
    table = Table(title=title, show_header=False)
    table.add_row("pollInterval", format_duration(settings.poll_interval))
    table.add_row("replicationPollInterval", format_duration(settings.replication_poll_interval))
    table.add_row("extensionRetryInterval", format_duration(settings.extension_retry_interval))
    table.add_row("phases", plain(phases_text(settings.phases), limit=None))
    table.add_row("maxSetsPerRegion", f"{settings.max_sets_per_region} scale sets of a region at once")
    table.add_row(
        "maxInstancesPerRegion",
        f"{settings.max_instances_per_region} instances of a region in flight at once",
    )
    bake = settings.phase_bake_time
    table.add_row(
        "phaseBakeTime", format_duration(bake) + ("" if bake else " (the next phase starts at once)")
    )
    table.add_row("replicationTimeout", format_duration(settings.replication_timeout))
    pairs = settings.geo_pairs
    table.add_row(
        "geo-pairs",
        plain(
            "Azure's published pairs" if pairs is None else ", ".join(f"{a}/{b}" for a, b in pairs),
            limit=None,
        ),
    )
    return table
