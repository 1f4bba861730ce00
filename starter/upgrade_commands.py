"""`upgradectl start|plan|status|history|watch|cancel|pause|resume|approve`: one upgrade of a
scale set, its policy and its progress. Exit codes: starter/common.py (docs/usage.md: Exit codes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.table import Table
from temporalio.client import Client

from models.base import describe_validation_error
from models.change import Change, ExtensionRequest
from models.image import ImageReference
from models.status import UpgradeWaitKind
from models.upgrade import (
    ApproveRequest,
    CancelRequest,
    PauseRequest,
    Preflight,
    ResumeRequest,
    UpgradeReport,
    UpgradeRequest,
)
from starter import progress
from starter.common import (
    EXTENSION_NAME,
    UsageProblem,
    azure_settings,
    comma_list,
    console,
    errors,
    fail,
    os_user,
    parse_image,
    print_json,
    reason_of,
    run,
    say,
    scale_set_name,
    text_option,
    with_options,
)
from starter.policy_options import (
    CrossZone,
    MaxBatchCount,
    MaxBatchPercent,
    MaxSurge,
    MaxUnhealthyCount,
    MaxUnhealthyPercent,
    MaxUnhealthyUpgradedCount,
    PauseBetweenBatches,
    PrioritizeUnhealthy,
    Section,
    checked_policy,
    health_flags,
    policy_document,
    rolling_flags,
)
from starter.retries import retrying
from starter.terminal import clean, plain
from starter.upgrades import (
    EXIT_CODES,
    approve_upgrade,
    cancel_upgrade,
    describe_upgrade,
    pause_upgrade,
    preflight_change,
    read_report,
    report_change,
    reported_properties,
    resume_upgrade,
    running_build,
    start_rollback,
    start_upgrade,
    upgrade_handle,
)
from worker.connection import Settings, connect

# Commands of the top level (cli.py adds them without a group name).
upgrade_app = typer.Typer(rich_markup_mode=None)

# --- upgrades -----------------------------------------------------------------------------------

ScaleSetArgument = Annotated[str, typer.Argument(help="The scale set.")]
ImageOption = Annotated[
    str | None,
    typer.Option(
        help="An OS image upgrade: PUBLISHER:OFFER:SKU[:VERSION|latest] or a gallery image "
        "id[/versions/V]. Or --extensions."
    ),
]
ExtensionsOption = Annotated[
    bool,
    typer.Option(
        "--extensions",
        help="An extension upgrade instead of --image (Azure: Start Extension Upgrade): the "
        "extensions named after it (NAME, or NAME=VERSION for an exact version; separated by "
        "spaces or commas), or alone every extension of the model. Each moves to the newest "
        "version of its model's major version, never to a new major.",
    ),
]
ExtensionNames = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="NAME[=VERSION]",
        help="With --extensions: the extensions to upgrade (default: every extension of the model).",
        show_default=False,
    ),
]


EXTENSION_SYNTAX = "NAME or NAME=VERSION, separated by spaces or commas, such as agent logs=2.1.4"


def extension_requests(names: list[str] | None) -> list[ExtensionRequest]:
    """The extensions named after `--extensions` (none: every extension of the model).

    Each is NAME (to the newest version of its model's major version) or NAME=VERSION (that exact
    version); names are separated by spaces (separate arguments) or commas. Anything else is
    refused, one line naming --extensions."""
    asked: list[ExtensionRequest] = []
    for argument in names or []:
        parts = [part.strip() for part in argument.split(",")]
        if not any(parts):
            fail(
                f"--extensions: an empty name (got '{clean(argument)}'); give {EXTENSION_SYNTAX}, or "
                "--extensions alone for every extension of the model"
            )
        for part in filter(None, parts):
            name, pinned, version = part.partition("=")
            if not EXTENSION_NAME.fullmatch(name):
                fail(
                    f"--extensions: '{clean(name)}' is not an extension name (letters, digits, '.', "
                    f"'_', '-'; up to 64); give {EXTENSION_SYNTAX}"
                )
            try:
                request = ExtensionRequest(name=name, version=version if pinned else None)
            except ValidationError:
                fail(
                    f"--extensions: {name}={clean(version)}: VERSION must be an exact version of 2 "
                    "to 4 numbers, such as 1.3.0"
                )
            if any(a.name.lower() == name.lower() for a in asked):
                fail(f"--extensions: {name} is named twice")
            asked.append(request)
    return asked


def change_options(
    image: ImageOption = None, extensions: ExtensionsOption = False, names: ExtensionNames = None
) -> str | list[ExtensionRequest]:
    """An OS image upgrade (--image) or an extension upgrade (--extensions [NAME...]): exactly
    one. Giving both, neither, or names without --extensions is a usage error (exit 2); `start`
    and `plan` take these options as `with_options(change=change_options)`."""
    if image is not None and extensions:
        raise UsageProblem(
            "--image and --extensions: give one of them, not both (an upgrade changes either the OS "
            "image or extensions)"
        )
    if extensions:
        return extension_requests(names)
    if names:
        raise UsageProblem(
            f"unexpected argument '{clean(names[0])}': extension names are taken only after "
            "--extensions (--extensions NAME...)"
        )
    if image is None:
        raise UsageProblem(
            "Missing option '--image' (or '--extensions'): give --image IMAGE for an OS image "
            "upgrade, or --extensions [NAME...] for an extension upgrade"
        )
    return image


def build_request(
    scale_set: str,
    image: str | list[ExtensionRequest],
    policy_file: Path | None,
    flags: dict[str, Any],
    started_by: str,
    **extra: Any,
) -> UpgradeRequest:
    """The request from a policy file (Azure's upgradePolicy) overlaid with flags; a note on
    stderr for every field given that is read but not acted on. `image` is the OS image to move
    to, or the extensions to move (an extension upgrade; [] every extension of the model)."""
    document = policy_document(policy_file, flags)
    policy, given = checked_policy(document, policy_file)
    if isinstance(image, str):
        target: ImageReference | None = parse_image(image)
    else:
        target, extra = None, {**extra, "extensions": image}
    for note in policy.notes():
        say(f"note: {note}", "yellow")
    try:
        return UpgradeRequest.from_policy(
            scale_set, target, policy, started_by=started_by, policy_given=given, **extra
        )
    except ValidationError as err:
        problems = (
            describe_validation_error(err)
            .replace("scale_set:", "--scale-set:")
            .replace("scaleSet:", "--scale-set:")
            .replace("not_before_timeout:", "--not-before-timeout:")
            .replace("notBeforeTimeout:", "--not-before-timeout:")
        )
        fail("; ".join(problems.splitlines()))


@upgrade_app.command()
@run
@with_options(change=change_options, rolling_upgrade_policy=rolling_flags, application_health=health_flags)
async def start(
    scale_set: Annotated[str, typer.Option("--scale-set", help="The scale set to upgrade.")],
    change: str | list[ExtensionRequest],  # with_options: --image, or --extensions [NAME...]
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="JSON/YAML: Azure's upgradePolicy sections (rollingUpgradePolicy, "
            "automaticOSUpgradePolicy) and applicationHealth.",
        ),
    ] = None,
    rolling_upgrade_policy: Section = None,
    disable_automatic_rollback: Annotated[
        bool | None, typer.Option("--disable-automatic-rollback/--automatic-rollback")
    ] = None,
    application_health: Section = None,
    webhook: Annotated[
        list[str] | None,
        typer.Option(help="Notify this URL (repeat for more; default $UPGRADE_WEBHOOKS, comma-separated)."),
    ] = None,
    notify_per_batch: Annotated[
        bool | None,
        typer.Option("--notify-per-batch/--no-notify-per-batch", help="Also notify after every batch."),
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="The whole upgrade's time limit, ISO 8601, PT1M-P30D; none by default.")
    ] = None,
    deferral: Annotated[
        bool,
        typer.Option(
            "--deferral/--no-deferral",
            help="osRollingUpgradeDeferral: every batch waits until its instances are approved "
            "(`upgradectl approve`).",
        ),
    ] = False,
    not_before_timeout: Annotated[
        str | None,
        typer.Option(
            help="notBeforeTimeout, ISO 8601, PT5M-PT2H (Azure: PT15M): an instance pending "
            "approval is approved on its own after this long."
        ),
    ] = None,
    respect_maintenance_window: Annotated[
        bool,
        typer.Option(
            "--respect-maintenance-window",
            help="OS images: start batches only inside the maintenance window assigned to the set "
            "in Azure (an OSImage maintenance configuration); ignored by default.",
        ),
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show live progress until the end; exit 0 only if Completed.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="With --wait: one JSON status line per change instead of the live view."),
    ] = False,
    started_by: Annotated[str, typer.Option(help="Recorded as startedBy.")] = "User",
    task_queue: Annotated[str | None, typer.Option(envvar="UPGRADE_TASK_QUEUE")] = None,
) -> None:
    """Start a rolling upgrade of a scale set: to an OS image (--image), or of its extensions to
    newer versions (--extensions [NAME[=VERSION]...]; Azure: Start Extension Upgrade)."""
    request = build_request(
        scale_set,
        change,
        policy,
        {
            "rollingUpgradePolicy": rolling_upgrade_policy,
            "automaticOSUpgradePolicy": {"disableAutomaticRollback": disable_automatic_rollback},
            "applicationHealth": application_health,
            "upgradeTimeout": timeout,
            "notifications": {
                "webhooks": webhook or comma_list(os.environ.get("UPGRADE_WEBHOOKS")),
                "perBatch": notify_per_batch,
            },
        },
        started_by,
        deferral=deferral,
        not_before_timeout=not_before_timeout,
        respect_maintenance_window=respect_maintenance_window,
    )
    if (deferral or not_before_timeout) and not request.needs_approval:
        say(
            "note: --deferral and --not-before-timeout are OS image settings, not acted on: an "
            "extension upgrade asks no approval",
            "yellow",
        )

    def preflight(found: Preflight) -> None:
        say(
            f"preflight of {clean(found.scale_set)}: {preflight_change(found)}; {found.to_upgrade} of "
            f"{found.instance_count} instances to upgrade, {found.skipped} skipped, about "
            f"{found.planned_batches} batches"
        )

    client = await connect()
    _, admission = await start_upgrade(
        client, request, task_queue or Settings().task_queue, on_preflight=preflight
    )
    target = Change(image=admission.target_image, extensions=admission.extensions)
    say(
        f"started {clean(admission.workflow_id)} (run {admission.run_id}): {admission.to_upgrade} of "
        f"{admission.instance_count} instances to {clean(target, None)}, "
        f"{admission.skipped} skipped, about {admission.planned_batches} batches"
    )
    if request.target_image is not None and disable_automatic_rollback is None and policy is None:
        # Seed 000: "Manual trigger of OS image upgrades does not provide automatic rollback".
        say(
            "note: automatic rollback is on: an instance still unhealthy after its health wait is "
            "rolled back (Uniform: reimaged back to its previous version, its OS disk's contents "
            "lost; Flexible: its previous OS disk swapped back in). Azure's manual upgrade does not "
            "roll back; --disable-automatic-rollback to match it",
            "yellow",
        )
    if wait:
        finish(await progress.watch(client, scale_set, errors, as_json=as_json), printed=as_json)


@upgrade_app.command()
@run
@with_options(change=change_options)
async def plan(
    scale_set: Annotated[str, typer.Option("--scale-set", help="The scale set to plan an upgrade of.")],
    change: str | list[ExtensionRequest],  # with_options: --image, or --extensions [NAME...]
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="JSON/YAML: Azure's upgradePolicy sections and applicationHealth."),
    ] = None,
    max_batch_instance_percent: MaxBatchPercent = None,
    max_unhealthy_instance_percent: MaxUnhealthyPercent = None,
    pause_time_between_batches: PauseBetweenBatches = None,
    enable_cross_zone_upgrade: CrossZone = None,
    prioritize_unhealthy_instances: PrioritizeUnhealthy = None,
    max_surge: MaxSurge = None,
    max_batch_instance_count: MaxBatchCount = None,
    max_unhealthy_instance_count: MaxUnhealthyCount = None,
    max_unhealthy_upgraded_instance_count: MaxUnhealthyUpgradedCount = None,
) -> None:
    """Print the batches an upgrade would run now (zones, update domains, phases, skipped
    instances, an estimate): reads the scale set and the image or extension versions, changes
    nothing."""
    from fleet.azure.backend import AzureFleet
    from models.errors import RefusalCode
    from rules.quota import surge_room
    from rules.refusals import max_surge_refusal, rolled_by_azure
    from rules.surge import surges
    from starter.plan import (
        ExtensionsRefused,
        admitted,
        gate_before,
        plan_text,
        resolve_extensions,
        surge_line,
    )

    request = build_request(
        scale_set,
        change,
        policy,
        {
            "rollingUpgradePolicy": {
                "maxBatchInstancePercent": max_batch_instance_percent,
                "maxUnhealthyInstancePercent": max_unhealthy_instance_percent,
                "pauseTimeBetweenBatches": pause_time_between_batches,
                "enableCrossZoneUpgrade": enable_cross_zone_upgrade,
                "prioritizeUnhealthyInstances": prioritize_unhealthy_instances,
                "maxSurge": max_surge,
                "maxBatchInstanceCount": max_batch_instance_count,
                "maxUnhealthyInstanceCount": max_unhealthy_instance_count,
                "maxUnhealthyUpgradedInstanceCount": max_unhealthy_upgraded_instance_count,
            }
        },
        "User",
    )
    async with AzureFleet(azure_settings()) as fleet:
        view = await fleet.get_scale_set(request.scale_set)
        current, target = view.image_reference, request.target_image
        if target is None:
            try:
                planned = Change(extensions=await resolve_extensions(fleet, view, request.extensions or []))
            except ExtensionsRefused as err:
                fail(f"start would refuse it: {err.code}: {err.message}")
        elif target.definition != current.definition:
            # As the admission's resolve_image refuses it: a reimage keeps the instance's image.
            fail(
                f"start would refuse it: {RefusalCode.IMAGE_DEFINITION_CHANGED.value}: the image of "
                f"scale set '{clean(view.name)}' ({clean(current.with_version(''))}) cannot change to "
                f"{clean(target.with_version(''))}: an upgrade moves instances to "
                "another version of the same image (publisher:offer:sku or gallery image)"
            )
        else:
            planned = Change(image=await fleet.resolve_image(target, view.location))
        ledger = admitted(request, view, planned, datetime.now(UTC))
        lines = plan_text(ledger, view).splitlines()
        batches = ledger.plan()
        if surges(ledger.request.policy, ledger.change) and batches:
            largest = max(len(batch) for batch in batches)
            lines.append(surge_line(surge_room(await fleet.core_quota(view.name), largest), largest))
    for line in lines:
        console.print(plain(line, limit=None), soft_wrap=True)
    if refusal := rolled_by_azure(view) or max_surge_refusal(view, ledger.request.policy):
        fail(f"start would refuse it: {refusal.code}: {refusal.message}")
    if ledger.candidates() and (breach := gate_before(ledger)):
        fail(f"the upgrade would fault at once, touching nothing: {breach.code}: {breach.message}")


def finish(report: UpgradeReport, *, printed: bool = False) -> NoReturn:
    """Print the final status (unless the JSON lines already did) and exit by its outcome."""
    if not printed:
        print_json(report.status.to_json())
    raise typer.Exit(EXIT_CODES[reported_properties(report).running_status.code])


@upgrade_app.command()
@run
async def status(
    scale_set: ScaleSetArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Azure's RollingUpgradeStatusInfo.")] = False,
) -> None:
    """The latest upgrade of a scale set: running status, the change (an OS image, or extension
    versions, from → to), progress, rollback (how many, and what a rollback does on this scale
    set: Uniform reimages back to the previous version, Flexible swaps the previous OS disk back
    in), policy, error; while it runs, each step being retried after a failed attempt (a bug
    awaiting a fixed worker, the fleet out of reach), with its error."""
    client = await connect()
    report = await read_report(client, scale_set)
    if as_json:
        print_json(report.status.to_json())
        return
    properties = reported_properties(report)
    build = running_build(await describe_upgrade(upgrade_handle(client, scale_set), scale_set))
    table = Table(title=plain(f"rolling upgrade of {clean(scale_set)}"), show_header=False)
    table.add_row("status", properties.running_status.code.value)
    table.add_row("build", plain(build or "unversioned worker", limit=None))
    table.add_row("change", plain(report_change(report), limit=None))
    table.add_row("started", properties.running_status.start_time.isoformat())
    running = properties.running_status
    table.add_row("last action", f"{running.last_action.value} at {running.last_action_time.isoformat()}")
    counts = [f"{count} {word}" for word, count in properties.progress.labelled()]
    table.add_row(
        "progress",
        ", ".join([*counts, f"{report.skipped_instance_count} skipped"]) + f", batch {report.batches}",
    )
    for extension in properties.extensions or []:  # each extension on its own: which moved
        table.add_row("extension", plain(progress.extension_text(extension), limit=None))
    if properties.paused:
        table.add_row("paused", plain(progress.paused_text(properties.paused), limit=None))
    if properties.wait and properties.wait.kind != UpgradeWaitKind.PAUSED:
        table.add_row("waiting", plain(progress.wait_text(properties.wait), limit=None))
    for alarm in properties.alarms or []:  # alarm gates as last read
        table.add_row("alarm", plain(progress.alarm_text(alarm), limit=None))
    for passed in properties.checkpoints or []:
        table.add_row("checkpoint", plain(passed, limit=None))
    if properties.rollback_of:
        table.add_row("rollback of", plain(properties.rollback_of, limit=None))
    for retry in await retrying(client, scale_set):  # a failed attempt (a bug?) to be tried again
        table.add_row("retrying", plain(retry.text(), limit=None))
    if properties.error:
        table.add_row("error", plain(f"{properties.error.code}: {properties.error.message}", limit=None))
    rollback = properties.rollback_info or report.rollback_info
    if rollback.rollback_description:
        table.add_row(
            "rollback",
            f"{rollback.successfully_rolledback_instance_count} ok, "
            f"{rollback.failed_rolledback_instance_count} failed: {rollback.rollback_description}",
        )
    for record in report.notifications:
        outcome = "delivered" if record.delivered else f"NOT delivered: {record.error}"
        table.add_row(f"notification {record.event.value}", plain(f"{record.url}: {outcome}", limit=None))
    for name, value in report.request.effective_policy() if report.request else []:
        table.add_row(name, plain(value, limit=None))
    console.print(table)


@upgrade_app.command()
@run
async def history(
    scale_set: ScaleSetArgument,
    everything: Annotated[
        bool, typer.Option("--all", help="Everything retained, not the last five within two months.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Azure's osUpgradeHistory document.")] = False,
) -> None:
    """Past upgrades of a scale set, newest first (Azure: Get OS Upgrade History): the target
    image's version, or the extensions and versions an extension upgrade moved to."""
    from starter.history import history_target, upgrade_history

    client = await connect()
    entries = await upgrade_history(client, scale_set, everything=everything)
    if as_json:
        print_json({"value": [entry.to_json() for entry in entries]})
        return
    table = Table(
        title=plain(
            f"upgrades of {clean(scale_set)}" + ("" if everything else " (last five within two months)"),
            limit=None,
        )
    )
    for column in (
        "started",
        "ended",
        "status",
        "succeeded",
        "failed",
        "rolled back",
        "target",
        "started by",
        "error",
    ):
        table.add_column(column)
    for entry in entries:
        p = entry.properties
        table.add_row(
            p.running_status.start_time.strftime("%Y-%m-%d %H:%M:%S"),
            p.running_status.end_time.strftime("%H:%M:%S") if p.running_status.end_time else "-",
            p.running_status.code.value,
            str(p.progress.successful_instance_count),
            str(p.progress.failed_instance_count),
            f"{p.rollback_info.successfully_rolledback_instance_count} ok, "
            f"{p.rollback_info.failed_rolledback_instance_count} failed"
            + (f" ({p.rollback_info.rollback_method.value})" if p.rollback_info.rollback_method else ""),
            plain(history_target(entry), limit=None),
            plain(p.started_by),
            plain(p.error.code if p.error else ""),
        )
    console.print(table)


@upgrade_app.command()
@run
async def watch(
    scale_set: ScaleSetArgument,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON status line per change instead of the live view.")
    ] = False,
) -> None:
    """Follow the latest upgrade live; exit 0 Completed, 1 Faulted, 2 Cancelled."""
    client = await connect()
    finish(await progress.watch(client, scale_set, errors, as_json=as_json), printed=as_json)


