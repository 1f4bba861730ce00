"""What the Temporal Web UI shows of an upgrade: summaries, details and live current details.

Pure text from the ledger and the request, so the workflows can compute it deterministically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from models.markdown import table
from models.status import UpgradeWait, UpgradeWaitKind
from models.upgrade import InstanceProgress, InstanceState, UpgradeRequest
from workflows import reporting
from workflows.ledger import UpgradeLedger


def from_images(ledger: UpgradeLedger) -> dict[str, int]:
    """The images the instances to upgrade are on now, most common first."""
    counts = Counter(p.from_image for p in ledger.instances.values() if p.state != InstanceState.SKIPPED)
    return dict(counts.most_common())


def upgrade_summary(ledger: UpgradeLedger) -> str:
    """One line: the scale set, from what to what (an image's version, or extension versions)."""
    sources = list(from_images(ledger))
    change = ledger.change
    image = change.image
    if image is not None:
        target = image.resolved_version
        same_image = str(image)[: -len(target)]  # only the version, when the image is the same
    else:
        target = ", ".join(str(t) for t in change.extensions)
        same_image = ""
    source = "nothing to upgrade"
    if sources:
        source = sources[0].removeprefix(same_image)
        source += f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""
    kind = "" if image is not None else "extension "
    count = len(ledger.instances)
    return f"{ledger.request.scale_set}: {kind}{source} → {target} · {count} instances"


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


def current_details(ledger: UpgradeLedger) -> str:
    """The live view: status, counts, the batch in flight, the error if any."""
    progress = reporting.progress(ledger)
    skipped = len(ledger.in_state(InstanceState.SKIPPED))
    planned = ledger.batches + len(ledger.plan())
    lines = [
        f"**{ledger.code.value}** · batch {ledger.batches} of {planned} · "
        f"started {ledger.start_time.isoformat(timespec='seconds')}",
        "",
        table(
            ("instances", "count"),
            [
                *progress.labelled(),
                ("skipped", skipped),
            ],
        ),
    ]
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
    if error := reporting.error(ledger):
        lines += ["", f"`{error.code}`: {error.message}"]
    return "\n".join(lines)


_MARKDOWN = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>#|"})


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
