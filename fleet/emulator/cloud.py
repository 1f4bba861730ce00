"""The emulated cloud: scale sets, an image gallery, OS disks, long-running operations, health.

Operations finish lazily: each carries the time it completes, and every request first settles
the operations that are due. So the emulator needs no background task, and a restarted emulator
finishes what was in flight at the right moment. Every random draw (latencies, which instances
fail) hashes the scale set's seed with stable ids, so a scenario repeats exactly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

from fleet.emulator.sizes import DEFAULT_CORE_LIMIT, FAMILIES, REGIONAL_CORES, VM_SIZES, size_of
from models.fleet import (
    CustomMetrics,
    DataDisk,
    ExtensionSpec,
    ExtensionView,
    FaultSpec,
    FleetOperation,
    GalleryImageVersion,
    HealthProbe,
    HealthState,
    InstanceExtension,
    InstanceRecord,
    InstanceView,
    OperationError,
    OperationKind,
    OperationStatus,
    OsDisk,
    ScaleSetSpec,
    ScaleSetView,
)
from models.health import Mode, interpret
from models.image import LATEST, ImageReference
from models.sorting import natural_key

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "fleet-emulator"
PROVIDER = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute"
ALL_REGIONS = "*"
# What an instance's application is doing, as its health endpoint shows it: one of the health
# states it can answer (Healthy, Unhealthy, Unknown: an error answer) or DOWN (not listening:
# stopped for an operation, booting, deleted).
AppState = str
DOWN = "Down"
APP_STATES = (HealthState.HEALTHY.value, HealthState.UNHEALTHY.value, HealthState.UNKNOWN.value, DOWN)
# The Application Health extension every scale set has (its settings: ScaleSetSpec.extension).
HEALTH_EXTENSION = "HealthExtension"
HEALTH_PUBLISHER = "Microsoft.ManagedServices"
HEALTH_TYPE = "ApplicationHealthLinux"
# What Azure says when an extension's handler fails to install or enable.
EXTENSION_ERROR = "VMExtensionProvisioningError"
# Where an instance is placed: zone, update domain, fault domain.
Placement = tuple[str | None, int, int]
# provisioningState of an instance busy with an operation of this kind (else Updating).
BUSY_STATES = {OperationKind.CREATE.value: "Creating", OperationKind.DELETE.value: "Deleting"}


class EndpointAnswer(NamedTuple):
    """An instance endpoint's answer: status None means no connection (refused)."""

    status: int | None
    body: str
    content_type: str = "text/plain"


@functools.lru_cache(maxsize=256)
def _parsed_spec(text: str) -> ScaleSetSpec:
    """Every ARM call reads its scale set's spec; parse each stored text once. Callers never
    change a spec in place (they model_copy it), so sharing one is safe."""
    return ScaleSetSpec.model_validate_json(text)


class CloudError(Exception):
    """An Azure-style error answer: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def draw(*keys: object) -> float:
    """A uniform number in [0, 1) fixed by its keys."""
    digest = hashlib.sha256("|".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def within(bounds: list[float], *keys: object) -> float:
    low, high = bounds
    return low + (high - low) * draw(*keys)


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def definition_key(image: ImageReference) -> str:
    return "|".join(image.definition)


def resource_id(name: str) -> str:
    return f"{PROVIDER}/virtualMachineScaleSets/{name}"


def disk_id(disk: str) -> str:
    return f"{PROVIDER}/disks/{disk}"


def extension_version_matches(entry: str, publisher: str, type_: str, name: str, version: str) -> bool:
    """A FaultSpec extension entry ("<publisher>.<type>:<version>", "<type>:<version>" or
    "<name>:<version>", case-insensitive) names this version; major.minor names every patch."""
    key, _, wanted = entry.rpartition(":")
    if not key or not wanted:
        return False
    if key.lower() not in (f"{publisher}.{type_}".lower(), type_.lower(), name.lower()):
        return False
    return version == wanted or version.startswith(wanted + ".")


def health_extension_version(spec: ScaleSetSpec) -> str:
    """The Application Health extension's installed version: rich states came with 2.0."""
    return "2.0.12" if spec.extension.rich else "1.0.6"


def instance_name(spec: ScaleSetSpec, ordinal: int) -> str:
    """Uniform: the instance id "0", "1"...; Flexible: the VM's name `{vmss}_{8 hex}`, stable
    per ordinal (and, as in Azure, the id a Flexible instance goes by)."""
    if spec.orchestration_mode == "Uniform":
        return str(ordinal)
    return f"{spec.name}_{hashlib.sha256(f'{spec.name}|{ordinal}'.encode()).hexdigest()[:8]}"


