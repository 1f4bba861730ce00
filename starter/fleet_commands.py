"""`upgradectl fleet serve|create|publish|show|ops|quota`: the fleet emulator. Exit codes:
starter/common.py (docs/usage.md: Exit codes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from models.base import describe_validation_error
from models.fleet import InstanceExtension
from starter.common import (
    comma_list,
    console,
    fail,
    load_document,
    parse_image,
    print_json,
    run,
    say,
    scale_set_name,
)
from starter.terminal import PATH_LIMIT, clean, plain
from starter.upgrades import EXIT_USAGE

if TYPE_CHECKING:
    from fleet.emulator.admin import EmulatorAdmin

fleet_app = typer.Typer(
    help="The fleet emulator: serve it, create scale sets, inspect them.", rich_markup_mode=None
)
DEFAULT_FLEET_URL = "https://127.0.0.1:8780"
DEFAULT_FLEET_DB = "fleet-emulator.db"


def fleet_url() -> str:
    """The emulator's admin API (`upgradectl fleet ...`); the product itself reaches the fleet
    through Azure's API (AZURE_ARM_ENDPOINT)."""
    return os.environ.get("FLEET_URL", DEFAULT_FLEET_URL).rstrip("/")


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
        "zones": comma_list(zones),
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
        "unhealthyImages": comma_list(unhealthy_image),
        "unhealthyAfterUpgrade": comma_list(unhealthy_after_upgrade),
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
    scale_set_name(name, "NAME")
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
    """The operations log: every reimage, restore, instance created and deleted, when, by
    which operation id."""
    scale_set_name(name, "NAME")
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


@fleet_app.command("quota")
@run
async def fleet_quota(
    region: Annotated[str, typer.Argument(help="The region, e.g. westeurope.")],
    family: Annotated[
        str | None,
        typer.Option(help="A VM family (e.g. standardDSv3Family), or cores: the region's total."),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="The family's vCPU limit from now on.")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="The family back to the default limit.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The region's vCPU usage and limits, as the Compute usages API reports them; with
    --family and --limit (or --reset), set one first. New instances (MaxSurge) need room in
    their VM family's and the region's limit: a short quota makes surge batches upgrade in place."""
    if (limit is None and not reset) != (family is None) or (limit is not None and reset):
        fail("--family takes either --limit N or --reset (and they need --family)", EXIT_USAGE)
    async with fleet_client() as fleet:
        if family is not None:
            await fleet.set_core_quota(region, family, None if reset else limit)
        usages = await fleet.core_usage(region)
    if as_json:
        print_json([usage.to_json() for usage in usages])
        return
    table = Table(title=plain(f"vCPU quota in {clean(region)}", limit=None))
    for column in ("quota", "in use", "limit"):
        table.add_column(column)
    for usage in usages:
        table.add_row(plain(usage.name), str(usage.current_value), str(usage.limit))
    console.print(table)
