"""Every side effect of an upgrade: reading the fleet, reimaging, restoring, probing health.

The activities are methods of a class that receives its fleet back end, so the worker injects
the emulator's client (or, later, a real cloud's) and tests inject whatever they need. Fleet
errors become ApplicationErrors: transient ones stay retryable (the workflow's retry policy
backs off), permanent ones are non-retryable and carry the back end's error code, so the
workflow reports them as infrastructure failures, never as "unhealthy". Anything else is a bug:
retried with the same backoff until the activity's schedule-to-close, so a fixed worker takes
over the upgrade.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.exactly_once import (
    MAX_MISMATCHES,
    MAX_POLL_SECONDS,
    Progress,
    backoff_seconds,
    operation_failure,
    poll_seconds,
)
from activities.heartbeats import Heartbeat
from fleet.errors import FleetError, FleetRequestError, FleetTransientError
from fleet.protocol import FleetBackend
from fleet.restore_points import parse_restore_point, same_restore_point
from models import steps
from models.change import ExtensionRequest, ExtensionTarget, installed, major_of, newest_of_major
from models.errors import (
    EXTENSION_PROVISIONING_ERROR,
    FLEET_OPERATION_FAILED,
    TRANSIENT_FLEET_ERROR,
    UNEXPECTED_ERROR,
    RefusalCode,
)
from models.fleet import (
    FleetOperation,
    HealthReading,
    HealthState,
    InstanceView,
    OperationKind,
    OperationStatus,
    ScaleSetView,
)
from models.image import LATEST, ImageReference
from models.sorting import natural_key
from rules.failures import GONE_CODES
from rules.quota import surge_room

FAILING_STATES = (HealthState.UNHEALTHY, HealthState.UNKNOWN)
# Power states (PowerState/… in the instance view) of a VM that is up or coming up, and of one
# whose OS disk can be swapped.
RUNNING = ("running", "starting")
Send = Callable[[], Awaitable[FleetOperation]]
DEALLOCATED = "deallocated"
# provisioningState of an instance being created, and of one being deleted.
CREATING, DELETING = "Creating", "Deleting"


def is_disk_swap(restore_point: str) -> bool:
    """A Flexible restore point: an OS disk to swap back in (Uniform's is an image version)."""
    try:
        return parse_restore_point(restore_point).os_disk_id is not None
    except ValueError:
        return False  # begin_restore refuses it, naming the restore point


@contextmanager
def fleet_errors(refusals: dict[str, RefusalCode] | None = None) -> Iterator[None]:
    """Translate back-end errors; `refusals` maps back-end codes to refusal codes.

    Only what the fleet refused (or answered as final) is not retried. Anything else is a bug
    in our code: UNEXPECTED_ERROR, retried with backoff until the activity's schedule-to-close
    (a retried action reconciles before it acts), so a fixed worker resumes the upgrade; after
    that the upgrade stops with InternalExecutionError.
    """
    try:
        yield
    except FleetError as err:
        if err.retryable:
            raise ApplicationError(err.message, type=TRANSIENT_FLEET_ERROR) from err
        code = (refusals or {}).get(err.code, err.code)
        raise ApplicationError(err.message, type=code, non_retryable=True) from err
    except ApplicationError:
        raise
    except Exception as err:
        raise ApplicationError(f"{type(err).__name__}: {err}", type=UNEXPECTED_ERROR) from err


async def on_cadence(last_probe: float, interval: float) -> float:
    """Sleep until the next probe is due: `interval` after the last one began, as the health
    extension probes (sleeping a full interval after each answer would let the time each read
    takes pile up on every probe). A read slower than the interval is followed at once."""
    due = max(last_probe + interval, time.monotonic())
    await asyncio.sleep(due - time.monotonic())
    return due


class FleetActivities:
    def __init__(self, fleet: FleetBackend) -> None:
        self.fleet = fleet

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.describe_scale_set,
            self.read_health,
            self.resolve_image,
            self.reimage_instance,
            self.restore_os_disk,
            self.resolve_extensions,
            self.install_extension,
            self.wait_for_health,
            self.probe_health,
            self.surge_room,
            self.create_instances,
            self.delete_instances,
        ]

    @activity.defn(name=steps.DESCRIBE_SCALE_SET)
    async def describe_scale_set(self, request: steps.DescribeScaleSetInput) -> steps.DescribeScaleSetResult:
        with fleet_errors({"ResourceNotFound": RefusalCode.SCALE_SET_NOT_FOUND}):
            view = await self.fleet.get_scale_set(request.scale_set)
        return steps.DescribeScaleSetResult(scale_set=view)

    @activity.defn(name=steps.READ_HEALTH)
    async def read_health(self, request: steps.ReadHealthInput) -> HealthReading:
        with fleet_errors({"ResourceNotFound": RefusalCode.SCALE_SET_NOT_FOUND}):
            return await self.fleet.read_health(request.scale_set)

    @activity.defn(name=steps.RESOLVE_IMAGE)
    async def resolve_image(self, request: steps.ResolveImageInput) -> steps.ResolveImageResult:
        target, current = request.image, request.scale_set.image_reference
        if target.definition != current.definition:
            # A reimage writes another version of the instance's own image (exactVersion); moving
            # to another image would take a model update and a manual upgrade of every instance.
            raise ApplicationError(
                f"the image of scale set {request.scale_set.name!r} ({current.with_version('')}) "
                f"cannot change to {target.with_version('')}: an upgrade moves instances to "
                "another version of the same image (publisher:offer:sku or gallery image)",
                type=RefusalCode.IMAGE_DEFINITION_CHANGED,
                non_retryable=True,
            )
        refusals = {
            "ImageNotFound": RefusalCode.IMAGE_NOT_FOUND,
            "ImageNotReplicatedToRegion": RefusalCode.IMAGE_NOT_REPLICATED,
        }
        with fleet_errors(refusals):
            image = await self.fleet.resolve_image(target, request.scale_set.location)
        return steps.ResolveImageResult(image=image)

    @activity.defn(name=steps.RESOLVE_EXTENSIONS)
    async def resolve_extensions(
        self, request: steps.ResolveExtensionsInput
    ) -> steps.ResolveExtensionsResult:
        """The exact version each asked extension moves to: the one asked for, or the newest of
        the model's major version published in the scale set's region. A new major version is
        never taken: it may break, and Azure applies one only through a model change."""
        view = request.scale_set
        model = {e.name.lower(): e for e in view.extensions}
        asked = request.extensions or [ExtensionRequest(name=e.name) for e in view.extensions]
        if not asked:
            raise ApplicationError(
                f"scale set {view.name!r} has no extensions in its model (extensionProfile)",
                type=RefusalCode.EXTENSION_NOT_FOUND,
                non_retryable=True,
            )
        targets = []
        for wanted in asked:
            extension = model.get(wanted.name.lower())
            if extension is None:
                known = ", ".join(sorted(e.name for e in view.extensions)) or "none"
                raise ApplicationError(
                    f"extensions: scale set {view.name!r} has no extension {wanted.name!r} in its model "
                    f"(its extensions: {known})",
                    type=RefusalCode.EXTENSION_NOT_FOUND,
                    non_retryable=True,
                )
            major = major_of(extension.type_handler_version)
            if wanted.version and major_of(wanted.version) != major:
                raise ApplicationError(
                    f"extensions: {extension.name} {wanted.version} is a new major version (the model has "
                    f"typeHandlerVersion {extension.type_handler_version}): a major version may break, so "
                    "it takes a change of the model, never an upgrade",
                    type=RefusalCode.EXTENSION_VERSION_NOT_FOUND,
                    non_retryable=True,
                )
            with fleet_errors():
                published = await self.fleet.extension_versions(
                    extension.publisher, extension.type_, view.location
                )
            version = wanted.version or newest_of_major(published, major)
            if version is None or version not in published:
                if not request.extensions:
                    continue  # every extension was asked for: this one has nothing to move to
                raise ApplicationError(
                    f"extensions: {extension.full_type} "
                    + (f"{wanted.version} is not" if wanted.version else f"has no version {major}.x")
                    + f" published in {view.location} (there: {', '.join(published) or 'none'})",
                    type=RefusalCode.EXTENSION_VERSION_NOT_FOUND,
                    non_retryable=True,
                )
            targets.append(
                ExtensionTarget(
                    name=extension.name,
                    publisher=extension.publisher,
                    type_=extension.type_,
                    version=version,
                    model_version=extension.type_handler_version,
                )
            )
        if not targets:
            raise ApplicationError(
                f"scale set {view.name!r} has no extension with a version published in {view.location}",
                type=RefusalCode.EXTENSION_VERSION_NOT_FOUND,
                non_retryable=True,
            )
        return steps.ResolveExtensionsResult(extensions=targets)

    @activity.defn(name=steps.INSTALL_EXTENSION)
    async def install_extension(self, request: steps.InstallExtensionInput) -> steps.OperationResult:
        """Install one extension version on one instance, at most once (as a reimage)."""
        target = request.extension

        def reached(instance: InstanceView) -> bool:
            return installed(instance, target.name) == target.version

        def failed(instance: InstanceView) -> tuple[str, str | None] | None:
            """The extension shows this version, failed: why, and since when (its status time)."""
            found = instance.extension(target.name)
            if found is not None and found.failed and found.type_handler_version == target.version:
                when = found.time.isoformat() if found.time else None
                return found.message or f"{target.name} {target.version}: {found.status}", when
            return None

        async def send() -> FleetOperation:
            return await self.fleet.begin_install_extension(
                request.scale_set, request.instance_id, target.name, target.version
            )

        with fleet_errors():
            operation = await self._exactly_once(
                OperationKind.INSTALL_EXTENSION,
                request.scale_set,
                request.instance_id,
                reached,
                send,
                failed=failed,
            )
        return steps.OperationResult(
            operation=operation.model_copy(
                update={"extension_name": target.name, "extension_version": target.version}
            )
        )

    @activity.defn(name=steps.REIMAGE_INSTANCE)
    async def reimage_instance(self, request: steps.ReimageInput) -> steps.OperationResult:
        target = request.image

        def reached(instance: InstanceView) -> bool:
            return instance.image_reference.same_image(target)

        async def send() -> FleetOperation:
            return await self.fleet.begin_reimage(request.scale_set, request.instance_id, target)

        with fleet_errors():
            operation = await self._exactly_once(
                OperationKind.REIMAGE,
                request.scale_set,
                request.instance_id,
                reached,
                send,
                request.restore_point,
            )
        return steps.OperationResult(operation=operation.model_copy(update={"image_reference": target}))

    @activity.defn(name=steps.RESTORE_OS_DISK)
    async def restore_os_disk(self, request: steps.RestoreInput) -> steps.OperationResult:
        """Bring the previous OS disk back. Uniform: one reimage back to the image version it
        had. Flexible: Azure swaps an OS disk only while the VM is deallocated, so three steps,
        deallocate, swap, start, each at most once: each is skipped when the VM's power state
        and OS disk show it done, so a retry resumes at the step the VM shows next."""
        scale_set, instance_id, point = request.scale_set, request.instance_id, request.os_disk

        def swapped(instance: InstanceView) -> bool:
            return same_restore_point(instance.restore_point, point)

        async def restore() -> FleetOperation:
            return await self.fleet.begin_restore(scale_set, instance_id, point)

        def power(kind: OperationKind) -> Send:
            return lambda: self.fleet.begin_power(scale_set, instance_id, kind)

        plan: list[tuple[OperationKind, Callable[[InstanceView], bool], Send]]
        plan = [(OperationKind.RESTORE, swapped, restore)]
        if is_disk_swap(point):
            plan = [
                (
                    OperationKind.DEALLOCATE,
                    lambda i: swapped(i) or i.power_state == DEALLOCATED,
                    power(OperationKind.DEALLOCATE),
                ),
                (OperationKind.RESTORE, swapped, restore),
                (
                    OperationKind.START,
                    lambda i: swapped(i) and i.power_state in RUNNING,
                    power(OperationKind.START),
                ),
            ]
        with fleet_errors():
            done = [
                await self._exactly_once(kind, scale_set, instance_id, reached, send)
                for kind, reached, send in plan
            ]
        swap = next(op for op in done if op.kind == OperationKind.RESTORE)
        # The swap's disks before and after; the actions of every step; done when the VM is up.
        update = {"request_count": sum(op.request_count for op in done), "end_time": done[-1].end_time}
        return steps.OperationResult(operation=swap.model_copy(update=update))

    async def _exactly_once(
        self,
        kind: OperationKind,
        scale_set: str,
        instance_id: str,
        reached: Callable[[InstanceView], bool],
        send: Callable[[], Awaitable[FleetOperation]],
        known_before: str | None = None,
        failed: Callable[[InstanceView], tuple[str, str | None] | None] | None = None,
    ) -> FleetOperation:
        """Bring the instance where `reached` says, with at most one accepted action.

        Azure has no idempotency key, so an action is never resent on doubt. Before sending,
        the instance is read: already there (an earlier attempt's action completed) is done;
        busy is an action in flight (ours from an attempt that died before its answer, or
        someone else's) to wait for. The operation sent is kept in the heartbeat details, so
        a retried attempt polls it instead of acting again. An error that leaves it unknown
        whether the action was accepted (a 5xx, a timeout, a dropped connection) is settled the
        same way: by reading the instance, never by resending blindly.
        """
        progress = Progress.resumed(kind)
        doubt = activity.info().attempt > 1 or progress.operation is not None
        while True:
            instance = await self._read_instance(scale_set, instance_id, progress)
            if instance is None:
                continue
            if progress.before is None and not reached(instance):
                progress.before = instance.restore_point
            if reached(instance) and not instance.busy:
                done = progress.done(kind, scale_set, instance, known_before)
                activity.logger.info(
                    "%s done: %s → %s (%s action(s) sent by this activity)",
                    kind.value,
                    done.previous_os_disk,
                    done.os_disk,
                    done.request_count,
                    extra={"scale_set": scale_set, "instance": instance_id, "step": kind.value},
                )
                return done
            if instance.busy:
                # Ours under way (or someone else's): the instance shows when it is done, read
                # with its set's other instances; the operation's own status is not read at all.
                progress.beat(waiting=f"instance is {instance.provisioning_state}")
                ours = progress.operation
                await asyncio.sleep(poll_seconds(ours.retry_after_seconds) if ours else MAX_POLL_SECONDS)
                continue
            if progress.operation is not None:
                # The instance shows neither our action done nor any under way: its operation
                # says whether it is yet to start, failed, or succeeded (and the view lags).
                operation = await self._poll(progress.operation)
                if operation is None:  # its status URL is gone: the instance is all there is
                    progress.operation = None
                    continue
                progress.operation = operation
                if operation.status == OperationStatus.IN_PROGRESS:
                    progress.beat()
                    await asyncio.sleep(poll_seconds(operation.retry_after_seconds))
                    continue
                if operation.status != OperationStatus.SUCCEEDED:
                    raise operation_failure(operation)
                # Ours succeeded, yet the instance does not show it: look again a few times
                # (a view may lag), then say so; sending it again could make it twice.
                progress.mismatches += 1
                if progress.mismatches > MAX_MISMATCHES:
                    shown = f"{instance.image_reference} on OS disk {instance.os_disk.name}"
                    if kind == OperationKind.INSTALL_EXTENSION:
                        shown += "".join(
                            f"; {e.name} {e.type_handler_version} ({e.status})" for e in instance.extensions
                        )
                    raise ApplicationError(
                        f"{kind.value} of {scale_set}/{instance_id} succeeded, but the instance runs {shown}",
                        type=FLEET_OPERATION_FAILED,
                        non_retryable=True,
                    )
                progress.beat(waiting="the instance does not show the operation yet")
                await asyncio.sleep(MAX_POLL_SECONDS)
                continue
            failure = failed(instance) if failed is not None else None
            if (
                doubt
                and failure is not None
                and (failure[1] is None or failure[1] != progress.failure_before)
            ):
                # A failure other than the one seen before sending: ours. Report it, never resend.
                raise ApplicationError(failure[0], type=EXTENSION_PROVISIONING_ERROR, non_retryable=True)
            if doubt and failed is None and instance.provisioning_state == "Failed":
                # Our earlier action may be the one that failed: report it, never resend.
                raise ApplicationError(
                    f"{kind.value} of {scale_set}/{instance_id} failed: the instance is in provisioning "
                    f"state Failed ({instance.error_code or 'no error code'})",
                    type=instance.error_code or FLEET_OPERATION_FAILED,
                    non_retryable=True,
                )
            progress.failure_before = failure[1] if failure is not None else None
            progress.beat()  # the restore point and any failure before the action, before it
            try:
                progress.operation = await send()
                progress.sent += 1
                progress.beat()
            except FleetTransientError as err:
                doubt = doubt or err.maybe_accepted
                activity.logger.info(
                    "%s of %s/%s not confirmed (%s); reading the instance before anything else",
                    kind.value,
                    scale_set,
                    instance_id,
                    err.code,
                )
                progress.beat(waiting=err.code)
                await asyncio.sleep(backoff_seconds(err.retry_after, progress.errors))
                progress.errors += 1

    async def _poll(self, operation: FleetOperation) -> FleetOperation | None:
        try:
            return await self.fleet.get_operation(operation)
        except FleetTransientError as err:
            await asyncio.sleep(backoff_seconds(err.retry_after, 1))
            return operation
        except FleetRequestError as err:
            if err.code in GONE_CODES:
                return None
            raise

    async def _read_instance(
        self, scale_set: str, instance_id: str, progress: Progress
    ) -> InstanceView | None:
        """The instance now; None after a transient error (the caller loops). A deleted
        instance ends the activity: its code says it is gone."""
        try:
            # Once our action is sent, the batch's looks share the set's regular reads.
            watching = progress.operation is not None
            return await self.fleet.get_instance(scale_set, instance_id, watching=watching)
        except FleetTransientError as err:
            # Through `progress`: a heartbeat replaces the details the next attempt resumes
            # from, so each one must still name the operation sent (else a retry resends it).
            progress.beat(waiting=err.code)
            await asyncio.sleep(backoff_seconds(err.retry_after, 1))
            return None

    @activity.defn(name=steps.WAIT_FOR_HEALTH)
    async def wait_for_health(self, request: steps.HealthInput) -> steps.HealthResult:
        """Look every intervalInSeconds until the instance is Healthy (every half interval while
        it says it is initializing).

        Each look is the platform's verdict, counted by whatever reports health: the extension
        says Healthy only after its numberOfProbes in a row and Initializing through its own
        grace period, a load balancer marks an instance Up after its probe threshold. So one
        Healthy look is healthy: counting numberOfProbes again would only delay it. Inside the
        grace period any other look means the instance is still warming up; after it, a failing
        look ends the activity with that state and the workflow looks again later, until its
        deadline (a durable timer).
        """
        settings = request.health
        started = next_probe = time.monotonic()
        probes = 0
        beat = Heartbeat()
        while True:
            with fleet_errors():
                probe = await self.fleet.probe_health(request.scale_set, request.instance_id, settings)
            probes += 1
            if probe.state == HealthState.HEALTHY:
                activity.logger.info(
                    "healthy after %s look(s)",
                    probes,
                    extra={"scale_set": request.scale_set, "instance": request.instance_id},
                )
                return steps.HealthResult(state=HealthState.HEALTHY, probes=probes)
            in_grace = time.monotonic() - started < request.grace_remaining_seconds
            if not in_grace and probe.state in FAILING_STATES:
                return steps.HealthResult(state=probe.state, probes=probes, detail=probe.detail)
            state = HealthState.INITIALIZING if in_grace else probe.state
            # The probe count alone is no news: a heartbeat when the state or its detail changes.
            details = {"probes": probes, "state": state.value, "detail": probe.detail}
            beat(details, news=(state, probe.detail))
            # Still initializing (booting): it turns Healthy between two of the extension's
            # probes, so look again in half an interval (the set's reads allow two an interval:
            # fleet/azure/backend.py). Other looks are an interval apart.
            booting = probe.state == HealthState.INITIALIZING
            interval = settings.interval_in_seconds / (2 if booting else 1)
            next_probe = await on_cadence(next_probe, interval)

    @activity.defn(name=steps.PROBE_HEALTH)
    async def probe_health(self, request: steps.HealthInput) -> steps.HealthResult:
        """The last look at the health-wait deadline: the platform's verdict now (one look;
        wait_for_health says why numberOfProbes is not counted again)."""
        with fleet_errors():
            probe = await self.fleet.probe_health(request.scale_set, request.instance_id, request.health)
        activity.heartbeat({"probes": 1, "state": probe.state.value, "detail": probe.detail})
        return steps.HealthResult(state=probe.state, probes=1, detail=probe.detail)

    # --- MaxSurge: new instances from the target model, then the old ones deleted -----------------

    @activity.defn(name=steps.SURGE_ROOM)
    async def surge_room(self, request: steps.SurgeRoomInput) -> steps.SurgeRoomResult:
        """Azure's check before each surge batch: room in the region's vCPU quota (the set's VM
        family and the regional total) for the batch's new instances."""
        with fleet_errors({"ResourceNotFound": RefusalCode.SCALE_SET_NOT_FOUND}):
            quota = await self.fleet.core_quota(request.scale_set)
        result = surge_room(quota, request.count)
        activity.logger.info(
            "room for %s new instance(s): %s%s",
            request.count,
            result.room,
            f" ({result.detail})" if result.detail else "",
            extra={"scale_set": request.scale_set},
        )
        return result

    @activity.defn(name=steps.CREATE_INSTANCES)
    async def create_instances(self, request: steps.CreateInstancesInput) -> steps.CreateInstancesResult:
        """Raise the set's capacity by `count` exactly once, from a model on the target image,
        and wait until the new instances are provisioned (their health is the workflow's wait).

        ARM has no idempotency key and a raise computed twice creates twice, so the set is read
        before anything is sent: instances not in `known` are already created, and a capacity
        that covers the kept instances plus `count` is a raise already accepted (ours, from an
        attempt whose answer was lost): it is waited for, never sent again. The raise sent is
        kept in the heartbeat details, where a retried attempt finds it."""
        progress = Progress.resumed(OperationKind.CREATE)
        known = set(request.known)
        with fleet_errors():
            while True:
                view = await self._read_set(request.scale_set, progress)
                if view is None:
                    continue
                live = [i for i in view.instances if i.provisioning_state != DELETING]
                new = [i for i in live if i.instance_id not in known]
                wanted = len(live) - len(new) + request.count
                capacity = len(live) if view.capacity is None else view.capacity
                if len(new) >= request.count or capacity >= wanted:
                    creating = [i.instance_id for i in new if i.provisioning_state == CREATING]
                    if len(new) >= request.count and not creating:
                        return self._created(request, new, progress)
                    progress.beat(waiting=f"{len(creating)} instance(s) creating, {len(new)} listed")
                    await asyncio.sleep(self._poll_wait(progress))
                    continue
                if progress.operation is not None and not await self._settled(progress, "the capacity"):
                    continue
                if not await self._model_on(view, request.image):
                    # Desired state, so harmless twice: the next read shows it applied.
                    await self._send(progress, self.fleet.begin_set_model_image(view.name, request.image))
                    continue
                raise_to = self.fleet.begin_scale_out(view.name, wanted, view.vm_size)
                await self._send(progress, raise_to, f"capacity {wanted}")

    @activity.defn(name=steps.DELETE_INSTANCES)
    async def delete_instances(self, request: steps.DeleteInstancesInput) -> steps.DeleteInstancesResult:
        """Delete these instances exactly once and wait until they are gone: the set is read
        before anything is sent, and only instances still there and not busy (Deleting is busy)
        are sent; the delete sent is kept in the heartbeat details for a retried attempt."""
        progress = Progress.resumed(OperationKind.DELETE)
        wanted = list(dict.fromkeys(request.instance_ids))
        with fleet_errors():
            while True:
                view = await self._read_set(request.scale_set, progress)
                if view is None:
                    continue
                present = [i for i in view.instances if i.instance_id in wanted]
                if not present:
                    activity.logger.info(
                        "%s instance(s) deleted (%s delete(s) sent by this activity)",
                        len(wanted),
                        progress.sent,
                        extra={"scale_set": request.scale_set},
                    )
                    return steps.DeleteInstancesResult(deleted=wanted)
                idle = [i.instance_id for i in present if not i.busy]
                ours = set(progress.operation.instance_id.split(",")) if progress.operation else set()
                if not idle:
                    progress.beat(waiting=f"{len(present)} instance(s) still there, none idle")
                    await asyncio.sleep(self._poll_wait(progress))
                elif ours.intersection(idle):
                    # Sent, accepted, and not shown deleting: the operation says what became of it.
                    await self._settled(progress, "the instances")
                else:
                    await self._send(progress, self.fleet.begin_delete_instances(view.name, idle))

    def _created(
        self, request: steps.CreateInstancesInput, new: list[InstanceView], progress: Progress
    ) -> steps.CreateInstancesResult:
        new = sorted(new, key=lambda i: natural_key(i.instance_id))
        activity.logger.info(
            "%s instance(s) created: %s (%s raise(s) sent by this activity)",
            len(new),
            ", ".join(i.instance_id for i in new),
            progress.sent,
            extra={"scale_set": request.scale_set},
        )
        return steps.CreateInstancesResult(
            instance_ids=[i.instance_id for i in new], zones={i.instance_id: i.zone for i in new}
        )

    async def _model_on(self, view: ScaleSetView, target: ImageReference) -> bool:
        """New instances would get the target: the model names it ('latest' resolved)."""
        model = view.image_reference
        if model.version == LATEST:
            model = await self.fleet.resolve_image(model, view.location)
        return model.same_image(target)

    async def _read_set(self, scale_set: str, progress: Progress) -> ScaleSetView | None:
        """The set now; None after a transient error (the caller loops)."""
        try:
            return await self.fleet.get_scale_set(scale_set)
        except FleetTransientError as err:
            progress.beat(waiting=err.code)  # still naming the operation sent
            await asyncio.sleep(backoff_seconds(err.retry_after, 1))
            return None

    async def _send(
        self, progress: Progress, send: Awaitable[FleetOperation | None], detail: object = None
    ) -> None:
        """Send one action; an error that leaves it unknown whether it was accepted is settled by
        the next read of the set, never by sending again blindly."""
        try:
            operation = await send
        except FleetTransientError as err:
            activity.logger.info(
                "%s not confirmed (%s); reading the scale set before anything else",
                progress.kind.value,
                err.code,
            )
            progress.beat(waiting=err.code)
            await asyncio.sleep(backoff_seconds(err.retry_after, progress.errors))
            progress.errors += 1
            return
        if operation is not None:
            progress.operation = operation
            progress.sent += 1
            progress.mismatches = 0
            activity.logger.info("%s sent (%s)", progress.kind.value, detail or operation.instance_id)
        progress.beat()

    async def _settled(self, progress: Progress, what: str) -> bool:
        """Our accepted operation, which the set does not show: waits while it runs (False),
        raises if it failed, and once it succeeded gives the set a few reads to show it before
        raising (False). True when its status URL is gone: the set is all there is to act on."""
        assert progress.operation is not None
        operation = await self._poll(progress.operation)
        if operation is None:  # its status URL is gone: the set is all there is
            progress.operation = None
            return True
        progress.operation = operation
        if operation.status == OperationStatus.IN_PROGRESS:
            progress.beat()
            await asyncio.sleep(poll_seconds(operation.retry_after_seconds))
            return False
        if operation.status != OperationStatus.SUCCEEDED:
            raise operation_failure(operation)
        progress.mismatches += 1
        if progress.mismatches > MAX_MISMATCHES:
            raise ApplicationError(
                f"{operation.kind.value} on {operation.scale_set} succeeded, but {what} do not show it",
                type=FLEET_OPERATION_FAILED,
                non_retryable=True,
            )
        progress.beat(waiting="the scale set does not show the operation yet")
        await asyncio.sleep(MAX_POLL_SECONDS)
        return False

    @staticmethod
    def _poll_wait(progress: Progress) -> float:
        operation = progress.operation
        return poll_seconds(operation.retry_after_seconds) if operation else MAX_POLL_SECONDS