class Cloud:
    def __init__(self, db: sqlite3.Connection, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        # Scripted answers of health endpoints, one per probe (tests only; not persisted).
        self.probe_answers: dict[tuple[str, str], list[AppState]] = {}
        # What each instance's Application Health extension reports, by (set, instance, boot):
        # the state it reports, the state its last answers agree on and how many in a row. It
        # changes its report only after numberOfProbes answers in a row agree (not persisted:
        # a restarted emulator's extensions start over, as after a reboot).
        self.extension_reports: dict[tuple[str, str, str], tuple[HealthProbe, HealthState, int]] = {}

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- scale sets -------------------------------------------------------------------------

    def spec(self, name: str) -> ScaleSetSpec:
        row = self.db.execute("SELECT spec FROM scale_sets WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise CloudError(404, "ResourceNotFound", f"scale set {name!r} was not found")
        return _parsed_spec(row["spec"])

    def scale_set_names(self) -> list[str]:
        return [r["name"] for r in self.db.execute("SELECT name FROM scale_sets ORDER BY name")]

    def create_scale_set(self, spec: ScaleSetSpec) -> ScaleSetView:
        """Create (or replace) a scale set with every instance booted on the model's image: its
        exact version (published on the way, if new), or what 'latest' is in its region now."""
        image = spec.image_reference
        now = self.clock()
        if size_of(spec.vm_size) is None:
            raise CloudError(
                400,
                "InvalidParameter",
                f"vmSize: must be one of {', '.join(VM_SIZES)} (got {spec.vm_size!r})",
            )
        if image.version == LATEST:
            image = self.resolve_image(image, spec.location)  # the model keeps saying 'latest'
        with self._transaction():
            self._delete(spec.name)
            self._publish(image.at_version(image.resolved_version), [ALL_REGIONS], False, now, replace=False)
            self.db.execute(
                "INSERT INTO scale_sets (name, spec, created_at) VALUES (?, ?, ?)",
                (spec.name, spec.model_dump_json(), now),
            )
            for ordinal in range(spec.capacity):
                self._add_instance(spec, ordinal, image, healthy=True, ready_at=0.0, now=now)
        return self.scale_set_view(spec.name)

    def _add_instance(
        self,
        spec: ScaleSetSpec,
        ordinal: int,
        image: ImageReference,
        *,
        healthy: bool,
        ready_at: float,
        now: float,
        placement: Placement | None = None,
        creating: bool = False,
    ) -> str:
        """Place instance `ordinal` where `placement` says; by default zones round-robin, then
        update and fault domains in turn within its zone. Its id. `creating`: an operation
        provisions it (its record's provisioned and ready times come then)."""
        zones: Sequence[str | None] = spec.zones or [None]
        instance_id = instance_name(spec, ordinal)
        within_zone = ordinal // len(zones)
        zone, update_domain, fault_domain = placement or (
            zones[ordinal % len(zones)],
            within_zone % spec.update_domain_count,
            within_zone % spec.fault_domain_count,
        )
        disk = f"{spec.name}-{instance_id}-osdisk-0"
        data_disks = [
            DataDisk(lun=lun, name=f"{spec.name}-{instance_id}-data-{lun}", disk_size_gb=128)
            for lun in range(spec.data_disks_per_instance)
        ]
        self.db.execute(
            "INSERT INTO os_disks VALUES (?, ?, ?, ?, ?, ?)",
            (disk, spec.name, instance_id, image.model_dump_json(), int(healthy), now),
        )
        self.db.execute(
            "INSERT INTO instances (scale_set, instance_id, ordinal, zone, update_domain,"
            " fault_domain, os_disk, data_disks, ready_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                spec.name,
                instance_id,
                ordinal,
                zone,
                update_domain,
                fault_domain,
                disk,
                json.dumps([d.to_json() for d in data_disks]),
                ready_at,
            ),
        )
        provisioned = None if creating else now
        self.db.execute(
            "INSERT OR REPLACE INTO instance_records (scale_set, instance_id, zone, created_at,"
            " provisioned_at, ready_at) VALUES (?, ?, ?, ?, ?, ?)",
            (spec.name, instance_id, zone, now, provisioned, provisioned and max(ready_at, now)),
        )
        for extension in spec.extensions:
            version = self._initial_extension_version(spec, extension, now)
            self.db.execute(
                "INSERT OR REPLACE INTO instance_extensions (scale_set, instance_id, name, publisher,"
                " type, version, status, changed_at) VALUES (?, ?, ?, ?, ?, ?, 'succeeded', ?)",
                (spec.name, instance_id, extension.name, extension.publisher, extension.type_, version, now),
            )
        return instance_id

    def _initial_extension_version(self, spec: ScaleSetSpec, extension: ExtensionSpec, now: float) -> str:
        """What a new instance gets: the newest published patch of typeHandlerVersion's
        major.minor (autoUpgradeMinorVersion: the newest minor of its major); a version nobody
        published yet is published on the way (everywhere), as create publishes its image."""
        wanted = extension.type_handler_version
        found = self.resolve_extension_version(
            extension.publisher,
            extension.type_,
            wanted,
            spec.location,
            newest_minor=extension.auto_upgrade_minor_version,
        )
        if found is not None:
            return found
        exact = wanted if wanted.count(".") >= 2 else f"{wanted}.0"
        self.publish_extension_version(extension.publisher, extension.type_, exact, [ALL_REGIONS])
        return exact

    def scale_out(self, name: str, count: int, image: ImageReference | None = None) -> ScaleSetView:
        """Add `count` instances, placed as create places them, with ids continuing the
        ordinals (never reusing a deleted instance's id). They boot on the scale set model's
        image, or on `image` (resolved in the scale set's region; 'latest' allowed)."""
        spec = self.spec(name)
        if not 1 <= count <= 1000:
            raise CloudError(400, "InvalidParameter", f"count: must be from 1 to 1000 (got {count})")
        if spec.capacity + count > 10_000:
            raise CloudError(
                400, "InvalidParameter", f"capacity would exceed 10000 ({spec.capacity} + {count})"
            )
        model_image = spec.image_reference
        wanted = model_image if image is None else image
        target = wanted if wanted.version != LATEST else self.resolve_image(wanted, spec.location)
        on_model = target.same_image(model_image)
        first = self._next_ordinal(name)
        now = self.clock()
        grown = spec.model_copy(update={"capacity": spec.capacity + count})
        with self._transaction():
            for ordinal in range(first, first + count):
                instance_id = instance_name(spec, ordinal)
                boot = within(spec.timing.boot_seconds, spec.seed, "boot", "scale-out", instance_id)
                healthy = on_model or self._healthy_on(spec, instance_id, target)
                self._add_instance(grown, ordinal, target, healthy=healthy, ready_at=now + boot, now=now)
            self.db.execute("UPDATE scale_sets SET spec = ? WHERE name = ?", (grown.model_dump_json(), name))
        return self.scale_set_view(name)

    def _next_ordinal(self, name: str) -> int:
        """Every instance ever placed keeps its first OS disk: their count is the next ordinal
        (so a deleted instance's id is never used again)."""
        row = self.db.execute(
            "SELECT COUNT(DISTINCT instance_id) FROM os_disks WHERE scale_set = ?", (name,)
        ).fetchone()
        return int(row[0])

    def _delete(self, name: str) -> None:
        tables = (
            "instances",
            "os_disks",
            "operations",
            "instance_extensions",
            "configuration_assignments",
            "instance_records",
        )
        for table in tables:
            self.db.execute(f"DELETE FROM {table} WHERE scale_set = ?", (name,))
        self.db.execute("DELETE FROM scale_sets WHERE name = ?", (name,))
        for key in [key for key in self.probe_answers if key[0] == name]:
            del self.probe_answers[key]
        for report in [report for report in self.extension_reports if report[0] == name]:
            del self.extension_reports[report]

    def delete_scale_set(self, name: str) -> None:
        self.spec(name)
        with self._transaction():
            self._delete(name)

    def set_faults(self, name: str, faults: FaultSpec) -> None:
        spec = self.spec(name).model_copy(update={"faults": faults})
        self.db.execute("UPDATE scale_sets SET spec = ? WHERE name = ?", (spec.model_dump_json(), name))

    def delete_instance(self, name: str, instance_id: str) -> None:
        """The instance vanishes at once, from outside (no operation)."""
        self._instance(name, instance_id)
        with self._transaction():
            self._remove_instance(name, instance_id, self.clock())

    def _remove_instance(self, name: str, instance_id: str, when: float) -> None:
        self.db.execute("DELETE FROM instances WHERE scale_set = ? AND instance_id = ?", (name, instance_id))
        self.db.execute(
            "DELETE FROM instance_extensions WHERE scale_set = ? AND instance_id = ?", (name, instance_id)
        )
        self.db.execute(
            "UPDATE instance_records SET delete_started_at = COALESCE(delete_started_at, ?), deleted_at = ?"
            " WHERE scale_set = ? AND instance_id = ?",
            (when, when, name, instance_id),
        )
        self.probe_answers.pop((name, instance_id), None)

    def force_health(self, name: str, instance_id: str, state: HealthState | None) -> None:
        self._instance(name, instance_id)
        self.db.execute(
            "UPDATE instances SET forced_health = ? WHERE scale_set = ? AND instance_id = ?",
            (state.value if state else None, name, instance_id),
        )

    def scale_set_view(
        self, name: str, *, probe: bool = False, offset: int = 0, limit: int = -1
    ) -> ScaleSetView:
        """The scale set and its instances (`limit` of them from `offset`: one page of a list, so
        a list costs one render an instance, not one a page). `probe`: health as the extension's
        probe answers now, consuming scripted answers (ARM reads); else as the state says."""
        self.settle()
        spec = self.spec(name)
        rows = self.db.execute(
            "SELECT i.*, d.image, d.app_healthy FROM instances i JOIN os_disks d "
            "ON d.name = i.os_disk WHERE i.scale_set = ? ORDER BY i.ordinal LIMIT ? OFFSET ?",
            (name, limit, offset),
        ).fetchall()
        installed = self._installed_extensions(name)
        return ScaleSetView(
            name=name,
            id=resource_id(name),
            location=spec.location,
            zones=spec.zones,
            image_reference=spec.image_reference,
            orchestration_mode=spec.orchestration_mode,
            upgrade_mode=spec.upgrade_mode,
            automatic_os_upgrade=spec.automatic_os_upgrade,
            rolling_upgrade_policy=spec.rolling_upgrade_policy,
            instances=[self._instance_view(spec, row, probe, installed) for row in rows],
            extensions=self.model_extensions(spec),
            vm_size=spec.vm_size,
            capacity=self.capacity(name),
        )

    @staticmethod
    def model_extensions(spec: ScaleSetSpec) -> list[ExtensionView]:
        """The model's extensionProfile: the Application Health extension, then the others."""
        health = ExtensionView(
            name=HEALTH_EXTENSION,
            publisher=HEALTH_PUBLISHER,
            type_=HEALTH_TYPE,
            type_handler_version="2.0" if spec.extension.rich else "1.0",
            auto_upgrade_minor_version=True,
        )
        others = [ExtensionView.model_validate(e.to_json()) for e in spec.extensions]
        return [health, *others] if spec.has_health_extension else others

    def _installed_extensions(
        self, name: str, instance_id: str | None = None
    ) -> dict[str, list[sqlite3.Row]]:
        """Installed extensions by instance id (every instance of the set, or one)."""
        query, args = "SELECT * FROM instance_extensions WHERE scale_set = ?", [name]
        if instance_id is not None:
            query, args = query + " AND instance_id = ?", [name, instance_id]
        installed: dict[str, list[sqlite3.Row]] = {}
        for row in self.db.execute(query + " ORDER BY name", args):
            installed.setdefault(row["instance_id"], []).append(row)
        return installed

    def _busy_kind(self, row: sqlite3.Row) -> str | None:
        """The kind of the operation the instance is busy with, if any."""
        if not row["busy_operation"]:
            return None
        kind = self.db.execute(
            "SELECT kind FROM operations WHERE operation_id = ?", (row["busy_operation"],)
        ).fetchone()
        return str(kind[0]) if kind else OperationKind.RESTART.value

    def _stopped(self, row: sqlite3.Row) -> bool:
        """The instance is deallocated, or stopped for an operation (an extension install leaves
        it running)."""
        if row["deallocated"]:
            return True
        kind = self._busy_kind(row)
        return kind is not None and kind != OperationKind.INSTALL_EXTENSION.value

    def _power_state(self, row: sqlite3.Row, now: float) -> str:
        """PowerState/… as the instance view shows it."""
        kind = self._busy_kind(row)
        if kind == OperationKind.DEALLOCATE.value:
            return "deallocating"
        if kind in (OperationKind.START.value, OperationKind.CREATE.value):
            return "starting"
        if kind == OperationKind.DELETE.value:
            return "stopping"
        if row["deallocated"]:
            return "deallocated"  # an OS disk swap in flight too: the VM stays deallocated
        if self._stopped(row):
            return "stopped"
        return "starting" if now < row["ready_at"] else "running"

    def instance_count(self, name: str) -> int:
        self.spec(name)
        row = self.db.execute("SELECT COUNT(*) FROM instances WHERE scale_set = ?", (name,)).fetchone()
        return int(row[0])

    def instance_view(self, name: str, instance_id: str, *, probe: bool = False) -> InstanceView:
        self.settle()
        return self._instance_view(self.spec(name), self._instance(name, instance_id), probe)

    def etag(self, name: str) -> int:
        self.spec(name)
        return int(self.db.execute("SELECT etag FROM scale_sets WHERE name = ?", (name,)).fetchone()[0])

    def flexible_scale_set_of(self, vm_name: str) -> str:
        """The Flexible scale set a VM belongs to (404 NotFound when there is none)."""
        for row in self.db.execute("SELECT scale_set FROM instances WHERE instance_id = ?", (vm_name,)):
            if self.spec(row["scale_set"]).orchestration_mode == "Flexible":
                return str(row["scale_set"])
        raise CloudError(404, "ResourceNotFound", f"virtual machine {vm_name!r} was not found")

    def _instance(self, name: str, instance_id: str) -> sqlite3.Row:
        self.spec(name)
        row: sqlite3.Row | None = self.db.execute(
            "SELECT i.*, d.image, d.app_healthy FROM instances i JOIN os_disks d "
            "ON d.name = i.os_disk WHERE i.scale_set = ? AND i.instance_id = ?",
            (name, instance_id),
        ).fetchone()
        if row is None:
            raise CloudError(404, "NotFound", f"instance {name}/{instance_id} was not found")
        return row

    def _instance_view(
        self,
        spec: ScaleSetSpec,
        row: sqlite3.Row,
        probe: bool = False,
        installed: dict[str, list[sqlite3.Row]] | None = None,
    ) -> InstanceView:
        image = ImageReference.model_validate_json(row["image"])
        now = self.clock()
        if installed is None:
            installed = self._installed_extensions(spec.name, row["instance_id"])
        provisioning = "Failed" if row["error_code"] else "Succeeded"
        if kind := self._busy_kind(row):
            provisioning = BUSY_STATES.get(kind, "Updating")
        power = self._power_state(row, now)
        if probe:
            reading = self._probe(spec, row, consume=True)
            health, metrics = reading.state, reading.custom_metrics
        else:
            health = self._health(spec, row)[0]
            metrics = spec.custom_metrics.get(row["instance_id"], CustomMetrics())
        flexible = spec.orchestration_mode == "Flexible"
        return InstanceView(
            instance_id=row["instance_id"],
            vm_name=row["instance_id"] if flexible else f"{spec.name}_{row['instance_id']}",
            restore_point=disk_id(row["os_disk"]) if flexible else str(image),
            error_code=row["error_code"],
            zone=row["zone"],
            platform_update_domain=row["update_domain"],
            platform_fault_domain=row["fault_domain"],
            image_reference=image,
            os_disk=OsDisk(name=row["os_disk"], image_reference=image),
            data_disks=[DataDisk.model_validate(d) for d in json.loads(row["data_disks"])],
            provisioning_state=provisioning,
            power_state=power,
            health=health,
            custom_metrics=metrics,
            extensions=[
                *(
                    [
                        InstanceExtension(
                            name=HEALTH_EXTENSION,
                            type_=f"{HEALTH_PUBLISHER}.{HEALTH_TYPE}",
                            type_handler_version=health_extension_version(spec),
                        )
                    ]
                    if spec.has_health_extension
                    else []
                ),
                *(self._installed_view(e) for e in installed.get(row["instance_id"], [])),
            ],
        )

    @staticmethod
    def _installed_view(row: sqlite3.Row) -> InstanceExtension:
        status, message = {
            "succeeded": ("ProvisioningState/succeeded", None),
            "transitioning": ("ProvisioningState/transitioning", "installing"),
        }.get(row["status"], (f"ProvisioningState/failed/{row['error_code'] or 1}", "Enable failed"))
        if row["status"] == "failed":
            message = (
                f"Enable failed: version {row['version']} of {row['publisher']}.{row['type']} "
                f"exited with an error ({row['error_code']})"
            )
        return InstanceExtension(
            name=row["name"],
            type_=f"{row['publisher']}.{row['type']}",
            type_handler_version=row["version"],
            status=status,
            message=message,
            time=datetime.fromtimestamp(row["changed_at"], UTC) if row["changed_at"] is not None else None,
        )

    # --- health -----------------------------------------------------------------------------

    def _health(self, spec: ScaleSetSpec, row: sqlite3.Row) -> tuple[HealthState, str]:
        """What the Application Health extension on the instance reports, without consuming a
        scripted answer (admin reads)."""
        reading = self._probe(spec, row, consume=False)
        return reading.state, reading.detail or ""

    def _probe(self, spec: ScaleSetSpec, row: sqlite3.Row, consume: bool) -> HealthProbe:
        """One probe of the instance's application by its Application Health extension, read
        as the extension reads it (models.health.interpret with the extension's settings). The
        extension itself says unknown while the VM is stopped and initializing while it boots."""
        if self._busy_kind(row) == OperationKind.CREATE.value:
            return HealthProbe(state=HealthState.INITIALIZING, detail="the instance is being created")
        if self._stopped(row):
            return HealthProbe(state=HealthState.UNKNOWN, detail="the instance is stopped for an operation")
        if self.clock() < row["ready_at"]:
            return HealthProbe(state=HealthState.INITIALIZING, detail="the instance is booting")
        if row["forced_health"] == HealthState.INITIALIZING.value:
            return HealthProbe(state=HealthState.INITIALIZING, detail="health set from outside")
        extension = spec.extension
        answer = self._answer(spec, row, self._app_state(spec, row, consume), tcp=extension.protocol == "tcp")
        mode: Mode = "rich" if extension.rich else "binary"
        probe = interpret(extension.protocol, mode, answer.status, answer.body)
        if extension.number_of_probes == 1:
            return probe
        return self._extension_report(spec, row, probe, consume)

    def _extension_report(
        self, spec: ScaleSetSpec, row: sqlite3.Row, probe: HealthProbe, consume: bool
    ) -> HealthProbe:
        """What the extension reports after this answer: its report changes only once
        numberOfProbes answers in a row agree (Initializing until the first such run)."""
        key = (spec.name, row["instance_id"], f"{row['os_disk']}@{row['ready_at']}")  # each boot anew
        starting = HealthProbe(
            state=HealthState.INITIALIZING, detail="the extension is still counting answers"
        )
        reported, agreed, run = self.extension_reports.get(key, (starting, probe.state, 0))
        if not consume:
            return reported
        run = run + 1 if probe.state == agreed else 1
        if run >= spec.extension.number_of_probes:
            reported = probe
        self.extension_reports[key] = (reported, probe.state, run)
        return reported

    def load_balancer_answers(self, name: str) -> list[tuple[InstanceView, HealthProbe]]:
        """Every instance as the set's load balancer health probe sees it now (one probe each,
        consuming scripted answers): a probe reads answers as binary, whatever the body says;
        an instance stopped or booting does not answer."""
        view = self.scale_set_view(name)
        spec, answers = self.spec(name), []
        extension = spec.extension
        for instance in view.instances:
            row = self._instance(name, instance.instance_id)
            app = self._app_state(spec, row, consume=True)
            answer = self._answer(spec, row, app, tcp=extension.protocol == "tcp")
            reading = interpret(extension.protocol, "binary", answer.status, answer.body)
            answers.append((instance, reading.model_copy(update={"detail": answer.body or app[1]})))
        return answers

    def set_probe_answers(self, name: str, instance_id: str, answers: list[AppState]) -> None:
        """Script the next answers of an instance's endpoint, one per probe; once they are used
        up it answers from the instance's state again."""
        self._instance(name, instance_id)
        unknown = [a for a in answers if a not in APP_STATES]
        if unknown:
            raise CloudError(
                400,
                "InvalidParameter",
                f"answers: each must be one of {', '.join(APP_STATES)} (got {unknown})",
            )
        self.probe_answers[(name, instance_id)] = list(answers)

    def _app_state(self, spec: ScaleSetSpec, row: sqlite3.Row, consume: bool) -> tuple[AppState, str]:
        script = self.probe_answers.get((spec.name, row["instance_id"]))
        if script:
            return (script.pop(0) if consume else script[0]), "a scripted answer"
        if self._stopped(row):
            return DOWN, "the instance is stopped for an operation"
        if self.clock() < row["ready_at"]:
            return DOWN, "the instance is booting"
        if row["forced_health"]:
            state = HealthState(row["forced_health"])
            # Initializing is the extension's own state; the application is not answering yet.
            return (DOWN if state == HealthState.INITIALIZING else state.value), "health set from outside"
        if broken := self._breaking_extension(spec, row):
            return HealthState.UNHEALTHY.value, broken
        if row["app_healthy"]:
            return HealthState.HEALTHY.value, "the application answers"
        return HealthState.UNHEALTHY.value, "the application fails its health check"

    def _breaking_extension(self, spec: ScaleSetSpec, row: sqlite3.Row) -> str | None:
        """Why an installed extension version breaks the application (unhealthyExtensionVersions)."""
        entries = spec.faults.unhealthy_extension_versions
        if not entries:
            return None
        for ext in self._installed_extensions(spec.name, row["instance_id"]).get(row["instance_id"], []):
            if ext["status"] != "succeeded":
                continue
            if any(
                extension_version_matches(entry, ext["publisher"], ext["type"], ext["name"], ext["version"])
                for entry in entries
            ):
                return f"extension {ext['name']} version {ext['version']} breaks the application"
        return None

    def app_health(self, name: str, instance_id: str, path: str = "health") -> EndpointAnswer:
        """The instance's health endpoint, answering as the scale set's `appEndpoint` says.

        - rich: 200 with `{"ApplicationHealthState": "Healthy" | "Unhealthy"}` (plus the custom
          metrics as a JSON string, and a `detail`); an application in error answers 500.
        - binary: 200 with a plain `OK` when healthy, 503 otherwise (load-balancer style).
        - a TCP probe (path `tcp/<port>`): the port accepts the connection (200, empty) only
          while the application is healthy; an unhealthy one is emulated as not listening.
        - an instance that is stopped, booting or gone: no connection (status None), which
          the HTTP layer sends as 502 with the header `X-Emulated-Connection: refused`.
        """
        self.settle()
        spec = self.spec(name)
        try:
            row = self._instance(name, instance_id)
        except CloudError:
            return EndpointAnswer(None, "no such instance")
        return self._answer(spec, row, self._app_state(spec, row, True), tcp=path.startswith("tcp/"))

    @staticmethod
    def _answer(spec: ScaleSetSpec, row: sqlite3.Row, app: tuple[AppState, str], tcp: bool) -> EndpointAnswer:
        state, detail = app
        instance_id = row["instance_id"]
        if state == DOWN:
            return EndpointAnswer(None, detail)
        healthy = state == HealthState.HEALTHY.value
        if tcp:
            return EndpointAnswer(200, "") if healthy else EndpointAnswer(None, detail)
        # The application answers as it is written (appEndpoint); the extension may read it
        # otherwise (a binary endpoint probed with rich states is never Healthy).
        if spec.app_endpoint == "binary":
            return EndpointAnswer(200, "OK") if healthy else EndpointAnswer(503, "Service Unavailable")
        if state == HealthState.UNKNOWN.value:
            return EndpointAnswer(500, f"Internal Server Error: {detail}")
        body: dict[str, Any] = {"ApplicationHealthState": state, "detail": detail}
        if metrics := spec.custom_metrics.get(instance_id):
            body["customMetrics"] = json.dumps({"rollingUpgrade": metrics.to_json()})
        return EndpointAnswer(200, json.dumps(body), "application/json")

    @staticmethod
    def _healthy_on(spec: ScaleSetSpec, instance_id: str, image: ImageReference) -> bool:
        """Whether the application comes up healthy on a freshly written OS disk."""
        faults = spec.faults
        if image.resolved_version in faults.unhealthy_images or str(image) in faults.unhealthy_images:
            return False
        if instance_id in faults.unhealthy_after_upgrade and not image.same_image(spec.image_reference):
            return False  # healthy again once back on the image it was created with
        share = draw(spec.seed, "unhealthy", instance_id, image.resolved_version)
        return share >= faults.unhealthy_share

    # --- image gallery ----------------------------------------------------------------------

    def _publish(
        self,
        image: ImageReference,
        regions: list[str],
        exclude: bool,
        now: float,
        replace: bool,
        end_of_life: str | None = None,
        excluded_regions: list[str] | None = None,
    ) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        self.db.execute(
            f"{verb} INTO images (definition, version, image, regions, exclude_from_latest,"
            " published_at, end_of_life, excluded_regions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                definition_key(image),
                image.resolved_version,
                image.model_dump_json(),
                json.dumps(regions),
                int(exclude),
                now,
                end_of_life,
                json.dumps(excluded_regions or []),
            ),
        )

    def publish_image(
        self,
        image: ImageReference,
        regions: list[str],
        exclude_from_latest: bool,
        end_of_life: str | None = None,
        excluded_regions: list[str] | None = None,
    ) -> GalleryImageVersion:
        """Publish a version; `excluded_regions`: target regions where it is excluded from
        latest (Azure's per-region excludeFromLatest); `end_of_life`: its endOfLifeDate."""
        if image.version == LATEST:
            raise CloudError(400, "InvalidParameter", "publish an exact version, not 'latest'")
        if image.id is None and (exclude_from_latest or excluded_regions):
            # Azure's Marketplace lists every version an offer has: excludeFromLatest is a
            # property of gallery image versions only, so 'latest' would take it anyway.
            raise CloudError(
                400,
                "InvalidParameter",
                f"excludeFromLatest: {image} is a Marketplace image; only gallery image versions "
                "can be excluded from latest",
            )
        exact = image.at_version(image.version)
        self._publish(exact, regions, exclude_from_latest, self.clock(), True, end_of_life, excluded_regions)
        return self._gallery_version(self._image_row(exact))

    def image_rows(self, definition: str) -> list[sqlite3.Row]:
        """Every version of one image definition (definition_key), oldest published first."""
        return self.db.execute(
            "SELECT * FROM images WHERE definition = ? ORDER BY published_at, version", (definition,)
        ).fetchall()

    # --- extension versions -----------------------------------------------------------------

    def publish_extension_version(self, publisher: str, type_: str, version: str, regions: list[str]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO extension_versions VALUES (?, ?, ?, ?)",
            (publisher, type_, version, json.dumps(regions)),
        )

    def extension_versions(self, publisher: str, type_: str, location: str) -> list[str]:
        """The versions published in `location`, in numeric order."""
        rows = self.db.execute(
            "SELECT * FROM extension_versions WHERE lower(publisher) = lower(?) AND lower(type) = lower(?)",
            (publisher, type_),
        ).fetchall()
        regions = [(r["version"], [w.lower() for w in json.loads(r["regions"])]) for r in rows]
        found = [v for v, where in regions if ALL_REGIONS in where or location.lower() in where]
        return sorted(found, key=natural_key)

    def all_extension_versions(self) -> list[dict[str, Any]]:
        """Every published extension version: {publisher, type, version, regions}."""
        rows = self.db.execute("SELECT * FROM extension_versions ORDER BY publisher, type").fetchall()
        documents = [
            {
                "publisher": r["publisher"],
                "type": r["type"],
                "version": r["version"],
                "regions": json.loads(r["regions"]),
            }
            for r in rows
        ]
        return sorted(documents, key=lambda d: (d["publisher"], d["type"], natural_key(d["version"])))

    def resolve_extension_version(
        self, publisher: str, type_: str, wanted: str, location: str, *, newest_minor: bool = False
    ) -> str | None:
        """The exact version to install in `location`: `wanted` itself when it is a published
        major.minor.patch; for a major.minor, its newest published patch (newest_minor: the newest
        version of its major from that minor on); None when nothing published fits."""
        published = self.extension_versions(publisher, type_, location)
        if wanted in published and wanted.count(".") >= 2:
            return wanted
        parts = wanted.split(".")
        major, minor = parts[0], int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

        def fits(version: str) -> bool:
            have = version.split(".")
            if have[0] != major or len(have) < 2 or not have[1].isdigit():
                return False
            return int(have[1]) >= minor if newest_minor else int(have[1]) == minor

        candidates = [v for v in published if fits(v)]
        return max(candidates, key=natural_key) if candidates else None

    @staticmethod
    def _names(entry: str, publisher: str, type_: str, names: set[str], version: str) -> bool:
        return any(
            extension_version_matches(entry, publisher, type_, extension, version)
            for extension in names | {type_}
        )

    def fix_extension_version(self, publisher: str, type_: str, version: str) -> list[str]:
        """The publisher fixes a version: every scale set's faults stop naming it (it installs
        and runs well from now on). The scale sets whose faults changed."""
        changed = []
        for name in self.scale_set_names():
            spec = self.spec(name)
            faults = spec.faults
            names = {
                e.name
                for e in spec.extensions
                if (e.publisher.lower(), e.type_.lower()) == (publisher.lower(), type_.lower())
            }

            failing = [
                e
                for e in faults.failing_extension_versions
                if not self._names(e, publisher, type_, names, version)
            ]
            unhealthy = [
                e
                for e in faults.unhealthy_extension_versions
                if not self._names(e, publisher, type_, names, version)
            ]
            if (failing, unhealthy) != (
                faults.failing_extension_versions,
                faults.unhealthy_extension_versions,
            ):
                update = {"failing_extension_versions": failing, "unhealthy_extension_versions": unhealthy}
                self.set_faults(name, faults.model_copy(update=update))
                changed.append(name)
        return changed

    def _image_row(self, image: ImageReference) -> sqlite3.Row:
        """The row of a version just published (so there is one)."""
        row: sqlite3.Row = self.db.execute(
            "SELECT * FROM images WHERE definition = ? AND version = ?",
            (definition_key(image), image.resolved_version),
        ).fetchone()
        return row

    @staticmethod
    def _gallery_version(row: sqlite3.Row) -> GalleryImageVersion:
        return GalleryImageVersion(
            image_reference=ImageReference.model_validate_json(row["image"]),
            regions=json.loads(row["regions"]),
            exclude_from_latest=bool(row["exclude_from_latest"]),
            published_date=row["published_at"],
        )

    def images(self) -> list[GalleryImageVersion]:
        rows = self.db.execute("SELECT * FROM images ORDER BY definition").fetchall()
        versions = [self._gallery_version(row) for row in rows]
        return sorted(
            versions,
            key=lambda v: (v.image_reference.definition, natural_key(v.image_reference.resolved_version)),
        )

    def resolve_image(self, image: ImageReference, location: str) -> ImageReference:
        """The exact version to install in `location`; 'latest' is the newest replicated there."""
        rows = self.db.execute(
            "SELECT * FROM images WHERE definition = ?", (definition_key(image),)
        ).fetchall()
        if not rows:
            raise CloudError(404, "ImageNotFound", f"image {image} is not in the gallery")

        def replicated(row: sqlite3.Row) -> bool:
            regions = json.loads(row["regions"])
            return ALL_REGIONS in regions or location in regions

        if image.version == LATEST:
            candidates = [
                r
                for r in rows
                if not r["exclude_from_latest"] and location not in json.loads(r["excluded_regions"])
            ]
            if not candidates:
                known = ", ".join(sorted((r["version"] for r in rows), key=natural_key))
                raise CloudError(
                    404,
                    "ImageNotFound",
                    f"every version of {image} is excluded from latest (versions: {known}); "
                    "ask for an exact version",
                )
            usable = [r for r in candidates if replicated(r)]
            if not usable:
                raise CloudError(
                    409,
                    "ImageNotReplicatedToRegion",
                    f"no version of {image} that may be 'latest' is replicated to {location}",
                )
            newest = max(usable, key=lambda r: natural_key(r["version"]))
            return image.at_version(newest["version"])
        row = next((r for r in rows if r["version"] == image.version), None)
        if row is None:
            known = ", ".join(sorted((r["version"] for r in rows), key=natural_key))
            raise CloudError(404, "ImageNotFound", f"image {image} is not in the gallery (versions: {known})")
        if not replicated(row):
            raise CloudError(
                409,
                "ImageNotReplicatedToRegion",
                f"image {image} is not replicated to {location} "
                f"(replicated to: {', '.join(json.loads(row['regions']))})",
            )
        return image.at_version(image.version)

    # --- long-running operations ------------------------------------------------------------

    def begin_reimage(
        self,
        name: str,
        instance_id: str,
        image: ImageReference | None = None,
        arm_operation: str | None = None,
    ) -> FleetOperation:
        """Write a new OS disk from `image` (resolved in the set's region); None: the image the
        instance runs, at its exact version. Every call is a new operation (no deduplication)."""
        self.settle()
        spec = self.spec(name)
        instance = self._idle_instance(name, instance_id)
        if image is None:
            current = ImageReference.model_validate_json(instance["image"])
            image = current.at_version(current.resolved_version)
        exact = self.resolve_image(image, spec.location)
        operation_id = str(uuid.uuid4())
        seconds = within(spec.timing.reimage_seconds, spec.seed, "reimage", instance_id, operation_id)
        return self._begin(
            operation_id,
            OperationKind.REIMAGE,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            image=exact,
            error_code=spec.faults.operation_errors.get(instance_id),
            arm_operation=arm_operation,
        )

    def begin_restore(
        self, name: str, instance_id: str, os_disk: str, arm_operation: str | None = None
    ) -> FleetOperation:
        """Swap the instance's OS disk for one it had before (Flexible OS disk swap). As in
        Azure, only while the VM is deallocated: 409 OperationNotAllowed otherwise. The VM stays
        deallocated; a start boots it from the disk swapped in."""
        self.settle()
        spec = self.spec(name)
        instance = self._idle_instance(name, instance_id)
        if not instance["deallocated"]:
            raise CloudError(
                409,
                "OperationNotAllowed",
                f"The OS disk of virtual machine '{instance_id}' cannot be swapped while the VM is "
                f"running: deallocate it first (POST .../virtualMachines/{instance_id}/deallocate), "
                "then swap its OS disk and start it.",
            )
        disk = self.db.execute(
            "SELECT * FROM os_disks WHERE name = ? AND scale_set = ? AND instance_id = ?",
            (os_disk, name, instance_id),
        ).fetchone()
        if disk is None:
            raise CloudError(
                404, "DiskNotFound", f"OS disk {os_disk!r} of instance {name}/{instance_id} was not found"
            )
        operation_id = str(uuid.uuid4())
        seconds = within(spec.timing.restore_seconds, spec.seed, "restore", instance_id, operation_id)
        return self._begin(
            operation_id,
            OperationKind.RESTORE,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            target_disk=os_disk,
            arm_operation=arm_operation,
        )

    def begin_power(
        self, name: str, instance_id: str, kind: OperationKind, arm_operation: str | None = None
    ) -> FleetOperation:
        """Deallocate a VM (stop it and release its host) or start it again (then it boots).
        Every call is a new operation (no deduplication); deallocating a deallocated VM or
        starting a running one changes nothing, as in Azure."""
        if kind not in (OperationKind.DEALLOCATE, OperationKind.START):
            raise ValueError(f"not a power operation: {kind}")
        self.settle()
        spec = self.spec(name)
        instance = self._idle_instance(name, instance_id)
        operation_id = str(uuid.uuid4())
        seconds = within(spec.timing.power_seconds, spec.seed, kind.value, instance_id, operation_id)
        return self._begin(
            operation_id,
            kind,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            target_disk=instance["os_disk"],
            arm_operation=arm_operation,
        )

    def begin_install_extension(
        self,
        name: str,
        instance_id: str,
        extension_name: str,
        version: str,
        *,
        publisher: str | None = None,
        type_: str | None = None,
        arm_operation: str | None = None,
    ) -> FleetOperation:
        """Install `version` of one extension on one instance (PUT/PATCH .../extensions/{name}):
        a published major.minor.patch, or a major.minor (its newest patch in the set's region).
        The instance keeps running; every call is a new install (no deduplication). A version
        in failingExtensionVersions fails (VMExtensionProvisioningError)."""
        self.settle()
        spec = self.spec(name)
        instance = self._idle_instance(name, instance_id)
        if extension_name.lower() == HEALTH_EXTENSION.lower():
            raise CloudError(
                409,
                "OperationNotAllowed",
                f"the emulator's {HEALTH_EXTENSION} follows the scale set's healthExtension settings; "
                "its version cannot be changed per instance",
            )
        current = self.db.execute(
            "SELECT * FROM instance_extensions WHERE scale_set = ? AND instance_id = ?"
            " AND lower(name) = lower(?)",
            (name, instance_id, extension_name),
        ).fetchone()
        model = next((e for e in spec.extensions if e.name.lower() == extension_name.lower()), None)
        if current is not None:
            extension_name, publisher, type_ = current["name"], current["publisher"], current["type"]
        elif model is not None:
            extension_name = model.name
            publisher, type_ = publisher or model.publisher, type_ or model.type_
        if not publisher or not type_:
            raise CloudError(
                404,
                "NotFound",
                f"extension {extension_name!r} of instance {name}/{instance_id} was not found "
                "(a PUT naming its publisher and type adds it)",
            )
        exact = self.resolve_extension_version(publisher, type_, version, spec.location)
        if exact is None:
            known = ", ".join(self.extension_versions(publisher, type_, spec.location)) or "none"
            raise CloudError(
                404,
                "ArtifactNotFound",
                f"version {version} of extension {publisher}.{type_} is not published in {spec.location} "
                f"(published there: {known})",
            )
        failing = any(
            extension_version_matches(entry, publisher, type_, extension_name, exact)
            for entry in spec.faults.failing_extension_versions
        )
        now = self.clock()
        self.db.execute(
            "INSERT INTO instance_extensions (scale_set, instance_id, name, publisher, type, version,"
            " status, changed_at) VALUES (?, ?, ?, ?, ?, ?, 'transitioning', ?)"
            " ON CONFLICT (scale_set, instance_id, name) DO UPDATE SET status = 'transitioning',"
            " changed_at = excluded.changed_at",
            (name, instance_id, extension_name, publisher, type_, exact, now),
        )
        operation_id = str(uuid.uuid4())
        seconds = within(spec.timing.extension_seconds, spec.seed, "extension", instance_id, operation_id)
        return self._begin(
            operation_id,
            OperationKind.INSTALL_EXTENSION,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            error_code=EXTENSION_ERROR if failing else None,
            arm_operation=arm_operation,
            extension=(extension_name, exact),
        )

    def begin_restart(
        self, name: str, instance_id: str, seconds: float, operation_id: str | None = None
    ) -> FleetOperation:
        """An operation started from outside the upgrade (as another tool or the platform
        would): the instance is busy for `seconds`, then boots again on the same OS disk."""
        self.settle()
        instance = self._idle_instance(name, instance_id)
        return self._begin(
            operation_id or str(uuid.uuid4()),
            OperationKind.RESTART,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            target_disk=instance["os_disk"],
        )

    def update_model(self, name: str, image: ImageReference, if_match: str | None = None) -> ScaleSetView:
        """Change the scale set model's image (PATCH); If-Match must name the current etag."""
        spec = self.spec(name)
        etag = self.etag(name)
        if if_match not in (None, "*") and if_match.strip('"W/') != str(etag):
            raise CloudError(
                412, "PreconditionFailed", f'If-Match {if_match} does not match the current etag "{etag}"'
            )
        if image.version != LATEST:
            self.resolve_image(image, spec.location)
        changed = spec.model_copy(update={"image_reference": image})
        self.db.execute(
            "UPDATE scale_sets SET spec = ?, etag = etag + 1 WHERE name = ?",
            (changed.model_dump_json(), name),
        )
        return self.scale_set_view(name)

    def manual_upgrade(self, name: str, instance_ids: list[str], arm_operation: str) -> list[FleetOperation]:
        """Bring instances to the model (POST manualupgrade): a reimage to the model's image for
        each one not on it. Refused as a whole if one is unknown or busy."""
        self.settle()
        spec = self.spec(name)
        target = self.resolve_image(spec.image_reference, spec.location)
        rows = [self._idle_instance(name, instance_id) for instance_id in instance_ids]
        stale = [r for r in rows if not ImageReference.model_validate_json(r["image"]).same_image(target)]
        return [self.begin_reimage(name, r["instance_id"], target, arm_operation) for r in stale]

    # --- capacity (MaxSurge): instances created from the model, deleted by id ----------------

    def _live_instances(self, name: str) -> list[sqlite3.Row]:
        """The set's instances not being deleted, by ordinal."""
        return self.db.execute(
            "SELECT i.* FROM instances i LEFT JOIN operations o ON o.operation_id = i.busy_operation"
            " WHERE i.scale_set = ? AND (o.kind IS NULL OR o.kind != ?) ORDER BY i.ordinal",
            (name, OperationKind.DELETE.value),
        ).fetchall()

    def capacity(self, name: str) -> int:
        """sku.capacity: the set's instances less those being deleted. Azure raises it when it
        accepts a scale-out (the new instances exist at once, Creating) and lowers it when it
        accepts a delete."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM instances i LEFT JOIN operations o ON o.operation_id = i.busy_operation"
            " WHERE i.scale_set = ? AND (o.kind IS NULL OR o.kind != ?)",
            (name, OperationKind.DELETE.value),
        ).fetchone()
        return int(row[0])

    def set_capacity(self, name: str, capacity: int, arm_operation: str) -> list[str]:
        """sku.capacity changed (PATCH or PUT of the set). Raised: new instances from the model,
        once the core quota is checked for all of them. Lowered: the highest ids are deleted.
        Every request acts anew (no deduplication): a resent raise to capacity + N after the
        first took effect changes nothing, but a raise by N computed twice creates 2N. The ids
        created or deleted."""
        self.settle()
        spec = self.spec(name)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 0 <= capacity <= 10_000:
            wrong = f"sku.capacity: must be from 0 to 10000 (got {capacity!r})"
            raise CloudError(400, "InvalidParameter", wrong)
        live = self._live_instances(name)
        if capacity > len(live):
            return self._create_instances(spec, capacity - len(live), arm_operation)
        doomed = [row["instance_id"] for row in reversed(live[capacity:])]
        return self.begin_delete_instances(name, doomed, arm_operation) if doomed else []

    def _create_instances(self, spec: ScaleSetSpec, count: int, arm_operation: str) -> list[str]:
        """New instances on the model's image, ids continuing the sequence, each Creating for a
        reimage's time, then booting; zonal ones where the zones are least filled."""
        self.check_core_quota(spec, count)
        image = self.resolve_image(spec.image_reference, spec.location)
        now, first = self.clock(), self._next_ordinal(spec.name)
        created = []
        with self._transaction():
            for ordinal in range(first, first + count):
                instance_id = instance_name(spec, ordinal)
                self._add_instance(
                    spec,
                    ordinal,
                    image,
                    healthy=self._healthy_on(spec, instance_id, image),
                    ready_at=now,
                    now=now,
                    placement=self._balanced_placement(spec, instance_id),
                    creating=True,
                )
                seconds = within(spec.timing.reimage_seconds, spec.seed, "create", instance_id)
                disk = f"{spec.name}-{instance_id}-osdisk-0"
                self._record_operation(
                    str(uuid.uuid4()),
                    OperationKind.CREATE,
                    spec.name,
                    instance_id,
                    None,
                    seconds,
                    image=image,
                    target_disk=disk,
                    arm_operation=arm_operation,
                )
                created.append(instance_id)
        self.settle()
        return created

    def _balanced_placement(self, spec: ScaleSetSpec, instance_id: str) -> Placement:
        """Azure's best-effort zone balance: a zone with the fewest instances (among equals,
        one Azure picks: here a draw fixed by the set's seed and the new instance's id, so
        no zone is always first), then its least used update domain (replacements may land
        in another one)."""
        live = self._live_instances(spec.name)
        zones: Sequence[str | None] = spec.zones or [None]
        per_zone = Counter(row["zone"] for row in live)
        zone = min(zones, key=lambda z: (per_zone[z], draw(spec.seed, "zone", instance_id, z)))
        per_domain = Counter(row["update_domain"] for row in live if row["zone"] == zone)
        domain = min(range(spec.update_domain_count), key=lambda d: (per_domain[d], d))
        return zone, domain, domain % spec.fault_domain_count

    def begin_delete_instances(self, name: str, instance_ids: list[str], arm_operation: str) -> list[str]:
        """Delete instances by id (POST .../delete, DELETE .../virtualMachines/{id}): each one
        Deleting for a reimage's time, then gone; capacity drops at once. Refused as a whole if
        one is unknown (404) or busy, being deleted included (409): nothing is deduplicated."""
        self.settle()
        spec = self.spec(name)
        rows = [self._idle_instance(name, instance_id) for instance_id in dict.fromkeys(instance_ids)]
        now = self.clock()
        with self._transaction():
            for row in rows:
                instance_id = row["instance_id"]
                seconds = within(spec.timing.reimage_seconds, spec.seed, "delete", instance_id, arm_operation)
                self._record_operation(
                    str(uuid.uuid4()),
                    OperationKind.DELETE,
                    name,
                    instance_id,
                    row["os_disk"],
                    seconds,
                    arm_operation=arm_operation,
                )
                self.db.execute(
                    "UPDATE instance_records SET delete_started_at = ?"
                    " WHERE scale_set = ? AND instance_id = ?",
                    (now, name, instance_id),
                )
        self.settle()
        return [row["instance_id"] for row in rows]

    def instance_records(self, name: str) -> list[InstanceRecord]:
        """Every instance the set ever had, by creation: created, provisioned, booted, deletion
        begun and done (InstanceRecord)."""
        self.spec(name)
        self.settle()
        rows = self.db.execute("SELECT * FROM instance_records WHERE scale_set = ?", (name,)).fetchall()
        records = [
            InstanceRecord(
                instance_id=row["instance_id"],
                zone=row["zone"],
                created=row["created_at"],
                provisioned=row["provisioned_at"],
                ready=row["ready_at"],
                delete_started=row["delete_started_at"],
                deleted=row["deleted_at"],
            )
            for row in rows
        ]
        return sorted(records, key=lambda r: (r.created, natural_key(r.instance_id)))

    # --- core quota (the Compute usages API) ------------------------------------------------

    def core_usage(self, location: str) -> Counter[str]:
        """vCPUs in use in `location`, per VM family and in all (REGIONAL_CORES): every
        instance counts, whatever its state, until it is gone."""
        used: Counter[str] = Counter()
        for row in self.db.execute("SELECT scale_set, COUNT(*) FROM instances GROUP BY scale_set"):
            spec = self.spec(row[0])
            size = size_of(spec.vm_size)
            if size is not None and spec.location.lower() == location.lower():
                used[size.family] += size.cores * row[1]
                used[REGIONAL_CORES] += size.cores * row[1]
        return used

    def core_limit(self, location: str, family: str) -> int:
        row = self.db.execute(
            "SELECT core_limit FROM core_quotas WHERE location = ? AND family = ?", (location.lower(), family)
        ).fetchone()
        return DEFAULT_CORE_LIMIT if row is None else int(row[0])

    def set_core_limit(self, location: str, family: str, limit: int | None) -> None:
        """A scenario's quota: `limit` vCPUs of `family` (or REGIONAL_CORES) in `location`;
        None: back to the default."""
        if family not in (REGIONAL_CORES, *FAMILIES):
            raise CloudError(
                400, "InvalidParameter", f"family: must be one of {', '.join([REGIONAL_CORES, *FAMILIES])}"
            )
        if limit is None:
            self.db.execute(
                "DELETE FROM core_quotas WHERE location = ? AND family = ?", (location.lower(), family)
            )
            return
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 10_000_000:
            raise CloudError(400, "InvalidParameter", f"limit: must be from 0 to 10000000 (got {limit!r})")
        self.db.execute(
            "INSERT OR REPLACE INTO core_quotas VALUES (?, ?, ?)", (location.lower(), family, limit)
        )

    def usages(self, location: str) -> list[tuple[str, int, int]]:
        """(name.value, currentValue, limit) of the region's total vCPUs and of each family."""
        self.settle()
        used = self.core_usage(location)
        return [(name, used[name], self.core_limit(location, name)) for name in (REGIONAL_CORES, *FAMILIES)]

    def check_core_quota(self, spec: ScaleSetSpec, count: int) -> None:
        """Azure's refusal of new instances beyond the family's or the region's vCPU quota."""
        size = size_of(spec.vm_size)
        if size is None:
            raise CloudError(400, "InvalidParameter", f"vmSize {spec.vm_size!r} is not offered")
        needed, used = count * size.cores, self.core_usage(spec.location)
        for family in (size.family, REGIONAL_CORES):
            limit = self.core_limit(spec.location, family)
            if used[family] + needed > limit:
                quota = "Total Regional" if family == REGIONAL_CORES else family
                raise CloudError(
                    409,
                    "OperationNotAllowed",
                    f"Operation could not be completed as it results in exceeding approved {quota} Cores "
                    f"quota. Additional details - Deployment Model: Resource Manager, Location: "
                    f"{spec.location}, Current Limit: {limit}, Current Usage: {used[family]}, Additional "
                    f"Required: {needed}, (Minimum) New Limit Required: {used[family] + needed}.",
                )

    def model_image(self, spec: ScaleSetSpec) -> ImageReference | None:
        """The image the model means now (its newest in the region for 'latest'); None if none.
        Resolved once per answer: a list page asks it of every instance."""
        try:
            return self.resolve_image(spec.image_reference, spec.location)
        except CloudError:
            return None

    @staticmethod
    def on_model(model_image: ImageReference | None, instance: InstanceView) -> bool:
        """latestModelApplied: the instance runs the model's image."""
        return model_image is not None and instance.image_reference.same_image(model_image)

    # --- ARM long-running operations --------------------------------------------------------

    def new_arm_operation(self, name: str) -> str:
        spec = self.spec(name)
        operation_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO arm_operations VALUES (?, ?, ?, ?)",
            (operation_id, name, spec.location, self.clock()),
        )
        return operation_id

    def arm_operation(self, operation_id: str) -> dict[str, Any]:
        """Azure's async operation status: {name, status, startTime, endTime, error}, from the
        instance operations it started (Failed when one failed, done when all are)."""
        self.settle()
        row = self.db.execute("SELECT * FROM arm_operations WHERE id = ?", (operation_id,)).fetchone()
        if row is None:
            raise CloudError(404, "NotFound", f"operation {operation_id!r} was not found")
        members = self.db.execute(
            "SELECT * FROM operations WHERE arm_operation = ? ORDER BY seq", (operation_id,)
        ).fetchall()
        document: dict[str, Any] = {"name": operation_id, "startTime": iso(row["start_time"])}
        if any(m["status"] == OperationStatus.IN_PROGRESS.value for m in members):
            return {**document, "status": OperationStatus.IN_PROGRESS.value}
        end = max((m["end_time"] for m in members), default=row["start_time"])
        document["endTime"] = iso(end)
        failed = [m for m in members if m["status"] == OperationStatus.FAILED.value]
        if failed:
            error = {"code": failed[0]["error_code"], "message": failed[0]["error_message"]}
            return {**document, "status": OperationStatus.FAILED.value, "error": error}
        return {**document, "status": OperationStatus.SUCCEEDED.value}

    def scale_set_of_arm_operation(self, operation_id: str) -> str | None:
        row = self.db.execute("SELECT scale_set FROM arm_operations WHERE id = ?", (operation_id,)).fetchone()
        return None if row is None else str(row[0])

    def _idle_instance(self, name: str, instance_id: str) -> sqlite3.Row:
        instance = self._instance(name, instance_id)
        if busy := instance["busy_operation"]:
            raise CloudError(
                409,
                "AnotherOperationInProgress",
                f"instance {name}/{instance_id} is busy with operation {busy!r}; "
                "try again once it has finished",
            )
        return instance

    def _begin(
        self,
        operation_id: str,
        kind: OperationKind,
        name: str,
        instance_id: str,
        current_disk: str,
        seconds: float,
        **details: Any,
    ) -> FleetOperation:
        """Start one operation on one instance (details: _record_operation's keywords)."""
        with self._transaction():
            self._record_operation(operation_id, kind, name, instance_id, current_disk, seconds, **details)
        self.settle()
        return self.operation(name, operation_id)

    def _record_operation(
        self,
        operation_id: str,
        kind: OperationKind,
        name: str,
        instance_id: str,
        current_disk: str | None,
        seconds: float,
        *,
        image: ImageReference | None = None,
        target_disk: str | None = None,
        error_code: str | None = None,
        arm_operation: str | None = None,
        extension: tuple[str, str] | None = None,
    ) -> None:
        """Log an accepted operation and make the instance busy with it (inside a transaction)."""
        now = self.clock()
        extension_name, extension_version = extension or (None, None)
        self.db.execute(
            "INSERT INTO operations (operation_id, kind, scale_set, instance_id, status,"
            " start_time, complete_at, image, target_disk, previous_os_disk, error_code,"
            " arm_operation, extension_name, extension_version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                operation_id,
                kind.value,
                name,
                instance_id,
                OperationStatus.IN_PROGRESS.value,
                now,
                now + seconds,
                image.model_dump_json() if image else None,
                target_disk,
                current_disk,
                error_code,
                arm_operation,
                extension_name,
                extension_version,
            ),
        )
        self.db.execute(
            "UPDATE instances SET busy_operation = ? WHERE scale_set = ? AND instance_id = ?",
            (operation_id, name, instance_id),
        )

    def operation(self, name: str, operation_id: str) -> FleetOperation:
        self.settle()
        row = self.db.execute(
            "SELECT * FROM operations WHERE operation_id = ? AND scale_set = ?",
            (operation_id, name),
        ).fetchone()
        if row is None:
            raise CloudError(404, "NotFound", f"operation {operation_id!r} was not found")
        return self._operation_view(row)

    def operations_log(self, name: str) -> list[FleetOperation]:
        self.spec(name)
        self.settle()
        rows = self.db.execute(
            "SELECT * FROM operations WHERE scale_set = ? ORDER BY seq", (name,)
        ).fetchall()
        return [self._operation_view(row) for row in rows]

    def _operation_view(self, row: sqlite3.Row) -> FleetOperation:
        status = OperationStatus(row["status"])
        return FleetOperation(
            operation_id=row["operation_id"],
            kind=OperationKind(row["kind"]),
            scale_set=row["scale_set"],
            instance_id=row["instance_id"],
            status=status,
            start_time=row["start_time"],
            end_time=row["end_time"],
            image_reference=ImageReference.model_validate_json(row["image"]) if row["image"] else None,
            previous_os_disk=row["previous_os_disk"],
            os_disk=row["os_disk"],
            error=(
                OperationError(code=row["error_code"], message=row["error_message"])
                if status == OperationStatus.FAILED
                else None
            ),
            request_count=row["request_count"],
            ready_time=row["ready_at"],
            retry_after_seconds=(
                max(0.0, row["complete_at"] - self.clock()) if status == OperationStatus.IN_PROGRESS else None
            ),
            extension_name=row["extension_name"],
            extension_version=row["extension_version"],
        )

    def settle(self) -> None:
        """Finish every operation whose time has come, in the order they complete."""
        due = self.db.execute(
            "SELECT * FROM operations WHERE status = ? AND complete_at <= ? ORDER BY complete_at, seq",
            (OperationStatus.IN_PROGRESS.value, self.clock()),
        ).fetchall()
        for operation in due:
            with self._transaction():
                self._finish(operation)

    def _finish(self, op: sqlite3.Row) -> None:
        name, instance_id, ended = op["scale_set"], op["instance_id"], op["complete_at"]
        spec = self.spec(name)
        boot = within(spec.timing.boot_seconds, spec.seed, "boot", op["operation_id"])
        exists = self.db.execute(
            "SELECT 1 FROM instances WHERE scale_set = ? AND instance_id = ?", (name, instance_id)
        ).fetchone()
        if not exists:
            return self._fail(op, "NotFound", "the instance was deleted during the operation")
        if op["kind"] == OperationKind.INSTALL_EXTENSION.value:
            return self._finish_install(op)
        if op["kind"] == OperationKind.CREATE.value:
            return self._finish_create(op, boot)
        if op["kind"] == OperationKind.DELETE.value:
            return self._finish_delete(op)
        if op["kind"] in (OperationKind.DEALLOCATE.value, OperationKind.START.value):
            return self._finish_power(op, boot)
        if op["error_code"]:
            # Azure leaves the VM with provisioningState Failed and the error in its instance
            # view until an operation succeeds on it.
            self._release(op, ended + boot)
            self.db.execute(
                "UPDATE instances SET error_code = ? WHERE scale_set = ? AND instance_id = ?",
                (op["error_code"], name, instance_id),
            )
            return self._fail(op, op["error_code"], f"{op['kind']} failed: {op['error_code']}")

        if op["kind"] == OperationKind.REIMAGE.value:
            image = ImageReference.model_validate_json(op["image"])
            count = self.db.execute(
                "SELECT COUNT(*) FROM os_disks WHERE scale_set = ? AND instance_id = ?",
                (name, instance_id),
            ).fetchone()[0]
            new_disk = f"{name}-{instance_id}-osdisk-{count}"
            self.db.execute(
                "INSERT INTO os_disks VALUES (?, ?, ?, ?, ?, ?)",
                (
                    new_disk,
                    name,
                    instance_id,
                    image.model_dump_json(),
                    int(self._healthy_on(spec, instance_id, image)),
                    ended,
                ),
            )
        else:
            new_disk = op["target_disk"]
        self.db.execute(
            "UPDATE instances SET os_disk = ?, forced_health = NULL, error_code = NULL"
            " WHERE scale_set = ? AND instance_id = ?",
            (new_disk, name, instance_id),
        )
        self._release(op, ended + boot)
        self.db.execute(
            "UPDATE operations SET status = ?, end_time = ?, os_disk = ? WHERE operation_id = ?",
            (OperationStatus.SUCCEEDED.value, ended, new_disk, op["operation_id"]),
        )
        if op["kind"] == OperationKind.REIMAGE.value:
            self._count_reimage(spec)

    def _finish_install(self, op: sqlite3.Row) -> None:
        """The extension's handler ran: its version is installed, enabled or failed. The VM
        did not stop: it is free again at once, its application as it was."""
        name, instance_id, ended = op["scale_set"], op["instance_id"], op["complete_at"]
        extension, version, code = op["extension_name"], op["extension_version"], op["error_code"]
        self.db.execute(
            "UPDATE instances SET busy_operation = NULL, error_code = ?"
            " WHERE scale_set = ? AND instance_id = ?",
            (code, name, instance_id),
        )
        self.db.execute(
            "UPDATE instance_extensions SET version = ?, status = ?, error_code = ?, changed_at = ?"
            " WHERE scale_set = ? AND instance_id = ? AND name = ?",
            (version, "failed" if code else "succeeded", code, ended, name, instance_id, extension),
        )
        self.db.execute(
            "UPDATE operations SET ready_at = ? WHERE operation_id = ?", (ended, op["operation_id"])
        )
        if code:
            row = self.db.execute(
                "SELECT publisher, type FROM instance_extensions WHERE scale_set = ? AND instance_id = ?"
                " AND name = ?",
                (name, instance_id, extension),
            ).fetchone()
            publisher, type_ = (row["publisher"], row["type"]) if row else ("", "")
            message = (
                f"VM has reported a failure when processing extension '{extension}' (publisher "
                f"'{publisher}' and type '{type_}'). Error message: 'Enable failed: version {version} "
                "exited with code 1'."
            )
            return self._fail(op, code, message)
        self.db.execute(
            "UPDATE operations SET status = ?, end_time = ? WHERE operation_id = ?",
            (OperationStatus.SUCCEEDED.value, ended, op["operation_id"]),
        )
        return None

    def _finish_create(self, op: sqlite3.Row, boot: float) -> None:
        """Provisioned: it boots (Initializing) as a reimaged instance does."""
        ended = op["complete_at"]
        self._release(op, ended + boot)
        self.db.execute(
            "UPDATE operations SET status = ?, end_time = ?, os_disk = ? WHERE operation_id = ?",
            (OperationStatus.SUCCEEDED.value, ended, op["target_disk"], op["operation_id"]),
        )
        self.db.execute(
            "UPDATE instance_records SET provisioned_at = ?, ready_at = ?"
            " WHERE scale_set = ? AND instance_id = ?",
            (ended, ended + boot, op["scale_set"], op["instance_id"]),
        )

    def _finish_delete(self, op: sqlite3.Row) -> None:
        self._remove_instance(op["scale_set"], op["instance_id"], op["complete_at"])
        self.db.execute(
            "UPDATE operations SET status = ?, end_time = ? WHERE operation_id = ?",
            (OperationStatus.SUCCEEDED.value, op["complete_at"], op["operation_id"]),
        )

    def _finish_power(self, op: sqlite3.Row, boot: float) -> None:
        """Deallocated (no host, no application), or started: it boots on its OS disk."""
        deallocated = op["kind"] == OperationKind.DEALLOCATE.value
        self.db.execute(
            "UPDATE instances SET deallocated = ? WHERE scale_set = ? AND instance_id = ?",
            (int(deallocated), op["scale_set"], op["instance_id"]),
        )
        self._release(op, op["complete_at"] + (0.0 if deallocated else boot))
        self.db.execute(
            "UPDATE operations SET status = ?, end_time = ?, os_disk = ? WHERE operation_id = ?",
            (OperationStatus.SUCCEEDED.value, op["complete_at"], op["target_disk"], op["operation_id"]),
        )

    def _release(self, op: sqlite3.Row, ready_at: float) -> None:
        """The instance is free again and boots; it answers its health endpoint at `ready_at`."""
        self.db.execute(
            "UPDATE instances SET busy_operation = NULL, ready_at = ?"
            " WHERE scale_set = ? AND instance_id = ?",
            (ready_at, op["scale_set"], op["instance_id"]),
        )
        self.db.execute(
            "UPDATE operations SET ready_at = ? WHERE operation_id = ?", (ready_at, op["operation_id"])
        )

    def _fail(self, op: sqlite3.Row, code: str, message: str) -> None:
        self.db.execute(
            "UPDATE operations SET status = ?, end_time = ?, error_code = ?, error_message = ?"
            " WHERE operation_id = ?",
            (OperationStatus.FAILED.value, op["complete_at"], code, message, op["operation_id"]),
        )

    def _count_reimage(self, spec: ScaleSetSpec) -> None:
        """Completed reimages drive the `goUnhealthy` fault: instances failing on their own."""
        self.db.execute(
            "UPDATE scale_sets SET reimages_done = reimages_done + 1 WHERE name = ?", (spec.name,)
        )
        done = self.db.execute(
            "SELECT reimages_done FROM scale_sets WHERE name = ?", (spec.name,)
        ).fetchone()[0]
        for trigger in spec.faults.go_unhealthy:
            if trigger.after_reimages == done:
                for instance_id in trigger.instances:
                    self.db.execute(
                        "UPDATE instances SET forced_health = ? WHERE scale_set = ? AND instance_id = ?",
                        (HealthState.UNHEALTHY.value, spec.name, instance_id),
                    )
