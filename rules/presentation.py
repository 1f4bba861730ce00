"""What the Temporal Web UI shows of an upgrade: summaries, details and live current details.

Pure text from the ledger and the request, so the workflows can compute it deterministically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Protocol

from models.change import Change
from models.markdown import table
from models.status import UpgradeWait, UpgradeWaitKind
from models.upgrade import InstanceProgress, InstanceState, UpgradeRequest
from rules import reporting
from rules.change_kinds import kind_of
from rules.ledger import UpgradeLedger


def from_images(ledger: UpgradeLedger) -> dict[str, int]:
    """The images (or extension versions) the instances to upgrade are on now, most common first."""
    return sources_of(ledger.instances.values())


def sources_of(instances: Iterable[InstanceProgress]) -> dict[str, int]:
    counts = Counter(p.from_image for p in instances if p.state != InstanceState.SKIPPED)
    return dict(counts.most_common())


def upgrade_summary(ledger: UpgradeLedger) -> str:
    """One line: the scale set, from what to what (an image's version, or extension versions)."""
    change = kind_of(ledger.change).summary(list(from_images(ledger)))
    return f"{ledger.request.scale_set}: {change} · {len(ledger.instances)} instances"


def describe_change(change: Change, sources: Mapping[str, int]) -> str:
    """The change an admitted upgrade carries, from what to what, as one line: `OS image
    Contoso:web-os:2024:2024.11.01 → 2024.12.01`, or `extension agent 1.2.0 → 1.3.0, logs 2.0.1
    → 2.0.3`. `sources` are what the instances to upgrade have now (their `from_image`, most
    common first); extension versions that differ between instances are listed with `/`."""
    return kind_of(change).describe(sources)


def change_text(ledger: UpgradeLedger) -> str:
    """The upgrade's change from → to (as asked, until admission resolves it)."""
    change = ledger.change
    if not ledger.instances or (change.image is None and not change.extensions):
        return ledger.request.change_asked  # not admitted (yet)
    return describe_change(change, from_images(ledger))


def change_details(text: str) -> str:
    """The change as a line of the Web UI's details."""
    return f"**Change**: {escaped(text)}"


def policy_details(request: UpgradeRequest) -> str:
    """The effective policy, as a table."""
    return "**Effective policy**\n\n" + table(("setting", "value"), request.effective_policy())


def _domains(instances: Iterable[InstanceProgress]) -> str:
    zones = sorted({p.zone or "-" for p in instances})
    domains = sorted({p.update_domain for p in instances})
    zone_text = "zone " + ", ".join(zones) if zones != ["-"] else "no zone"
    return f"{zone_text}, update domain {', '.join(map(str, domains))}"


def batch_summary(ledger: UpgradeLedger, number: int, instance_ids: list[str]) -> str:
    planned = ledger.batches + len(ledger.plan())
    members = [ledger.instances[i] for i in instance_ids]
    return f"batch {number} of {planned}: {len(members)} instance(s), {_domains(members)}"


def restore_summary(instance_ids: list[str]) -> str:
    return f"rollback after the policy breach: {len(instance_ids)} instance(s)"


class Build(Protocol):
    """A worker deployment version (temporalio's WorkerDeploymentVersion): what the rules read of
    it, so they need not import the SDK."""

    @property
    def deployment_name(self) -> str: ...

    @property
    def build_id(self) -> str: ...


def current_details(ledger: UpgradeLedger, build: Build | None = None) -> str:
    """The live view: status, counts, the batch in flight, the error if any, and the build it
    runs on (pinned: the one that started it; None on an unversioned worker)."""
    progress = reporting.progress(ledger)
    skipped = len(ledger.in_state(InstanceState.SKIPPED))
    planned = ledger.batches + len(ledger.plan())
    lines = [
        f"**{ledger.code.value}** · batch {ledger.batches} of {planned} · "
        f"started {ledger.start_time.isoformat(timespec='seconds')}",
        "",
        change_details(change_text(ledger)),
        "",
        table(
            ("instances", "count"),
            [
                *progress.labelled(),
                ("skipped", skipped),
            ],
        ),
    ]
    if source := ledger.request.health_source:
        lines += ["", f"Health read from {source.described}."]
    in_flight = ledger.in_state(InstanceState.IN_PROGRESS)
    if in_flight:
        ids = ", ".join(p.instance_id for p in in_flight)
        lines += ["", f"Current batch {ledger.batches}: {ids} ({_domains(in_flight)})"]
    if ledger.last_action.value == "Cancel":
        lines += ["", "Cancel requested: no new batch starts."]
    if paused := ledger.paused:
        lines += [
            "",
            pause_details(
                ledger, paused, holding=ledger.wait is not None and ledger.wait.kind == UpgradeWaitKind.PAUSED
            ),
        ]
    if (wait := ledger.wait) and wait.kind != UpgradeWaitKind.PAUSED:
        until = f" (until {wait.until.isoformat(timespec='seconds')} at the most)" if wait.until else ""
        lines += ["", f"Since {wait.since.isoformat(timespec='seconds')}, {escaped(wait.reason)}{until}."]
    if ledger.alarms:
        lines += ["", table(("alarm", "state", "value"), alarm_rows(ledger))]
    if ledger.checkpoint_log:
        lines += ["", *(f"- {escaped(line)}" for line in ledger.checkpoint_log)]
    if ledger.request.rollback_of:
        lines += ["", f"A rollback of {escaped(ledger.request.rollback_of)}."]
    if error := reporting.error(ledger):
        lines += ["", f"`{error.code}`: {error.message}"]
    if build is not None:
        lines += ["", running_on(build)]
    return "\n".join(lines)


def alarm_rows(ledger: UpgradeLedger) -> list[tuple[str, str, str]]:
    """Each alarm gate as last read: name, state (and when), value or why it could not be read."""
    return [
        (
            escaped(r.name),
            r.state.value + (f" at {r.read_at.isoformat(timespec='seconds')}" if r.read_at else ""),
            escaped(r.value or r.detail or ""),
        )
        for r in ledger.alarms.values()
    ]


def running_on(build: Build) -> str:
    return (
        f"Runs on build {escaped(build.build_id)} of worker deployment {escaped(build.deployment_name)}, "
        "pinned: it ends on the code that started it."
    )


_MARKDOWN = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>#|"})


def workflow_link(namespace: str, workflow_id: str) -> str:
    """The Web UI's path to a workflow (its id's slashes encoded)."""
    return f"/namespaces/{namespace}/workflows/{workflow_id.replace('/', '%2F')}"


def escaped(text: str) -> str:
    """User text (a pause's reason, a name) shown as it is, never as markdown."""
    return text.translate(_MARKDOWN)


def pause_details(ledger: UpgradeLedger, paused: UpgradeWait, *, holding: bool) -> str:
    """Who paused the upgrade, why and since when, and what happens meanwhile."""
    since = paused.since.isoformat(timespec="seconds")
    text = f"**Paused** since {since}: {escaped(paused.reason)}. "
    text += (
        "No new batch starts until it is resumed"
        if holding
        else "The batch in flight finishes; no new batch starts until it is resumed"
    )
    text += f" (`upgradectl resume {ledger.request.scale_set}`)."
    if ledger.deadline is not None:
        text += (
            f" The upgrade timeout still runs: it ends at {ledger.deadline.isoformat(timespec='seconds')} "
            "if it is not resumed and finished by then."
        )
    return text