# --- pause, resume, approve ---------------------------------------------------------------------

BY_LIMIT = 64
_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def instance_ids(text: str | None) -> list[str] | None:
    """--instances 0,3,7; None approves every instance."""
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",")]
    if not ids or not all(_INSTANCE_ID.fullmatch(i) for i in ids):
        fail(f"--instances: must be instance ids separated by commas, such as 0,3,7 (got '{clean(text)}')")
    return list(dict.fromkeys(ids))


ByOption = Annotated[
    str | None, typer.Option("--by", help="Who, as recorded in the upgrade (default: your OS user).")
]


def by_option(by: str | None, what: str) -> str:
    """--by, or the OS user when it is not given."""
    return text_option(by if by is not None else os_user(), "--by", BY_LIMIT, what=what)


async def ask(
    send: Callable[[Client, str, Any], Awaitable[None]],
    scale_set: str,
    request: CancelRequest | PauseRequest | ResumeRequest,
    action: str,
    then: str = "",
) -> None:
    """Send `request` to the running upgrade (`cancel_upgrade`, ...) and say so."""
    await send(await connect(), scale_set, request)
    say(f"{action} requested for the upgrade of {clean(scale_set)} by {clean(request.by)}{then}")


@upgrade_app.command()
@run
async def rollback(
    scale_set: ScaleSetArgument,
    by: ByOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show live progress until the end; exit 0 only if Completed.")
    ] = False,
    task_queue: Annotated[str | None, typer.Option(envvar="UPGRADE_TASK_QUEUE")] = None,
) -> None:
    """Return every instance the last upgrade moved (OS image or extensions) to the version it had
    before, batch by batch under that upgrade's policy and gates: an upgrade of its own in the
    history (startedBy you). Refused while an upgrade runs, when it moved nothing, or when the
    previous version no longer exists (naming it)."""
    client = await connect()
    who = by_option(by, "who rolls it back")
    _, admission = await start_rollback(client, scale_set, who, task_queue or Settings().task_queue)
    target = Change(image=admission.target_image, extensions=admission.extensions)
    say(
        f"started the rollback {clean(admission.workflow_id)} (run {admission.run_id}): "
        f"{admission.to_upgrade} instance(s) back to {clean(target, None)}, "
        f"about {admission.planned_batches} batches"
    )
    if wait:
        finish(await progress.watch(client, scale_set, errors))


