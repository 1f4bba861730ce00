"""`upgradectl auto` and `upgradectl rollout`: automatic OS image and extension upgrades.

`auto enable|disable|show|settings` opt scale sets in and out and set how the watcher looks for new
image and extension versions; `rollout list|show|hold|resume|cancel` follow and steer the rollouts
it starts; `rollout plan` prints the phases and zone waves a new version would get now.
Exit codes are `upgradectl`'s (starter/common.py, docs/usage.md: Exit codes): 0 done, 2 a usage error,
3 an invalid option value or a refusal of the watcher (its Azure-style code and message),
4 Temporal or a worker not answering, 5 a scale set that is not enrolled or a version with no
(running) rollout.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import TypeAdapter, ValidationError
from rich.text import Text
from temporalio.client import Client

from models.automatic import (
    AutomaticSettings,
    Enrollment,
    EnrollRequest,
    HoldRequest,
    WithdrawRequest,
)
from models.maintenance import MaintenanceWindow
from models.policy import RollingUpgradePolicy, UpgradePolicy, format_duration, iso_duration
from models.rollback import RollbackState, rollout_rollback_id
from starter.common import (
    EXTENSION_NAME,
    azure_settings,
    console,
    fail,
    os_user,
    print_json,
    reason_of,
    run,
    say,
    scale_set_name,
    with_options,
)
from starter.maintenance_options import window_flags
from starter.policy_options import Section, checked_policy, health_flags, policy_document, rolling_flags
from starter.terminal import PATH_LIMIT, clean, plain

auto_app = typer.Typer(
    help="Automatic OS image and extension upgrades: opt scale sets in or out, and set how new "
    "versions are found.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
rollout_app = typer.Typer(
    help="Rollouts of a new image or extension version across the enrolled scale sets: plan, follow, "
    "hold, resume, cancel.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

# Bounds of the watcher's durations (models/automatic.py checks them again).
POLL = (timedelta(minutes=1), timedelta(days=1))
REPLICATION_POLL = (timedelta(minutes=1), timedelta(hours=6))
NOT_BEFORE = (timedelta(minutes=5), timedelta(hours=2))
EXTENSION_RETRY = (timedelta(hours=1), timedelta(days=30))
PHASE_BAKE = (timedelta(0), timedelta(days=7))
REPLICATION_TIMEOUT = (timedelta(hours=1), timedelta(days=30))
SETS_PER_REGION = (1, 100)
INSTANCES_PER_REGION = (1, 100_000)
REGION = re.compile(r"^[a-z][a-z0-9]{1,39}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")
NAME_LIMIT = 1000  # characters of an image's name (a gallery image's resource id runs long)


async def connect_and_queue() -> tuple[Client, str]:
    from worker.connection import Settings, connect

    return await connect(), Settings().task_queue


# --- option values ------------------------------------------------------------------------------


def duration(text: str | None, option: str, bounds: tuple[timedelta, timedelta]) -> timedelta | None:
    """An ISO 8601 duration within bounds; anything else exits 3 naming the option and range."""
    if text is None:
        return None
    try:
        value: timedelta = TypeAdapter(Annotated[timedelta, iso_duration(*bounds)]).validate_python(text)
    except ValidationError as err:
        message = err.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
        message = message.replace("such as PT30S or PT5M", f"such as {format_duration(bounds[0])}")
        fail(f"{option}: {clean(message, 200)}")
    return value


def whole_number(value: int | None, option: str, bounds: tuple[int, int]) -> int | None:
    """A whole number within bounds; anything else exits 3 naming the option and range."""
    if value is not None and not bounds[0] <= value <= bounds[1]:
        fail(f"{option}: must be a whole number from {bounds[0]} to {bounds[1]} (got {value})")
    return value


def regions_of(text: str, option: str = "--phase") -> list[str]:
    regions = [part.strip().lower() for part in text.split(",")]
    bad = [r for r in regions if not REGION.match(r)]
    if bad or not regions:
        fail(
            f"{option}: '{clean(text)}' is not a comma-separated list of Azure regions such as "
            "eastus,westus2 (lowercase letters and digits)"
        )
    return regions


def phase_plan(texts: list[str]) -> list[list[str]]:
    phases = [regions_of(text) for text in texts]
    seen: dict[str, int] = {}
    for number, regions in enumerate(phases, 1):
        for region in regions:
            if region in seen:
                fail(
                    f"--phase: region '{region}' is in phase {seen[region]} and phase {number}; name it once"
                )
            seen[region] = number
    return phases


def version_of(text: str) -> str:
    if not VERSION.match(text):
        fail(f"VERSION: '{clean(text)}' is not an image version (or an extension's), such as 1.2.0")
    return text


def extension_names(names: list[str] | None) -> list[str]:
    """The extensions named with `--extension` (repeatable), each once; anything else exits 3
    naming the option."""
    chosen: list[str] = []
    for name in names or []:
        if not EXTENSION_NAME.fullmatch(name):
            fail(
                f"--extension: '{clean(name)}' is not an extension name (its name in the scale set's "
                "model: letters, digits, '.', '_', '-'; up to 64)"
            )
        if any(n.lower() == name.lower() for n in chosen):
            fail(f"--extension: {name} is named twice")
        chosen.append(name)
    return chosen


def enrollment_policy(
    policy_file: Path | None, flags: dict[str, Any], *, os_image: bool
) -> tuple[UpgradePolicy, list[str], bool]:
    """Azure's upgradePolicy from a file, overlaid with flags; the rollingUpgradePolicy fields
    given (the scale set's own policy decides the others); and whether automatic OS image
    upgrades are turned on: when `os_image`, or when the file's enableAutomaticOSUpgrade is true."""
    document = policy_document(policy_file, flags)
    automatic = document.get("automaticOSUpgradePolicy")
    in_file = automatic.get("enableAutomaticOSUpgrade") if isinstance(automatic, dict) else None
    if os_image and in_file is False:
        fail(
            f"--policy {clean(policy_file, PATH_LIMIT)}: automaticOSUpgradePolicy.enableAutomaticOSUpgrade "
            "is false; `auto enable` turns it on (to opt out: `upgradectl auto disable`; to enroll "
            "extensions only: `auto enable SCALE_SET --extension NAME`)"
        )
    policy, given = checked_policy(document, policy_file)
    return policy, given, os_image or in_file is True


# --- auto ---------------------------------------------------------------------------------------


OsImage = Annotated[
    bool,
    typer.Option(
        "--os-image",
        help="Automatic OS image upgrades (the default when no --extension is given).",
    ),
]
Extensions = Annotated[
    list[str] | None,
    typer.Option(
        "--extension",
        metavar="NAME",
        help="An extension, by its name in the scale set's model (repeat for more).",
    ),
]


@auto_app.command("enable")
@run
@with_options(
    rolling_upgrade_policy=rolling_flags, application_health=health_flags, maintenance_window=window_flags
)
async def enable(
    scale_set: Annotated[str, typer.Argument(help="The scale set to opt in.")],
    os_image: OsImage = False,
    extension: Extensions = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="JSON/YAML: Azure's upgradePolicy (automaticOSUpgradePolicy, rollingUpgradePolicy) "
            "and applicationHealth; flags override it.",
        ),
    ] = None,
    disable_automatic_rollback: Annotated[
        bool | None, typer.Option("--disable-automatic-rollback/--automatic-rollback")
    ] = None,
    use_rolling_upgrade_policy: Annotated[
        bool | None,
        typer.Option(
            "--use-rolling-upgrade-policy/--default-rolling-upgrade-policy",
            help="Follow the rolling upgrade policy given here; else the defaults apply.",
        ),
    ] = None,
    deferral: Annotated[
        bool | None,
        typer.Option(
            "--deferral/--no-deferral",
            help="osRollingUpgradeDeferral: instances wait for `upgradectl approve`.",
        ),
    ] = None,
    not_before_timeout: Annotated[
        str | None,
        typer.Option(help="osImageNotificationProfile.notBeforeTimeout, ISO 8601, PT5M-PT2H (Azure: PT15M)."),
    ] = None,
    rolling_upgrade_policy: Section = None,
    application_health: Section = None,
    maintenance_window: MaintenanceWindow | None = None,
) -> None:
    """Opt a scale set in to automatic OS image upgrades (--os-image, the default) and/or
    automatic upgrades of the extensions named (--extension NAME, each enrolled on its own), with
    what it had enrolled already (again: the policy replaced, a failed version forgotten). Its OS
    image is upgraded only when its image reference says 'latest'; an enrolled extension follows
    new minor and patch versions (never a new major), also when the image is pinned. An
    extension with enableAutomaticUpgrade on is refused: Azure upgrades it itself. With a
    maintenance window (--maintenance-window FILE, or --window-start, --window-duration and
    --window-time-zone), its automatic upgrades run only inside it; an OSImage maintenance
    configuration assigned to the set in Azure comes first."""
    name = scale_set_name(scale_set)
    extensions = extension_names(extension)
    timeout = duration(not_before_timeout, "--not-before-timeout", NOT_BEFORE)
    chosen, given, turn_on_os = enrollment_policy(
        policy,
        {
            "rollingUpgradePolicy": rolling_upgrade_policy,
            "automaticOSUpgradePolicy": {
                "disableAutomaticRollback": disable_automatic_rollback,
                "useRollingUpgradePolicy": use_rolling_upgrade_policy,
                "osRollingUpgradeDeferral": deferral,
            },
            "applicationHealth": application_health,
        },
        os_image=os_image or not extensions,
    )
    automatic = chosen.automatic_os_upgrade_policy
    if not automatic.use_rolling_upgrade_policy and chosen.rolling_upgrade_policy != RollingUpgradePolicy():
        say(
            "note: a rolling upgrade policy is given but useRollingUpgradePolicy is off, so the default "
            "policy applies (add --use-rolling-upgrade-policy to follow it)",
            "yellow",
        )
    from starter.automatic import enroll

    client, task_queue = await connect_and_queue()
    request = EnrollRequest(
        scale_set=name,
        os_image=turn_on_os,
        extensions=extensions,
        policy=chosen,
        not_before_timeout=timeout,
        policy_given=given,
        maintenance_window=maintenance_window,
        by=os_user(),
    )
    enrollment = await enroll(client, task_queue, request)
    rolling_text = (
        "its rolling upgrade policy" if automatic.use_rolling_upgrade_policy else "the default policy"
    )
    settings_text = (
        rolling_text
        + (", deferral" if automatic.os_rolling_upgrade_deferral else "")
        + (f", notBeforeTimeout {format_duration(timeout)}" if timeout else "")
        + (", automatic rollback off" if automatic.disable_automatic_rollback else "")
    )
    if enrollment.os_upgrades:
        say(f"enrolled {clean(enrollment.scale_set)} in automatic OS image upgrades ({settings_text})")
    enrolled = ", ".join(enrollment.enrolled_extensions or [])
    if enrolled:
        say(
            f"enrolled {clean(enrollment.scale_set)}'s extensions in automatic extension upgrades, "
            f"each on its own: {clean(enrolled, None)} ({rolling_text})"
        )
    if enrollment.image_reference is not None:
        say(f"image: {clean(enrollment.image_reference, None)} in {clean(enrollment.location or '?')}")
    if enrollment.note:
        say(f"note: {enrollment.note}", "yellow")
    if enrollment.effective_maintenance_window is not None:
        from starter.auto_view import window_rows

        for label, text in window_rows(enrollment, datetime.now(UTC)):
            say(f"{label}: {text.plain}")
    if maintenance_window is not None and enrollment.maintenance_window is None:
        say("note: the watcher did not keep the maintenance window (its worker predates them)", "yellow")
    for seen in sorted(enrollment.extensions.values(), key=lambda e: e.name.lower()):
        state = "follows new minor and patch versions" if seen.note is None else seen.note
        say(f"extension {seen.name} ({seen.full_type} {seen.model_version}): {state}")


