"""The live view of an upgrade: counts, a bar, every instance by zone, and the error if any."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from models.sorting import natural_key
from models.status import RollingUpgradeStatusCode, RollingUpgradeStatusInfo
from models.upgrade import InstanceProgress, InstanceState, UpgradeReport
from starter.upgrades import final_report, get_instances, get_status, upgrade_handle

STATE_STYLES = {
    InstanceState.PENDING: "grey50",
    InstanceState.IN_PROGRESS: "bold yellow",
    InstanceState.SUCCEEDED: "green",
    InstanceState.ROLLED_BACK: "magenta",
    InstanceState.FAILED: "bold red",
    InstanceState.SKIPPED: "blue",
    InstanceState.NOT_STARTED: "grey50",
}
CODE_STYLES = {
    RollingUpgradeStatusCode.ROLLING_FORWARD: "yellow",
    RollingUpgradeStatusCode.COMPLETED: "green",
    RollingUpgradeStatusCode.FAULTED: "red",
    RollingUpgradeStatusCode.CANCELLED: "magenta",
}


def _elapsed(since: datetime) -> str:
    seconds = int((datetime.now(timezone.utc) - since).total_seconds())
    return f"{seconds // 60}m{seconds % 60:02d}s"


def render(status: RollingUpgradeStatusInfo, instances: list[InstanceProgress]) -> RenderableType:
    properties = status.properties
    progress = properties.progress
    code = properties.running_status.code
    done = progress.successful_instance_count + progress.failed_instance_count
    batches = [i.batch for i in instances if i.batch]
    title = Text.assemble(
        (f"{status.name} ", "bold"),
        (code.value, CODE_STYLES[code]),
        f"  batch {max(batches) if batches else 0}",
        f"  elapsed {_elapsed(properties.running_status.start_time)}",
    )
    if properties.running_status.last_action.value == "Cancel" and code == RollingUpgradeStatusCode.ROLLING_FORWARD:
        title.append("  (cancelling: the batch in flight finishes)", "magenta")

    counts = Table.grid(padding=(0, 2))
    counts.add_row(
        Text(f"succeeded {progress.successful_instance_count}", "green"),
        Text(f"failed {progress.failed_instance_count}", "red"),
        Text(f"in progress {progress.in_progress_instance_count}", "yellow"),
        Text(f"pending {progress.pending_instance_count}", "grey50"),
        Text(f"skipped {sum(i.state == InstanceState.SKIPPED for i in instances)}", "blue"),
    )
    bar = Table.grid()
    bar.add_row(ProgressBar(total=max(progress.total, 1), completed=done, width=50), f" {done}/{progress.total}")

    zones: dict[str, list[InstanceProgress]] = {}
    for instance in sorted(instances, key=lambda i: natural_key(i.instance_id)):
        zones.setdefault(instance.zone or "-", []).append(instance)
    grid = Table.grid(padding=(0, 1))
    for zone, members in sorted(zones.items()):
        chips = Text()
        for instance in members:
            chips.append(f" {instance.instance_id} ", STATE_STYLES[instance.state] + " reverse")
            chips.append(" ")
        grid.add_row(Text(f"zone {zone}", "bold"), chips)

    parts: list[RenderableType] = [title, counts, bar, grid]
    if error := properties.error:
        parts.append(Text(f"{error.code}: {error.message}", "red" if code == RollingUpgradeStatusCode.FAULTED else "yellow"))
    legend = Text("  ".join(f"[{s.value}]" for s in STATE_STYLES), "grey50")
    for state, style in STATE_STYLES.items():
        legend.highlight_words([f"[{state.value}]"], style)
    parts.append(legend)
    return Panel(Group(*parts), title="rolling upgrade", border_style="cyan")


async def watch(
    client: Client,
    scale_set: str,
    console: Console,
    *,
    interval: float = 0.5,
    on_change: Callable[[RollingUpgradeStatusInfo], None] | None = None,
) -> UpgradeReport:
    """Show the upgrade live until it ends; returns its final report."""
    handle = upgrade_handle(client, scale_set)
    last = None
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            description = await handle.describe()
            try:
                status = await get_status(client, scale_set)
                instances = await get_instances(client, scale_set)
            except RPCError:
                status = None  # a query can fail while a worker restarts; try again
            if status is not None:
                live.update(render(status, instances))
                if on_change and status.to_json() != last:
                    last = status.to_json()
                    on_change(status)
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(interval)
    console.line()
    return await final_report(handle)