@upgrade_app.command()
@run
async def cancel(
    scale_set: ScaleSetArgument,
    by: ByOption = None,
) -> None:
    """Cancel the running upgrade: no new batch starts, the batch in flight finishes. (An upgrade
    a rollout started: the rollout holds, naming who cancelled.)"""
    await ask(cancel_upgrade, scale_set, CancelRequest(by=by_option(by, "who cancels it")), "cancel")


@upgrade_app.command()
@run
async def pause(
    scale_set: ScaleSetArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why (shown in the status and the Web UI).")],
    by: ByOption = None,
) -> None:
    """Pause the running upgrade: the batch in flight finishes, no new batch starts until resumed."""
    name = scale_set_name(scale_set, "SCALE_SET")
    request = PauseRequest(
        reason=reason_of(reason, "say why the upgrade is paused"),
        by=by_option(by, "who pauses it"),
    )
    then = f": the batch in flight finishes, no new batch starts until `upgradectl resume {clean(name)}`"
    await ask(pause_upgrade, name, request, "pause", then)


@upgrade_app.command()
@run
async def resume(
    scale_set: ScaleSetArgument,
    by: ByOption = None,
) -> None:
    """Resume a paused upgrade."""
    name = scale_set_name(scale_set, "SCALE_SET")
    await ask(resume_upgrade, name, ResumeRequest(by=by_option(by, "who resumes it")), "resume")