@auto_app.command("disable")
@run
async def disable(
    scale_set: Annotated[str, typer.Argument(help="The scale set to opt out.")],
    os_image: Annotated[
        bool, typer.Option("--os-image", help="Only its automatic OS image upgrades.")
    ] = False,
    extension: Annotated[
        list[str] | None,
        typer.Option("--extension", metavar="NAME", help="Only this extension (repeat for more)."),
    ] = None,
    cancel: Annotated[
        bool,
        typer.Option("--cancel", help="Also cancel its automatic upgrade in flight (its batch finishes)."),
    ] = False,
) -> None:
    """Opt a scale set out, of everything, or only of its OS image upgrades (--os-image) or of
    the extensions named (--extension NAME): no new automatic upgrade of them starts; one in
    flight finishes (or, with --cancel, is cancelled). A set left with nothing enrolled is no
    longer enrolled. Exit 5 if it (or what is named) is not enrolled."""
    from starter.automatic import withdraw

    name = scale_set_name(scale_set)
    request = WithdrawRequest(
        scale_set=name,
        os_image=os_image,
        extensions=extension_names(extension),
        cancel_in_flight=cancel,
        by=os_user(),
    )
    client, task_queue = await connect_and_queue()
    left = await withdraw(client, task_queue, request)
    in_flight = "is being cancelled" if cancel else "finishes"
    if request.everything or not left.enrolls_any:
        say(
            f"{clean(name)} is no longer enrolled: no new automatic upgrade starts; "
            f"an automatic upgrade in flight {in_flight}"
        )
        return
    parts = (["automatic OS image upgrades"] if request.os_image else []) + [
        f"extension {n}" for n in request.extensions
    ]
    still = (["OS image"] if left.os_upgrades else []) + [
        f"extension {n}" for n in left.enrolled_extensions or []
    ]
    say(
        f"{clean(name)}: {clean(', '.join(parts), None)} withdrawn: no new automatic upgrade of them "
        f"starts; one in flight {in_flight}. Still enrolled: {clean(', '.join(still) or 'extensions', None)}"
    )


