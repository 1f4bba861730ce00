"""Following an upgrade: the live view (a bar per state, the batch in flight, elapsed and ETA,
every instance by zone) or, with --json, one JSON line per change of the status."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from models.alarms import AlarmReading, AlarmState
from models.sorting import natural_key
from models.status import ExtensionUpgradeStatus, RollingUpgradeStatusCode, UpgradeWait, UpgradeWaitKind
from models.upgrade import PLAN_QUERY, REPORT_QUERY, InstanceProgress, InstanceState, UpgradeReport
from starter.terminal import clean, plain
from starter.upgrades import (
    QUERY_TIMEOUT,
    UpgradeFailed,
    await_admission,
    describe_upgrade,
    final_report,
    report_change,
    upgrade_handle,
)

T = TypeVar("T")
STATE_STYLES = {
    InstanceState.PENDING: "grey50",
    InstanceState.PENDING_APPROVAL: "bold cyan",
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


def clock(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}h" if hours else "") + f"{rest // 60}m{rest % 60:02d}s"


def eta(report: UpgradeReport, batches_left: int) -> timedelta | None:
    """The average batch so far, times the batches still planned, plus the pauses between."""
    spans: dict[int, list[datetime]] = {}
    for instance in report.instances:
        if instance.batch and instance.start_time and instance.end_time:
            spans.setdefault(instance.batch, []).extend([instance.start_time, instance.end_time])
    if not spans or not batches_left:
        return None
    average = sum((max(t) - min(t) for t in spans.values()), timedelta()) / len(spans)
    pause = report.request.policy.pause_time_between_batches if report.request else timedelta()
    return (average + pause) * batches_left


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def paused_text(paused: UpgradeWait) -> str:
    """Who paused the upgrade, why and since when (and when its timeout ends it)."""
    text = f"{paused.reason} (since {_at(paused.since)})"
    if paused.until is not None:
        text += f"; the upgrade timeout still ends it at {_at(paused.until)}"
    return text


def wait_text(wait: UpgradeWait) -> str:
    """What holds the next batch back: approval, a health recovery."""
    text = f"{wait.reason} (since {_at(wait.since)}"
    return text + (f", until {_at(wait.until)} at the most)" if wait.until else ")")


def alarm_text(reading: AlarmReading) -> str:
    """An alarm gate as last read: `errors Ok: 0.01 (read 12:00:05)`, or why it could not be."""
    said = reading.value if reading.state != AlarmState.UNREACHABLE else reading.detail
    text = f"{reading.name} {reading.state.value}" + (f": {said}" if said else "")
    return text + (f" (read {_at(reading.read_at)})" if reading.read_at else "")


def extension_text(extension: ExtensionUpgradeStatus) -> str:
    """One extension of an extension upgrade, each on its own: `agent → 1.3.0 Faulted: 0
    succeeded, 2 failed, 0 in progress, 8 pending` (its error is in the upgrade's)."""
    counts = ", ".join(f"{count} {word}" for word, count in extension.progress.labelled())
    return f"{extension.name} → {extension.version} {extension.code.value}: {counts}"


def render(report: UpgradeReport, batches_left: int, now: datetime | None = None) -> RenderableType:
    now = now or datetime.now(UTC)
    status = report.status
    properties = status.properties
    if properties is None:  # the workflows always report them; Azure's minimal status has none
        return Panel(
            Text(clean(status.name or "") + " (no status yet)"), title="rolling upgrade", border_style="cyan"
        )
    progress = properties.progress
    code = properties.running_status.code
    running = code == RollingUpgradeStatusCode.ROLLING_FORWARD
    title = Text.assemble((clean(status.name) + " ", "bold"), (code.value, CODE_STYLES[code]))
    title.append(f"  batch {report.batches} of {report.batches + batches_left}")
    title.append(f"  elapsed {clock(now - properties.running_status.start_time)}")
    if running and (left := eta(report, batches_left)) is not None:
        title.append(f"  ETA ~{clock(left)}")
    if running and properties.running_status.last_action.value == "Cancel":
        title.append("  (cancelling: the batch in flight finishes)", "magenta")

    total = max(progress.total, 1)
    bars = Table.grid(padding=(0, 1))
    for (label, count), style in zip(progress.labelled(), ("green", "red", "yellow", "grey50")):
        bar = ProgressBar(total=total, completed=count, width=40, complete_style=style, finished_style=style)
        bars.add_row(Text(label, style), bar, Text(str(count), style))

    in_flight = [i for i in report.instances if i.state == InstanceState.IN_PROGRESS]
    # Which change it carries: `OS image …:2024.11.01 → 2024.12.01`, `extension agent 1.2.0 → 1.3.0`.
    parts: list[RenderableType] = [title, plain(report_change(report), "bold", None), bars]
    if in_flight:
        parts.append(
            Text(
                f"batch {report.batches} in flight: " + ", ".join(clean(i.instance_id) for i in in_flight),
                "yellow",
            )
        )
    if running and (paused := properties.paused):
        parts.append(plain(f"paused: {paused_text(paused)}", "bold magenta", None))
    if running and (waiting := properties.wait) and waiting.kind != UpgradeWaitKind.PAUSED:
        parts.append(plain(f"waiting: {wait_text(waiting)}", "cyan", None))
    parts.extend(plain(f"extension {extension_text(e)}", "", None) for e in properties.extensions or [])
    parts.extend(
        plain(f"alarm {alarm_text(a)}", "red" if a.state == AlarmState.FIRING else "", None)
        for a in properties.alarms or []
    )
    parts.append(_by_zone(report.instances))
    if error := properties.error:
        parts.append(
            plain(
                f"{error.code}: {error.message}",
                "red" if code == RollingUpgradeStatusCode.FAULTED else "yellow",
                None,
            )
        )
    legend = Text("  ".join(f"[{s.value}]" for s in STATE_STYLES), "grey50")
    for state, style in STATE_STYLES.items():
        legend.highlight_words([f"[{state.value}]"], style)
    parts.append(legend)
    return Panel(Group(*parts), title="rolling upgrade", border_style="cyan")


def _by_zone(instances: list[InstanceProgress]) -> Table:
    zones: dict[str, list[InstanceProgress]] = {}
    for instance in sorted(instances, key=lambda i: natural_key(i.instance_id)):
        zones.setdefault(instance.zone or "-", []).append(instance)
    grid = Table.grid(padding=(0, 1))
    for zone, members in sorted(zones.items()):
        chips = Text()
        for instance in members:
            # maxSurge: "0→5", the old instance and the new one that replaced it.
            name = clean(instance.instance_id)
            if instance.replaces:
                name = f"{clean(instance.replaces)}→{name}"
            chips.append(f" {name} ", STATE_STYLES[instance.state] + " reverse")
            chips.append(" ")
        grid.add_row(Text(f"zone {clean(zone)}", "bold"), chips)
    return grid


RECONNECT_LIMIT = 600.0  # seconds without Temporal before `watch` gives up
PATIENCE = 3.0  # seconds a describe may take before `watch` says the connection is lost


async def watch(
    client: Client,
    scale_set: str,
    console: Console,
    *,
    as_json: bool = False,
    interval: float = 0.5,
    reconnect_limit: float = RECONNECT_LIMIT,
) -> UpgradeReport:
    """Follow the latest upgrade until it ends; returns its final report.

    Waits (bounded) for a just-started upgrade's admission first, so the first status counts
    every instance. Rides out a Temporal restart: says so on `console` and carries on once
    Temporal answers again (giving up after `reconnect_limit` seconds).
    """
    handle = upgrade_handle(client, scale_set)
    description = await describe_upgrade(handle, scale_set)
    if description.status == WorkflowExecutionStatus.RUNNING:
        await await_admission(handle)
    link = _Link(console, reconnect_limit)
    last = None
    with Live(console=console, refresh_per_second=4, transient=False) if not as_json else _Quiet() as live:
        link.live = live
        while True:
            description = await link.answer(lambda: handle.describe(rpc_timeout=QUERY_TIMEOUT))
            try:
                report = await handle.query(
                    REPORT_QUERY, result_type=UpgradeReport, rpc_timeout=QUERY_TIMEOUT
                )
                batches_left = len(
                    await handle.query(PLAN_QUERY, result_type=list[list[str]], rpc_timeout=QUERY_TIMEOUT)
                )
            except RPCError:
                report = None  # a query can fail while a worker (or Temporal) restarts; try again
            if report is not None:
                if as_json:
                    document = report.status.to_json()
                    if document != last:
                        last = document
                        sys.stdout.write(json.dumps(document) + "\n")
                        sys.stdout.flush()
                else:
                    live.update(render(report, batches_left))
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(interval)
    link.live = None
    if not as_json:
        console.line()
    return await link.answer(lambda: final_report(handle))


class _Link:
    """The connection to Temporal as `watch` sees it: a call that fails, or gets no answer
    within PATIENCE seconds, means it is lost; that is said once, and again when it is back."""

    def __init__(self, console: Console, limit: float) -> None:
        self.console = console
        self.limit = limit
        self.since: float | None = None
        self.live: object = None

    async def answer(self, call: Callable[[], Awaitable[T]]) -> T:
        while True:
            task = asyncio.ensure_future(call())
            try:
                done, _ = await asyncio.wait({task}, timeout=PATIENCE)
                while not done:
                    self._lost("no answer")
                    done, _ = await asyncio.wait({task}, timeout=PATIENCE)
                result = task.result()
            except RPCError as err:
                self._lost(err.message)
                await asyncio.sleep(1.0)
                continue
            finally:
                if not task.done():
                    task.cancel()
            if self.since is not None:
                self.since = None
                self._say(Text("reconnected to Temporal", "green"))
            return result

    def _lost(self, reason: str) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self._say(Text(f"lost the connection to Temporal; reconnecting… ({clean(reason)})", "yellow"))
        elif now - self.since > self.limit:
            raise UpgradeFailed(f"lost the connection to Temporal for {self.limit:.0f} s ({clean(reason)})")

    def _say(self, text: Text) -> None:
        live = self.live
        (live.console if isinstance(live, Live) else self.console).print(text, soft_wrap=True)


class _Quiet:
    """Stands in for rich's Live when only JSON lines are written."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, renderable: RenderableType) -> None:
        return None
