"""The emulated cloud: scale sets, an image gallery, OS disks, long-running operations, health.

Operations finish lazily: each carries the time it completes, and every request first settles
the operations that are due. So the emulator needs no background task, and a restarted emulator
finishes what was in flight at the right moment. Every random draw (latencies, which instances
fail) hashes the scale set's seed with stable ids, so a scenario repeats exactly.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from models.fleet import (
    CustomMetrics,
    DataDisk,
    FaultSpec,
    FleetOperation,
    GalleryImageVersion,
    HealthState,
    InstanceView,
    OperationError,
    OperationKind,
    OperationStatus,
    OsDisk,
    ScaleSetSpec,
    ScaleSetView,
)
from models.image import LATEST, ImageReference
from models.sorting import natural_key

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
ALL_REGIONS = "*"
# What an instance's application is doing, as its health endpoint shows it: one of the health
# states it can answer (Healthy, Unhealthy, Unknown: an error answer) or DOWN (not listening:
# stopped for an operation, booting, deleted).
AppState = str
DOWN = "Down"
APP_STATES = (HealthState.HEALTHY.value, HealthState.UNHEALTHY.value, HealthState.UNKNOWN.value, DOWN)


class EndpointAnswer(NamedTuple):
    """An instance endpoint's answer: status None means no connection (refused)."""

    status: int | None
    body: str
    content_type: str = "text/plain"


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


def definition_key(image: ImageReference) -> str:
    return "|".join(image.definition)


def resource_id(name: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/fleet-emulator/providers/"
        f"Microsoft.Compute/virtualMachineScaleSets/{name}"
    )