def next_window_json(enrollment: Enrollment) -> dict[str, Any]:
    """`nextMaintenanceWindow` of `auto show --json`: the occurrence open now or next (UTC), null
    once the window expired; nothing for a set without a window."""
    from rules.maintenance_windows import next_window

    window = enrollment.effective_maintenance_window
    if window is None:
        return {}
    found = next_window(window, datetime.now(UTC))
    times = {"start": found[0].isoformat(), "end": found[1].isoformat()} if found else None
    return {"nextMaintenanceWindow": times}


@auto_app.command("show")
@run
async def show(
    scale_set: Annotated[str | None, typer.Argument(help="One scale set; default every one.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The settings and enrollments as JSON.")] = False,
) -> None:
    """The enrolled scale sets (policy, region, image, why one is not upgraded, the versions
    applied and failed, each extension's automatic state: following, off, failed and when it is
    retried) and the watcher's settings. Exit 5 for a scale set that is not enrolled."""
    from starter.auto_view import enrollment_table, settings_table
    from starter.automatic import overview

    name = scale_set_name(scale_set) if scale_set is not None else None
    client, task_queue = await connect_and_queue()
    seen = await overview(client, task_queue)
    chosen = [e for e in seen.enrollments if name is None or e.scale_set == name]
    if name is not None and not chosen:
        fail(f"scale set '{clean(name)}' is not enrolled (`upgradectl auto enable {clean(name)}`)", 5)
    if as_json:
        print_json(
            {
                "watcher": "running" if seen.running else "not started",
                "settings": seen.settings.to_json(),
                "enrollments": [{**e.to_json(), **next_window_json(e)} for e in chosen],
            }
        )
        return
    for enrollment in chosen:
        console.print(enrollment_table(enrollment, seen.settings.extension_retry_interval))
    if not chosen:
        say("no scale set is enrolled (`upgradectl auto enable SCALE_SET`)")
    console.print(settings_table(seen.settings, running=seen.running))