@upgrade_app.command()
@run
async def approve(
    scale_set: ScaleSetArgument,
    instances: Annotated[
        str | None,
        typer.Option(
            "--instances",
            help="Comma-separated instance ids, such as 0,3,7; default: every instance pending "
            "approval now and any later.",
        ),
    ] = None,
    by: ByOption = None,
) -> None:
    """Approve instances of a deferred upgrade (Azure: ApproveRollingUpgrade)."""
    name = scale_set_name(scale_set, "SCALE_SET")
    request = ApproveRequest(
        instance_ids=instance_ids(instances),
        by=by_option(by, "who approves"),
    )
    client = await connect()
    report = await approve_upgrade(client, name, request)
    which = (
        "every instance pending approval now and later"
        if request.instance_ids is None
        else "instance(s) " + ", ".join(clean(i) for i in request.instance_ids)
    )
    say(f"approved {which} of the upgrade of {clean(name)} by {clean(request.by)}")
    if report is not None and report.request is not None and not report.request.needs_approval:
        say(
            "note: this upgrade does not wait for approval (started without --deferral or "
            "--not-before-timeout); the approval changes nothing",
            "yellow",
        )


def extensions_equals(args: list[str]) -> list[str]:
    """`start`/`plan --extensions=agent,logs` as `--extensions agent,logs`: the flag takes its
    names as arguments, and click would refuse a value given to a flag."""
    if not args or args[0] not in ("start", "plan"):
        return args
    end = args.index("--") if "--" in args else len(args)
    split: list[str] = []
    for arg in args[:end]:
        flag, equals, names = arg.partition("=")
        split += [flag, names] if equals and flag == "--extensions" else [arg]
    return split + args[end:]
