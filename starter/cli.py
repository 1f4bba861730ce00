"""`upgradectl`: start, inspect, watch and cancel upgrades; run the worker and the fleet emulator.

Exit codes (docs/usage.md: Exit codes):
  0  Completed
  1  Faulted
  2  Cancelled, and usage errors (an unknown option, a missing or malformed option value)
  3  refused before anything started: an invalid policy or option value, an unreadable policy
     or spec file, an unknown scale set or image, an upgrade already running, a request the
     fleet refused
  4  anything else: Temporal or the fleet not reachable (or lost for too long), no worker
  5  no such upgrade: the scale set has no upgrade (`status`, `watch`, `cancel`, `pause`,
     `resume`, `approve`), or none running to cancel, pause, resume or approve

Every error is one line (or one line per invalid field) on stderr, never a traceback. Text a
user or a back end chose is printed with control characters made visible, never as rich markup
or emoji, and cut short when long (starter/terminal.py).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
import yaml
from pydantic import TypeAdapter, ValidationError
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from fleet.errors import FleetError, FleetRequestError
from models.base import describe_validation_error, without_docs_link
from models.change import Change, ExtensionRequest
from models.fleet import InstanceExtension, ScaleSetName
from models.image import ImageReference
from models.policy import UpgradePolicy
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
from starter.auto_commands import auto_app, rollout_app
from starter.policy_options import (
    CrossZone,
    HealthGracePeriod,
    HealthInterval,
    HealthPath,
    HealthPort,
    HealthProbes,
    HealthProtocol,
    HealthWaitTimeout,
    MaxBatchPercent,
    MaxUnhealthyPercent,
    MaxUnhealthyUpgradedPercent,
    PauseBetweenBatches,
    PrioritizeUnhealthy,
    RollbackOnBreach,
    health_flags,
    rolling_flags,
)
from starter.retries import retrying
from starter.terminal import PATH_LIMIT, clean, clean_message, plain
from starter.terminal import console as terminal_console
from starter.upgrades import (
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_NO_UPGRADE,
    EXIT_REFUSED,
    EXIT_USAGE,
    NoSuchUpgrade,
    UpgradeFailed,
    UpgradeRefused,
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
    start_upgrade,
    upgrade_handle,
)
from worker.connection import Settings, connect
from worker.process_exit import exit_after

if TYPE_CHECKING:
    from fleet.azure.settings import AzureSettings
    from fleet.emulator.admin import EmulatorAdmin

T = TypeVar("T")


class UsageProblem(typer.BadParameter):
    """A usage error in our words (exit 2, with the `try … --help` hint): options that go
    together or not, as click's own errors say a missing or unknown option."""

    def format_message(self) -> str:
        return self.message


try:  # typer >= 0.26 carries its own click; its errors derive from TyperException
    from typer import TyperException as CommandLineError
except ImportError:  # pragma: no cover - older typer on click
    # Another class under the same name, for the typer this falls back to; mypy sees today's.
    from click import ClickException as CommandLineError  # type: ignore[assignment]