@auto_app.command("settings")
@run
async def settings(
    poll_interval: Annotated[
        str | None, typer.Option(help="How often to look for new versions, ISO 8601, PT1M-P1D (PT15M).")
    ] = None,
    replication_poll_interval: Annotated[
        str | None,
        typer.Option(help="How often a rollout looks whether a version reached a region, PT1M-PT6H (PT5M)."),
    ] = None,
    extension_retry_interval: Annotated[
        str | None,
        typer.Option(
            help="How long after an automatic extension upgrade failed on a scale set it is tried "
            "again there, ISO 8601, PT1H-P30D (P3D)."
        ),
    ] = None,
    phase: Annotated[
        list[str] | None,
        typer.Option(
            "--phase",
            help="Regions of one phase, comma-separated (repeat, in order); regions not named "
            "follow in derived phases.",
        ),
    ] = None,
    derived_phases: Annotated[
        bool, typer.Option("--derived-phases", help="Forget the explicit phases: derive them again.")
    ] = False,
    max_sets_per_region: Annotated[
        int | None,
        typer.Option(help="How many scale sets of one region upgrade at once, in zone waves, 1-100 (20)."),
    ] = None,
    max_instances_per_region: Annotated[
        int | None,
        typer.Option(
            help="How many instances of one region may be in flight at once (the sum of its sets' "
            "batches), 1-100000 (1000)."
        ),
    ] = None,
    phase_bake_time: Annotated[
        str | None,
        typer.Option(
            help="How long a phase's sets bake before the next phase starts (then they are read "
            "again; one unhealthy stops the rollout), ISO 8601, PT0S-P7D (PT0S)."
        ),
    ] = None,
    replication_timeout: Annotated[
        str | None,
        typer.Option(
            help="How long a region waits for a version to reach it before its sets are skipped, "
            "ISO 8601, PT1H-P30D (P7D)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show the watcher's settings, or change those given (the others stay as they are)."""
    from starter.auto_view import settings_table
    from starter.automatic import change_settings, current_settings

    poll = duration(poll_interval, "--poll-interval", POLL)
    replication = duration(replication_poll_interval, "--replication-poll-interval", REPLICATION_POLL)
    retry = duration(extension_retry_interval, "--extension-retry-interval", EXTENSION_RETRY)
    numbers = {
        "max_sets_per_region": whole_number(max_sets_per_region, "--max-sets-per-region", SETS_PER_REGION),
        "max_instances_per_region": whole_number(
            max_instances_per_region, "--max-instances-per-region", INSTANCES_PER_REGION
        ),
    }
    durations = {
        "phase_bake_time": duration(phase_bake_time, "--phase-bake-time", PHASE_BAKE),
        "replication_timeout": duration(replication_timeout, "--replication-timeout", REPLICATION_TIMEOUT),
    }
    if phase and derived_phases:
        fail("--phase and --derived-phases: give one or the other")
    phases = phase_plan(phase) if phase else None
    client, task_queue = await connect_and_queue()
    chosen = await current_settings(client, task_queue)
    changes: dict[str, Any] = {}
    if poll is not None:
        changes["poll_interval"] = poll
    if replication is not None:
        changes["replication_poll_interval"] = replication
    if retry is not None:
        changes["extension_retry_interval"] = retry
    if phases is not None:
        changes["phases"] = phases
    if derived_phases:
        changes["phases"] = None
    changes.update({name: value for name, value in {**numbers, **durations}.items() if value is not None})
    if changes:
        wanted = AutomaticSettings.model_validate({**chosen.model_dump(by_alias=False), **changes})
        chosen = await change_settings(client, task_queue, wanted)
        say("settings changed")
    if as_json:
        print_json(chosen.to_json())
    else:
        console.print(settings_table(chosen))


# --- rollout ------------------------------------------------------------------------------------


SOURCE_HELP = (
    "The image or extension (`ext:publisher.type`), as `rollout list` names it, when several roll "
    "out the same version."
)


@rollout_app.command("list")
@run
async def list_rollouts(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The rollouts in flight and the recent ended ones."""
    from starter.auto_view import rollouts_table
    from starter.automatic import rollouts

    client, task_queue = await connect_and_queue()
    summaries = await rollouts(client, task_queue)
    if as_json:
        print_json({"value": [s.to_json() for s in summaries]})
        return
    if not summaries:
        say(
            "no rollouts yet: one starts when a new version of an enrolled scale set's image, or of "
            "one of its enrolled extensions, is found"
        )
        return
    console.print(rollouts_table(summaries))


@rollout_app.command("plan")
@run
async def plan_rollout(
    image: Annotated[
        str | None,
        typer.Option(
            "--image", help="One image, as `rollout list` names it (or its full id); default every one."
        ),
    ] = None,
    extension: Annotated[
        str | None, typer.Option("--extension", help="One extension type, publisher.type, instead.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='{"value": [plan, ...]}')] = False,
) -> None:
    """The phases and zone waves a new version would get now: per phase its regions, per region
    the enrolled scale sets with their zones, the cohorts (maxSetsPerRegion at once) and their
    waves. Reads the watcher and the scale sets; changes nothing. Exit 5 if no enrolled set
    follows the image or extension named."""
    from fleet.azure.backend import AzureFleet
    from starter.automatic import overview
    from starter.rollout_plan import RolloutPlan, chosen_groups, read_sets, rolled_groups

    if image is not None and extension is not None:
        fail("--image and --extension: give one or the other")
    for text, option in ((image, "--image"), (extension, "--extension")):
        if text is not None and (not text.strip() or clean(text, None) != text or len(text) > NAME_LIMIT):
            fail(f"{option}: '{clean(text)}' is not an image or extension name, as `rollout list` shows them")
    client, task_queue = await connect_and_queue()
    seen = await overview(client, task_queue)
    groups = rolled_groups(seen.enrollments)
    chosen = chosen_groups(groups, seen.enrollments, image, extension)
    if not chosen:
        if image is None and extension is None:
            say("no enrolled scale set would get a new version (`upgradectl auto show`)")
            if as_json:
                print_json({"value": []})
            return
        known = ", ".join(g.key for g in groups) or "none"
        fail(f"no enrolled scale set follows {clean(image or extension)}; enrolled: {clean(known, 300)}", 5)
    plans = []
    async with AzureFleet(azure_settings()) as fleet:
        for rolled in chosen:
            found, unread = await read_sets(fleet, rolled.scale_sets)
            plans.append(RolloutPlan(rolled, seen.settings, found, unread))
    if as_json:
        print_json({"value": [plan.to_json() for plan in plans]})
        return
    for plan in plans:
        for line in plan.lines():
            console.print(plain(line, limit=None), soft_wrap=True)


@rollout_app.command("show")
@run
async def show_rollout(
    version: Annotated[str, typer.Argument(help="The image or extension version, such as 1.2.0.")],
    source: Annotated[str | None, typer.Option("--source", help=SOURCE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help='{"value": [RolloutStatus, ...]}')] = False,
) -> None:
    """A rollout: its phases of regions, every scale set (region, phase, state, message, its
    upgrade's workflow id), why it stopped, its hold. Exit 5 if no rollout has that version."""
    from starter.auto_view import render_rollout
    from starter.automatic import rollout_statuses

    wanted = version_of(version)
    client, task_queue = await connect_and_queue()
    statuses = await rollout_statuses(client, task_queue, wanted, source)
    if as_json:
        print_json({"value": [s.to_json() for s in statuses]})
        return
    for status in statuses:
        console.print(render_rollout(status))


async def _steer(action: str, version: str, source: str | None, reason: str) -> None:
    from starter.automatic import source_name, steer

    wanted = version_of(version)
    client, task_queue = await connect_and_queue()
    summary = await steer(
        client, task_queue, action, wanted, HoldRequest(by=os_user(), reason=reason), source
    )
    console.print(
        Text.assemble(
            f"{action} requested for the rollout of ",
            plain(source_name(summary)),
            " ",
            plain(summary.version),
            f" ({clean(summary.workflow_id, None)})",
        ),
        soft_wrap=True,
    )


@rollout_app.command("hold")
@run
async def hold_rollout(
    version: Annotated[str, typer.Argument(help="The image or extension version.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; shown with who and since when.")],
    source: Annotated[str | None, typer.Option("--source", help=SOURCE_HELP)] = None,
) -> None:
    """Hold a running rollout: no new scale set's upgrade starts until resumed. Exit 5 if no
    running rollout has that version."""
    await _steer("hold", version, source, reason_of(reason, "say why the rollout is held"))


@rollout_app.command("resume")
@run
async def resume_rollout(
    version: Annotated[str, typer.Argument(help="The image or extension version.")],
    source: Annotated[str | None, typer.Option("--source", help=SOURCE_HELP)] = None,
) -> None:
    """Resume a held rollout."""
    await _steer("resume", version, source, "")


@rollout_app.command("rollback")
@run
async def rollback_rollout(
    version: Annotated[str, typer.Argument(help="The image or extension version rolled out.")],
    source: Annotated[str | None, typer.Option("--source", help=SOURCE_HELP)] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Until every phase is rolled back.")] = False,
) -> None:
    """Roll an ended rollout back as a whole: each of its scale sets' upgrades undone by a
    rollback upgrade of its own (`upgradectl rollback`), phase by phase in reverse order. Exit 5
    if no rollout has that version; 3 if it still runs, a set was upgraded again since, or it
    left nothing to roll back."""
    from starter.rollout_rollback import rollback_status, start_rollout_rollback

    wanted = version_of(version)
    client, task_queue = await connect_and_queue()
    rollout, request = await start_rollout_rollback(client, task_queue, wanted, source, os_user())
    console.print(
        Text.assemble(
            "rolling back ",
            plain(rollout.workflow_id),
            f": {sum(len(p) for p in request.phases)} scale set(s) in {len(request.phases)} phase(s), "
            "the last first",
        ),
        soft_wrap=True,
    )
    if not wait:
        return
    handle = client.get_workflow_handle(rollout_rollback_id(rollout.workflow_id))
    await handle.result()
    status = await rollback_status(client, rollout.workflow_id)
    for item in status.sets:
        console.print(
            Text.assemble(
                f"phase {item.phase} ",
                plain(item.scale_set),
                f" {item.state.value}: ",
                plain(item.message or ""),
            ),
            soft_wrap=True,
        )
    if status.state != RollbackState.COMPLETED:
        raise typer.Exit(1)


@rollout_app.command("cancel")
@run
async def cancel_rollout(
    version: Annotated[str, typer.Argument(help="The image or extension version.")],
    source: Annotated[str | None, typer.Option("--source", help=SOURCE_HELP)] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
) -> None:
    """Cancel a running rollout: no new scale set's upgrade starts, those in flight are
    cancelled (their batch in flight finishes). Exit 5 if no running rollout has that version."""
    await _steer(
        "cancel",
        version,
        source,
        reason_of(reason, "say why the rollout is cancelled") if reason is not None else "",
    )