class Cloud:
    def __init__(self, db: sqlite3.Connection, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        # Scripted answers of health endpoints, one per probe (tests only; not persisted).
        self.probe_answers: dict[tuple[str, str], list[AppState]] = {}

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
        return ScaleSetSpec.model_validate_json(row["spec"])

    def scale_set_names(self) -> list[str]:
        return [r["name"] for r in self.db.execute("SELECT name FROM scale_sets ORDER BY name")]

    def create_scale_set(self, spec: ScaleSetSpec) -> ScaleSetView:
        """Create (or replace) a scale set with every instance booted on the model's image."""
        image = spec.image_reference
        if image.version == LATEST:
            raise CloudError(400, "InvalidParameter", "a new scale set needs an exact image version")
        now = self.clock()
        with self._transaction():
            self._delete(spec.name)
            self._publish(image.at_version(image.version), [ALL_REGIONS], False, now, replace=False)
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
    ) -> None:
        """Place instance `ordinal`: zones round-robin, then update and fault domains in turn
        within its zone."""
        zones: Sequence[str | None] = spec.zones or [None]
        instance_id = str(ordinal)
        within_zone = ordinal // len(zones)
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
                zones[ordinal % len(zones)],
                within_zone % spec.update_domain_count,
                within_zone % spec.fault_domain_count,
                disk,
                json.dumps([d.to_json() for d in data_disks]),
                ready_at,
            ),
        )

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
        target = model_image if image is None else self.resolve_image(image, spec.location)
        on_model = target.same_image(model_image)
        used = [
            int(row[0])
            for row in self.db.execute(
                "SELECT instance_id FROM os_disks WHERE scale_set = ?"
                " UNION SELECT instance_id FROM instances WHERE scale_set = ?",
                (name, name),
            )
            if str(row[0]).isdigit()
        ]
        first = max(used, default=-1) + 1
        now = self.clock()
        grown = spec.model_copy(update={"capacity": spec.capacity + count})
        with self._transaction():
            for ordinal in range(first, first + count):
                instance_id = str(ordinal)
                boot = within(spec.timing.boot_seconds, spec.seed, "boot", "scale-out", instance_id)
                healthy = on_model or self._healthy_on(spec, instance_id, target)
                self._add_instance(grown, ordinal, target, healthy=healthy, ready_at=now + boot, now=now)
            self.db.execute("UPDATE scale_sets SET spec = ? WHERE name = ?", (grown.model_dump_json(), name))
        return self.scale_set_view(name)

    def _delete(self, name: str) -> None:
        for table in ("instances", "os_disks", "operations"):
            self.db.execute(f"DELETE FROM {table} WHERE scale_set = ?", (name,))
        self.db.execute("DELETE FROM scale_sets WHERE name = ?", (name,))
        for key in [key for key in self.probe_answers if key[0] == name]:
            del self.probe_answers[key]

    def delete_scale_set(self, name: str) -> None:
        self.spec(name)
        with self._transaction():
            self._delete(name)

    def set_faults(self, name: str, faults: FaultSpec) -> None:
        spec = self.spec(name).model_copy(update={"faults": faults})
        self.db.execute("UPDATE scale_sets SET spec = ? WHERE name = ?", (spec.model_dump_json(), name))

    def delete_instance(self, name: str, instance_id: str) -> None:
        self._instance(name, instance_id)
        self.db.execute("DELETE FROM instances WHERE scale_set = ? AND instance_id = ?", (name, instance_id))

    def force_health(self, name: str, instance_id: str, state: HealthState | None) -> None:
        self._instance(name, instance_id)
        self.db.execute(
            "UPDATE instances SET forced_health = ? WHERE scale_set = ? AND instance_id = ?",
            (state.value if state else None, name, instance_id),
        )

    def scale_set_view(self, name: str) -> ScaleSetView:
        self.settle()
        spec = self.spec(name)
        rows = self.db.execute(
            "SELECT i.*, d.image, d.app_healthy FROM instances i JOIN os_disks d "
            "ON d.name = i.os_disk WHERE i.scale_set = ? ORDER BY i.ordinal",
            (name,),
        ).fetchall()
        return ScaleSetView(
            name=name,
            id=resource_id(name),
            location=spec.location,
            zones=spec.zones,
            image_reference=spec.image_reference,
            instances=[self._instance_view(spec, row) for row in rows],
        )

    def health_reading(self, name: str) -> dict[str, Any]:
        """HealthReading's JSON, built straight from the rows (it is read before every batch)."""
        self.settle()
        spec = self.spec(name)
        rows = self.db.execute(
            "SELECT i.instance_id, i.busy_operation, i.ready_at, i.forced_health, d.app_healthy"
            " FROM instances i JOIN os_disks d ON d.name = i.os_disk WHERE i.scale_set = ?",
            (name,),
        ).fetchall()
        return {
            "health": {row["instance_id"]: self._health(spec, row)[0].value for row in rows},
            "phases": {
                instance_id: metrics.phase_ordering_number
                for instance_id, metrics in spec.custom_metrics.items()
                if metrics.phase_ordering_number is not None
            },
        }

    def _instance(self, name: str, instance_id: str) -> sqlite3.Row:
        self.spec(name)
        row = self.db.execute(
            "SELECT i.*, d.image, d.app_healthy FROM instances i JOIN os_disks d "
            "ON d.name = i.os_disk WHERE i.scale_set = ? AND i.instance_id = ?",
            (name, instance_id),
        ).fetchone()
        if row is None:
            raise CloudError(404, "NotFound", f"instance {name}/{instance_id} was not found")
        return row

    def _instance_view(self, spec: ScaleSetSpec, row: sqlite3.Row) -> InstanceView:
        image = ImageReference.model_validate_json(row["image"])
        health, _ = self._health(spec, row)
        now = self.clock()
        if row["busy_operation"]:
            provisioning, power = "Updating", "stopped"
        else:
            provisioning, power = "Succeeded", "starting" if now < row["ready_at"] else "running"
        return InstanceView(
            instance_id=row["instance_id"],
            zone=row["zone"],
            platform_update_domain=row["update_domain"],
            platform_fault_domain=row["fault_domain"],
            image_reference=image,
            os_disk=OsDisk(name=row["os_disk"], image_reference=image),
            data_disks=[DataDisk.model_validate(d) for d in json.loads(row["data_disks"])],
            provisioning_state=provisioning,
            power_state=power,
            health=health,
            custom_metrics=spec.custom_metrics.get(row["instance_id"], CustomMetrics()),
        )

    # --- health -----------------------------------------------------------------------------

    def _health(self, spec: ScaleSetSpec, row: sqlite3.Row) -> tuple[HealthState, str]:
        """What the Application Health extension on the instance reports right now."""
        if row["busy_operation"]:
            return HealthState.UNKNOWN, "the instance is stopped for an operation"
        if self.clock() < row["ready_at"]:
            return HealthState.INITIALIZING, "the instance is booting"
        if row["forced_health"]:
            return HealthState(row["forced_health"]), "health set from outside"
        if row["app_healthy"]:
            return HealthState.HEALTHY, "the application answers"
        return HealthState.UNHEALTHY, "the application fails its health check"

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

    def _app_state(self, spec: ScaleSetSpec, name: str, instance_id: str) -> tuple[AppState, str]:
        try:
            row = self._instance(name, instance_id)
        except CloudError:
            return DOWN, "no such instance"
        if script := self.probe_answers.get((name, instance_id)):
            return script.pop(0), "a scripted answer"
        if row["busy_operation"]:
            return DOWN, "the instance is stopped for an operation"
        if self.clock() < row["ready_at"]:
            return DOWN, "the instance is booting"
        if row["forced_health"]:
            state = HealthState(row["forced_health"])
            # Initializing is the extension's own state; the application is not answering yet.
            return (DOWN if state == HealthState.INITIALIZING else state.value), "health set from outside"
        if row["app_healthy"]:
            return HealthState.HEALTHY.value, "the application answers"
        return HealthState.UNHEALTHY.value, "the application fails its health check"

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
        state, detail = self._app_state(spec, name, instance_id)
        if state == DOWN:
            return EndpointAnswer(None, detail)
        healthy = state == HealthState.HEALTHY.value
        if path.startswith("tcp/"):
            return EndpointAnswer(200, "") if healthy else EndpointAnswer(None, detail)
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
        if instance_id in faults.unhealthy_after_upgrade:
            return False
        share = draw(spec.seed, "unhealthy", instance_id, image.resolved_version)
        return share >= faults.unhealthy_share

    # --- image gallery ----------------------------------------------------------------------

    def _publish(
        self, image: ImageReference, regions: list[str], exclude: bool, now: float, replace: bool
    ) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        self.db.execute(
            f"{verb} INTO images VALUES (?, ?, ?, ?, ?, ?)",
            (
                definition_key(image),
                image.resolved_version,
                image.model_dump_json(),
                json.dumps(regions),
                int(exclude),
                now,
            ),
        )

    def publish_image(
        self, image: ImageReference, regions: list[str], exclude_from_latest: bool
    ) -> GalleryImageVersion:
        if image.version == LATEST:
            raise CloudError(400, "InvalidParameter", "publish an exact version, not 'latest'")
        exact = image.at_version(image.version)
        self._publish(exact, regions, exclude_from_latest, self.clock(), replace=True)
        return self._gallery_version(self._image_row(exact))

    def _image_row(self, image: ImageReference) -> sqlite3.Row:
        return self.db.execute(
            "SELECT * FROM images WHERE definition = ? AND version = ?",
            (definition_key(image), image.resolved_version),
        ).fetchone()

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
            candidates = [r for r in rows if not r["exclude_from_latest"]]
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
        self, name: str, instance_id: str, image: ImageReference, operation_id: str
    ) -> FleetOperation:
        self.settle()
        if repeated := self._repeat(operation_id, OperationKind.REIMAGE, name, instance_id):
            return repeated
        spec = self.spec(name)
        instance = self._idle_instance(name, instance_id)
        exact = self.resolve_image(image, spec.location)
        seconds = within(spec.timing.reimage_seconds, spec.seed, "reimage", operation_id)
        failure = spec.faults.operation_errors.get(instance_id)
        return self._begin(
            operation_id,
            OperationKind.REIMAGE,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            image=exact,
            error_code=failure,
        )

    def begin_restore(self, name: str, instance_id: str, os_disk: str, operation_id: str) -> FleetOperation:
        self.settle()
        if repeated := self._repeat(operation_id, OperationKind.RESTORE, name, instance_id):
            return repeated
        spec = self.spec(name)
        instance = self._idle_instance(name, instance_id)
        disk = self.db.execute(
            "SELECT * FROM os_disks WHERE name = ? AND scale_set = ? AND instance_id = ?",
            (os_disk, name, instance_id),
        ).fetchone()
        if disk is None:
            raise CloudError(
                404, "DiskNotFound", f"OS disk {os_disk!r} of instance {name}/{instance_id} was not found"
            )
        seconds = within(spec.timing.restore_seconds, spec.seed, "restore", operation_id)
        return self._begin(
            operation_id,
            OperationKind.RESTORE,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            target_disk=os_disk,
        )

    def begin_restart(self, name: str, instance_id: str, seconds: float, operation_id: str) -> FleetOperation:
        """An operation started from outside the upgrade (as another tool or the platform
        would): the instance is busy for `seconds`, then boots again on the same OS disk."""
        self.settle()
        if repeated := self._repeat(operation_id, OperationKind.RESTART, name, instance_id):
            return repeated
        instance = self._idle_instance(name, instance_id)
        return self._begin(
            operation_id,
            OperationKind.RESTART,
            name,
            instance_id,
            instance["os_disk"],
            seconds,
            target_disk=instance["os_disk"],
        )

    def _repeat(
        self, operation_id: str, kind: OperationKind, name: str, instance_id: str
    ) -> FleetOperation | None:
        """A repeated operation id is the same operation: count the request, change nothing."""
        row = self.db.execute("SELECT * FROM operations WHERE operation_id = ?", (operation_id,)).fetchone()
        if row is None:
            return None
        if (row["kind"], row["scale_set"], row["instance_id"]) != (kind.value, name, instance_id):
            raise CloudError(
                409,
                "OperationIdConflict",
                f"operation {operation_id!r} is a {row['kind']} of {row['scale_set']}/{row['instance_id']}",
            )
        self.db.execute(
            "UPDATE operations SET request_count = request_count + 1 WHERE operation_id = ?",
            (operation_id,),
        )
        return self.operation(name, operation_id)

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
        *,
        image: ImageReference | None = None,
        target_disk: str | None = None,
        error_code: str | None = None,
    ) -> FleetOperation:
        now = self.clock()
        with self._transaction():
            self.db.execute(
                "INSERT INTO operations (operation_id, kind, scale_set, instance_id, status,"
                " start_time, complete_at, image, target_disk, previous_os_disk, error_code)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
            self.db.execute(
                "UPDATE instances SET busy_operation = ? WHERE scale_set = ? AND instance_id = ?",
                (operation_id, name, instance_id),
            )
        self.settle()
        return self.operation(name, operation_id)

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
        if op["error_code"]:
            self._release(op, ended + boot)
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
            "UPDATE instances SET os_disk = ?, forced_health = NULL WHERE scale_set = ? AND instance_id = ?",
            (new_disk, name, instance_id),
        )
        self._release(op, ended + boot)
        self.db.execute(
            "UPDATE operations SET status = ?, end_time = ?, os_disk = ? WHERE operation_id = ?",
            (OperationStatus.SUCCEEDED.value, ended, new_disk, op["operation_id"]),
        )
        if op["kind"] == OperationKind.REIMAGE.value:
            self._count_reimage(spec)

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