# Help texts are plain text: "[:VERSION|latest]" is an image reference's syntax, not markup.
app = typer.Typer(
    help="Durable rolling OS image and extension upgrades for VM scale sets, on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
fleet_app = typer.Typer(
    help="The fleet emulator: serve it, create scale sets, inspect them.", rich_markup_mode=None
)
app.add_typer(fleet_app, name="fleet")
app.add_typer(auto_app, name="auto")
app.add_typer(rollout_app, name="rollout")
console = terminal_console()
DEFAULT_FLEET_URL = "https://127.0.0.1:8780"
DEFAULT_FLEET_DB = "fleet-emulator.db"
errors = terminal_console(stderr=True)
_SCALE_SET_NAME = TypeAdapter(ScaleSetName)


def say(message: str, style: str = "") -> None:
    """One message on stderr, its user text made harmless."""
    errors.print(Text(clean_message(message), style=style), soft_wrap=True)


def fail(message: str, code: int = EXIT_REFUSED) -> NoReturn:
    errors.print(Text.assemble(("error: ", "bold red"), clean_message(message)), soft_wrap=True)
    raise typer.Exit(code)


def fleet_url() -> str:
    """The emulator's admin API (`upgradectl fleet ...`); the product itself reaches the fleet
    through Azure's API (AZURE_ARM_ENDPOINT)."""
    return os.environ.get("FLEET_URL", DEFAULT_FLEET_URL).rstrip("/")


def azure_settings() -> AzureSettings:
    """Where Azure is and how to sign in, from the environment; a bad value is one line."""
    from fleet.azure.settings import AzureSettings

    try:
        return AzureSettings.from_env()
    except ValueError as err:
        fail(str(err), EXIT_USAGE)


def fleet_failure(err: FleetError) -> NoReturn:
    """The fleet refused (3) or could not be reached or failed (4), in its own words."""
    if isinstance(err, FleetRequestError) or not err.retryable:
        fail(f"the fleet refused: {err.code}: {err.message}", EXIT_REFUSED)
    if err.code in ("ConnectionError", "Timeout"):
        fail(
            f"cannot reach the fleet: {err.message} (set AZURE_ARM_ENDPOINT; FLEET_URL for fleet commands)",
            EXIT_ERROR,
        )
    fail(f"the fleet failed: {err.code}: {err.message}", EXIT_ERROR)


def run(main: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command, turning the errors users meet into one clear line."""

    @wraps(main)
    def command(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(main(*args, **kwargs))
        except (typer.Exit, typer.Abort, CommandLineError, KeyboardInterrupt):
            raise
        except UpgradeRefused as err:
            fail(f"{err.code}: {err.message}")
        except NoSuchUpgrade as err:
            fail(str(err), EXIT_NO_UPGRADE)
        except UpgradeFailed as err:
            fail(str(err), EXIT_ERROR)
        except FleetError as err:
            fleet_failure(err)
        except ValidationError as err:
            fail(describe_validation_error(err))
        except RuntimeError as err:
            if "connect" in str(err).lower():
                fail(
                    f"cannot reach Temporal: {without_docs_link(str(err))} (set TEMPORAL_ADDRESS)", EXIT_ERROR
                )
            fail(f"{type(err).__name__}: {err}", EXIT_ERROR)
        except RPCError as err:
            fail(f"Temporal: {err.status.name if err.status else 'error'}: {err.message}", EXIT_ERROR)
        except (WorkflowFailureError, WorkflowUpdateFailedError) as err:
            fail(f"{err}: {err.cause}", EXIT_ERROR)
        except ValueError as err:
            fail(without_docs_link(str(err)))
        except Exception as err:  # noqa: BLE001 - one line, never a traceback
            fail(f"unexpected {type(err).__name__}: {without_docs_link(str(err))}", EXIT_ERROR)

    return command


def load_document(path: Path, option: str) -> dict[str, Any]:
    """A JSON or YAML object from a file; anything else is refused naming the option and file."""
    where = f"{option} {clean(path, PATH_LIMIT)}"
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        fail(f"{where}: not a text file (byte {err.start} is not UTF-8); give a JSON or YAML file")
    except OSError as err:
        fail(f"{where}: cannot read it: {err.strerror or err}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        if isinstance(err, yaml.reader.ReaderError):  # a control character, say
            character = chr(err.character) if isinstance(err.character, int) else err.character
            at = f" at character {err.position + 1}"
            problem = f"{clean(character)!s} is not allowed"
        fail(f"{where}: not valid JSON or YAML{at}: {problem}")
    if not isinstance(data, dict):
        fail(f"{where}: must hold a JSON or YAML object (found {type(data).__name__})")
    if not all(isinstance(key, str) for key in data):
        fail(f"{where}: every key must be a string")
    return data


def parse_image(text: str, option: str = "--image") -> ImageReference:
    try:
        return ImageReference.parse(text)
    except ValidationError as err:
        fail(f"{option}: " + "; ".join(describe_validation_error(err).splitlines()))
    except ValueError as err:
        fail(f"{option}: {err}")


def scale_set_name(name: str, where: str = "NAME") -> str:
    """A name the fleet could hold; anything else is refused before any call."""
    try:
        return _SCALE_SET_NAME.validate_python(name)
    except ValidationError:
        fail(f"{where}: '{clean(name)}' is not a scale set name (letters, digits, '.', '_', '-'; up to 64)")


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


# --- upgrades -----------------------------------------------------------------------------------

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


# An extension's name in a scale set's model, as `fleet create` takes it (Azure's are of this
# kind: `AzureMonitorLinuxAgent`, `Microsoft.Azure.Monitor.AzureMonitorLinuxAgent`).
EXTENSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
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
    image: str | None, extensions: bool, names: list[str] | None
) -> str | list[ExtensionRequest]:
    """An OS image upgrade (--image) or an extension upgrade (--extensions [NAME...]): exactly
    one. Giving both, neither, or names without --extensions is a usage error (exit 2)."""
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
    document = UpgradePolicy.normalize(load_document(policy_file, "--policy") if policy_file else {})
    for section, values in flags.items():
        if not isinstance(values, dict):
            if values is not None:
                document[section] = values
            continue
        chosen = {k: v for k, v in values.items() if v is not None}
        if chosen:
            current = document.get(section)
            document[section] = {**(current if isinstance(current, dict) else {}), **chosen}
    where = f" in --policy {clean(policy_file, PATH_LIMIT)}" if policy_file else ""
    try:
        policy = UpgradePolicy.from_user(document)
    except ValidationError as err:
        fail(f"invalid upgrade policy{where}:\n" + describe_validation_error(err))
    except ValueError as err:
        fail(f"invalid upgrade policy{where}:\n{err}")
    if isinstance(image, str):
        target: ImageReference | None = parse_image(image)
    else:
        target, extra = None, {**extra, "extensions": image}
    for note in policy.notes():
        say(f"note: {note}", "yellow")
    try:
        # The fields given; the scale set's own rollingUpgradePolicy decides the others.
        rolling = document.get("rollingUpgradePolicy")
        given = sorted(rolling) if isinstance(rolling, dict) else []
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


@app.command()
@run
async def start(
    ctx: typer.Context,
    scale_set: Annotated[str, typer.Option("--scale-set", help="The scale set to upgrade.")],
    image: ImageOption = None,
    extensions: ExtensionsOption = False,
    names: ExtensionNames = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="JSON/YAML: Azure's upgradePolicy sections (rollingUpgradePolicy, "
            "automaticOSUpgradePolicy) and applicationHealth.",
        ),
    ] = None,
    max_batch_instance_percent: MaxBatchPercent = None,
    max_unhealthy_instance_percent: MaxUnhealthyPercent = None,
    max_unhealthy_upgraded_instance_percent: MaxUnhealthyUpgradedPercent = None,
    pause_time_between_batches: PauseBetweenBatches = None,
    enable_cross_zone_upgrade: CrossZone = None,
    prioritize_unhealthy_instances: PrioritizeUnhealthy = None,
    rollback_failed_instances_on_policy_breach: RollbackOnBreach = None,
    disable_automatic_rollback: Annotated[
        bool | None, typer.Option("--disable-automatic-rollback/--automatic-rollback")
    ] = None,
    health_protocol: HealthProtocol = None,
    health_port: HealthPort = None,
    health_path: HealthPath = None,
    health_interval: HealthInterval = None,
    health_probes: HealthProbes = None,
    health_grace_period: HealthGracePeriod = None,
    health_wait_timeout: HealthWaitTimeout = None,
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
    try:
        change = change_options(image, extensions, names)
    except UsageProblem as err:
        err.ctx = ctx
        raise
    request = build_request(
        scale_set,
        change,
        policy,
        {
            "rollingUpgradePolicy": rolling_flags(
                max_batch_instance_percent,
                max_unhealthy_instance_percent,
                max_unhealthy_upgraded_instance_percent,
                pause_time_between_batches,
                enable_cross_zone_upgrade,
                prioritize_unhealthy_instances,
                rollback_failed_instances_on_policy_breach,
            ),
            "automaticOSUpgradePolicy": {"disableAutomaticRollback": disable_automatic_rollback},
            "applicationHealth": health_flags(
                health_protocol,
                health_port,
                health_path,
                health_interval,
                health_probes,
                health_grace_period,
                health_wait_timeout,
            ),
            "upgradeTimeout": timeout,
            "notifications": {
                "webhooks": webhook or _ids(os.environ.get("UPGRADE_WEBHOOKS")),
                "perBatch": notify_per_batch,
            },
        },
        started_by,
        deferral=deferral,
        not_before_timeout=not_before_timeout,
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


@app.command()
@run
async def plan(
    ctx: typer.Context,
    scale_set: Annotated[str, typer.Option("--scale-set", help="The scale set to plan an upgrade of.")],
    image: ImageOption = None,
    extensions: ExtensionsOption = False,
    names: ExtensionNames = None,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="JSON/YAML: Azure's upgradePolicy sections and applicationHealth."),
    ] = None,
    max_batch_instance_percent: MaxBatchPercent = None,
    max_unhealthy_instance_percent: MaxUnhealthyPercent = None,
    pause_time_between_batches: PauseBetweenBatches = None,
    enable_cross_zone_upgrade: CrossZone = None,
    prioritize_unhealthy_instances: PrioritizeUnhealthy = None,
) -> None:
    """Print the batches an upgrade would run now (zones, update domains, phases, skipped
    instances, an estimate): reads the scale set and the image or extension versions, changes
    nothing."""
    from fleet.azure.backend import AzureFleet
    from models.errors import RefusalCode
    from starter.plan import ExtensionsRefused, admitted, gate_before, plan_text, resolve_extensions
    from workflows.admission import rolled_by_azure

    try:
        change = change_options(image, extensions, names)
    except UsageProblem as err:
        err.ctx = ctx
        raise
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
    for line in plan_text(ledger, view).splitlines():
        console.print(plain(line, limit=None), soft_wrap=True)
    if refusal := rolled_by_azure(view):
        fail(f"start would refuse it: {refusal.type}: {refusal.message}")
    if ledger.candidates() and (breach := gate_before(ledger)):
        fail(f"the upgrade would fault at once, touching nothing: {breach.code}: {breach.message}")


def finish(report: UpgradeReport, *, printed: bool = False) -> NoReturn:
    """Print the final status (unless the JSON lines already did) and exit by its outcome."""
    if not printed:
        print_json(report.status.to_json())
    raise typer.Exit(EXIT_CODES[reported_properties(report).running_status.code])


@app.command()
@run
async def status(
    scale_set: Annotated[str, typer.Argument(help="The scale set.")],
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


@app.command()
@run
async def history(
    scale_set: Annotated[str, typer.Argument(help="The scale set.")],
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


@app.command()
@run
async def watch(
    scale_set: Annotated[str, typer.Argument(help="The scale set.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON status line per change instead of the live view.")
    ] = False,
) -> None:
    """Follow the latest upgrade live; exit 0 Completed, 1 Faulted, 2 Cancelled."""
    client = await connect()
    finish(await progress.watch(client, scale_set, errors, as_json=as_json), printed=as_json)


# --- pause, resume, approve ---------------------------------------------------------------------

REASON_LIMIT = 200
BY_LIMIT = 64
_INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")


def os_user() -> str:
    """Who runs upgradectl: recorded as who paused, resumed or approved."""
    try:
        return getpass.getuser() or "User"
    except (OSError, KeyError, ImportError):
        return "User"


def text_option(value: str, option: str, limit: int, *, what: str) -> str:
    """A free text option (a reason, a name): not empty, not too long, no control characters."""
    text = value.strip()
    if not text:
        fail(f"{option}: must not be empty ({what})")
    if len(text) > limit:
        fail(f"{option}: at most {limit} characters (got {len(text)})")
    if clean(text, None) != text:
        fail(f"{option}: control characters are not allowed (got '{clean(text)}')")
    return text


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


@app.command()
@run
async def cancel(
    scale_set: Annotated[str, typer.Argument(help="The scale set.")],
    by: ByOption = None,
) -> None:
    """Cancel the running upgrade: no new batch starts, the batch in flight finishes. (An upgrade
    a rollout started: the rollout holds, naming who cancelled.)"""
    request = CancelRequest(
        by=text_option(by if by is not None else os_user(), "--by", BY_LIMIT, what="who cancels it")
    )
    client = await connect()
    await cancel_upgrade(client, scale_set, request)
    say(f"cancel requested for the upgrade of {clean(scale_set)} by {clean(request.by)}")


@app.command()
@run
async def pause(
    scale_set: Annotated[str, typer.Argument(help="The scale set.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown in the status and the Web UI).")],
    by: ByOption = None,
) -> None:
    """Pause the running upgrade: the batch in flight finishes, no new batch starts until resumed."""
    name = scale_set_name(scale_set, "SCALE_SET")
    request = PauseRequest(
        reason=text_option(reason, "--reason", REASON_LIMIT, what="say why the upgrade is paused"),
        by=text_option(by if by is not None else os_user(), "--by", BY_LIMIT, what="who pauses it"),
    )
    client = await connect()
    await pause_upgrade(client, name, request)
    say(
        f"pause requested for the upgrade of {clean(name)} by {clean(request.by)}: the batch in "
        f"flight finishes, no new batch starts until `upgradectl resume {clean(name)}`"
    )


@app.command()
@run
async def resume(
    scale_set: Annotated[str, typer.Argument(help="The scale set.")],
    by: ByOption = None,
) -> None:
    """Resume a paused upgrade."""
    name = scale_set_name(scale_set, "SCALE_SET")
    request = ResumeRequest(
        by=text_option(by if by is not None else os_user(), "--by", BY_LIMIT, what="who resumes it")
    )
    client = await connect()
    await resume_upgrade(client, name, request)
    say(f"resume requested for the upgrade of {clean(name)} by {clean(request.by)}")


@app.command()
@run
async def approve(
    scale_set: Annotated[str, typer.Argument(help="The scale set.")],
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
        by=text_option(by if by is not None else os_user(), "--by", BY_LIMIT, what="who approves"),
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


@app.command("worker")
def worker_command() -> None:
    """Run a worker (same as `python -m worker`)."""
    from worker.main import main

    main()


@app.command()
def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the servers up afterwards for inspection.")
    ] = False,
    instances: Annotated[int, typer.Option(help="Instances in the demo scale set.")] = 20,
) -> None:
    """Start a dev server, the emulator and a worker, and run a real upgrade with live progress."""
    from starter.demo import run_demo

    raise typer.Exit(run_demo(keep=keep, instances=instances, console=errors))


# --- the fleet emulator -------------------------------------------------------------------------


def fleet_client() -> EmulatorAdmin:
    from fleet.emulator.admin import EmulatorAdmin
    from fleet.emulator.tls import ca_file

    url = fleet_url()
    if not url.lower().startswith("https://"):
        # The emulator speaks only TLS: plain http would fail as "Server disconnected".
        fail(
            f"FLEET_URL must be an https:// URL of the fleet emulator, like {DEFAULT_FLEET_URL} "
            f"(got '{clean(url)}')",
            EXIT_USAGE,
        )
    # `upgradectl fleet serve` prints its CA file; by default it lies beside its default database.
    ca = os.environ.get("FLEET_CA") or str(ca_file(Path(DEFAULT_FLEET_DB)))
    if not Path(ca).is_file():
        fail(
            "FLEET_CA must name the emulator's CA file, which `upgradectl fleet serve` prints "
            f"(got '{clean(ca)}')",
            EXIT_USAGE,
        )
    return EmulatorAdmin(url, ca)


@fleet_app.command("serve")
def fleet_serve(
    host: str = "127.0.0.1",
    port: int = 8780,
    db: Annotated[Path, typer.Option(help="SQLite state; kept across restarts.")] = Path("fleet-emulator.db"),
) -> None:
    """Run the fleet emulator (Azure Resource Manager over HTTPS, SQLite state)."""
    from fleet.emulator.arm import RESOURCE_GROUP, SUBSCRIPTION
    from fleet.emulator.server import serve
    from fleet.emulator.tls import ensure_certificates
    from starter.processes import EmulatorAddress

    ca = ensure_certificates(db, host).ca_file.resolve()
    url = f"https://{clean(host)}:{port}"
    say(f"fleet emulator on {url} (state in {clean(db, PATH_LIMIT)})")
    say(f"ARM endpoint (base_url): {url}  subscription: {SUBSCRIPTION}  resource group: {RESOURCE_GROUP}")
    say(f"CA file (connection_verify): {clean(ca, PATH_LIMIT)}")
    exports = " ".join(
        f"{name}={clean(value, PATH_LIMIT)}" for name, value in EmulatorAddress(url, ca).env().items()
    )
    say(f"for the worker and upgradectl: export {exports}")
    serve(host, port, db)


def _range(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    low, _, high = text.partition(",")
    try:
        return [float(low), float(high or low)]
    except ValueError:
        # A usage error like click's own for a number option: exit 2, the option named.
        raise typer.BadParameter(
            f"must be MIN,MAX seconds or one number, such as 1,3 (got '{clean(text)}')",
            param_hint=f"'{option}'",
        ) from None


def _ids(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


@fleet_app.command("create")
@run
async def fleet_create(
    name: Annotated[str, typer.Argument(help="Scale set name.")],
    file: Annotated[
        Path | None, typer.Option("--file", help="A ScaleSetSpec as JSON or YAML; flags override it.")
    ] = None,
    instances: Annotated[int | None, typer.Option(help="Capacity, 1-10000.")] = None,
    zones: Annotated[str | None, typer.Option(help="Comma-separated zones, e.g. 1,2,3.")] = None,
    update_domains: Annotated[int | None, typer.Option(help="Update domains per zone, default 5.")] = None,
    fault_domains: Annotated[int | None, typer.Option(help="Fault domains, default 5.")] = None,
    image: Annotated[str | None, typer.Option(help="The model's image, PUBLISHER:OFFER:SKU:VERSION.")] = None,
    location: Annotated[str | None, typer.Option()] = None,
    data_disks: Annotated[int | None, typer.Option(help="Data disks per instance.")] = None,
    reimage_seconds: Annotated[str | None, typer.Option(help="MIN,MAX latency of a reimage.")] = None,
    restore_seconds: Annotated[
        str | None, typer.Option(help="MIN,MAX latency of a restore (Flexible: the OS disk swap).")
    ] = None,
    power_seconds: Annotated[
        str | None,
        typer.Option(help="MIN,MAX latency of a Flexible VM's deallocate or start (a swap needs both)."),
    ] = None,
    boot_seconds: Annotated[str | None, typer.Option(help="MIN,MAX boot time after an operation.")] = None,
    unhealthy_image: Annotated[
        str | None, typer.Option(help="Comma-separated versions that never become healthy.")
    ] = None,
    unhealthy_after_upgrade: Annotated[
        str | None, typer.Option(help="Comma-separated instance ids that fail health on a new image.")
    ] = None,
    unhealthy_share: Annotated[
        float | None, typer.Option(help="Share of upgraded instances that fail health (seeded).")
    ] = None,
    transient_error_share: Annotated[
        float | None, typer.Option(help="Share of API calls answered 429/5xx.")
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Create (or replace) a scale set in the emulator."""
    from models.fleet import ScaleSetSpec

    document: dict[str, Any] = load_document(file, "--file") if file else {}
    chosen = {
        "capacity": instances,
        "zones": _ids(zones),
        "updateDomainCount": update_domains,
        "faultDomainCount": fault_domains,
        "imageReference": parse_image(image).to_json() if image else None,
        "location": location,
        "dataDisksPerInstance": data_disks,
        "seed": seed,
    }
    document.update({k: v for k, v in chosen.items() if v is not None})
    timing = {
        "reimageSeconds": _range(reimage_seconds, "--reimage-seconds"),
        "restoreSeconds": _range(restore_seconds, "--restore-seconds"),
        "bootSeconds": _range(boot_seconds, "--boot-seconds"),
        "powerSeconds": _range(power_seconds, "--power-seconds"),
    }
    faults = {
        "unhealthyImages": _ids(unhealthy_image),
        "unhealthyAfterUpgrade": _ids(unhealthy_after_upgrade),
        "unhealthyShare": unhealthy_share,
        "transientErrorShare": transient_error_share,
    }
    for section, values in (("timing", timing), ("faults", faults)):
        chosen_values = {k: v for k, v in values.items() if v is not None}
        if chosen_values:
            current = document.get(section)
            document[section] = {**(current if isinstance(current, dict) else {}), **chosen_values}
    if not document.get("imageReference"):
        fail("--image is required (or imageReference in --file)")
    try:
        spec = ScaleSetSpec.from_user({**document, "name": name})
    except ValidationError as err:
        where = f" (--file {clean(file, PATH_LIMIT)})" if file else ""
        fail(f"invalid scale set{where}:\n" + describe_validation_error(err))
    async with fleet_client() as fleet:
        view = await fleet.create_scale_set(spec)
    say(f"created {clean(name)}: {len(view.instances)} instances on {clean(view.image_reference)}")


@fleet_app.command("publish")
@run
async def fleet_publish(
    image: Annotated[str, typer.Argument(help="PUBLISHER:OFFER:SKU:VERSION or GALLERY_ID/versions/V.")],
    region: Annotated[
        list[str] | None, typer.Option(help="Replicate to this region (repeat); default everywhere.")
    ] = None,
    exclude_from_latest: Annotated[
        bool, typer.Option(help="Not taken as 'latest' (gallery image versions only, as on Azure).")
    ] = False,
) -> None:
    """Publish an image version to the emulator's gallery."""
    reference = parse_image(image, "IMAGE")
    async with fleet_client() as fleet:
        version = await fleet.publish_image(reference, region, exclude_from_latest=exclude_from_latest)
    say(f"published {clean(version.image_reference)} to {clean(', '.join(version.regions))}")


@fleet_app.command("show")
@run
async def fleet_show(
    name: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every instance with zone, update and fault domain, image, health and data disks."""
    scale_set_name(name)
    async with fleet_client() as fleet:
        view = await fleet.show_scale_set(name)
    if as_json:
        print_json(view.to_json())
        return
    table = Table(
        title=plain(
            f"{clean(name)} ({clean(view.location)}, model {clean(view.image_reference)})", limit=None
        )
    )
    columns = (
        "instance",
        "zone",
        "UD",
        "FD",
        "image",
        "OS disk",
        "health",
        "state",
        "data disks",
        "extensions",
    )
    for column in columns:
        table.add_column(column)
    if view.extensions:
        table.caption = plain(
            "extensions: "
            + "; ".join(
                f"{e.name} {e.full_type} {e.type_handler_version}"
                + (" (automatic upgrade)" if e.enable_automatic_upgrade else "")
                for e in view.extensions
            ),
            limit=None,
        )
    for i in view.instances:
        table.add_row(
            plain(i.instance_id),
            plain(i.zone or "-"),
            str(i.platform_update_domain),
            str(i.platform_fault_domain),
            plain(i.image_reference.resolved_version),
            plain(i.os_disk.name),
            i.health.value,
            plain(f"{i.provisioning_state}/{i.power_state}"),
            plain(", ".join(d.name for d in i.data_disks), limit=None),
            plain(", ".join(installed(e) for e in i.extensions) or "-", limit=None),
        )
    console.print(table)


def installed(extension: InstanceExtension) -> str:
    """An instance's extension as `fleet show` lists it: name, version, and a failure or an
    install under way."""
    state = " FAILED" if extension.failed else " (installing)" if extension.transitioning else ""
    return f"{extension.name} {extension.type_handler_version or '?'}{state}"


@fleet_app.command("ops")
@run
async def fleet_ops(
    name: Annotated[str, typer.Argument()],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The operations log: every reimage and restore, when, by which operation id."""
    scale_set_name(name)
    async with fleet_client() as fleet:
        operations = await fleet.operations(name)
    if as_json:
        print_json([op.to_json() for op in operations])
        return
    table = Table(title=plain(f"operations on {clean(name)}", limit=None))
    for column in ("started", "kind", "instance", "status", "OS disk", "requests", "operation id"):
        table.add_column(column)
    for op in operations:
        table.add_row(
            op.start_time.strftime("%H:%M:%S"),
            op.kind.value,
            plain(op.instance_id),
            plain(op.status.value + (f" ({op.error.code})" if op.error else "")),
            plain(f"{op.previous_os_disk} → {op.os_disk or '?'}", limit=None),
            str(op.request_count),
            plain(op.operation_id, limit=None),
        )
    console.print(table)


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


def cli(args: list[str] | None = None) -> int:
    """Run `upgradectl` with these arguments; returns the exit code. Usage errors (an unknown
    option, a missing or malformed value) are one line plus a hint, exit 2, with the user's
    text made harmless; click's own panel would echo it raw."""
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=extensions_equals(sys.argv[1:] if args is None else args),
            prog_name="upgradectl",
            standalone_mode=False,
        )
    except CommandLineError as err:
        if type(err).__name__ == "NoArgsIsHelpError":
            return EXIT_USAGE  # typer printed the help while raising it
        errors.print(
            Text.assemble(("error: ", "bold red"), clean_message(err.format_message())), soft_wrap=True
        )
        context = getattr(err, "ctx", None)
        where = context.command_path if context is not None else "upgradectl"
        errors.print(Text(f"try `{clean(where)} --help`", "grey50"), soft_wrap=True)
        return getattr(err, "exit_code", EXIT_USAGE)
    except typer.Abort:
        errors.print(Text("aborted", "bold red"))
        return EXIT_ERROR
    return code if isinstance(code, int) else 0


def main() -> None:
    """The `upgradectl` entry point."""
    exit_after(lambda: sys.exit(cli()))


if __name__ == "__main__":
    main()
