"""Exactly-once extension installs on a cloud that deduplicates nothing (two PATCHes of an
instance's extension are two installs): a worker SIGKILLed between an install's PATCH and its
answer, during the reinstall of a rollback, and while a failing version's install is in flight; a
500 or a dropped connection after the install (or the reinstall) was accepted.

Every test reads the emulator's log of accepted operations: exactly one install of the new version
per upgraded instance, exactly one reinstall of the previous version per rolled-back instance,
and the upgrade's final status as the fault spec makes it (Completed; Faulted after a rollback).

The crashes use worker processes on the session's dev server, as tests/activities/test_exactly_once.py does
for reimages; the faults on the PATCH itself in-process workers on the same dev server, whose back
end arms the fault in the emulator just before the PATCH and disarms it after. Each test runs its
upgrades side by side, to keep the file fast. Last, the activity alone: what an attempt leaves in
its heartbeat for the next one, and a failure an earlier upgrade left (not taken for its own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import fleet_activities
from activities.fleet_activities import FleetActivities
from fleet.azure.backend import AzureFleet
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetError, FleetTransientError
from models import steps
from models.change import ExtensionRequest, ExtensionTarget
from models.fleet import (
    FaultSpec,
    FleetOperation,
    InstanceView,
    OperationKind,
    OperationStatus,
    ScaleSetSpec,
    TimingSpec,
)
from models.policy import RollingUpgradePolicy
from models.status import RollingUpgradeStatusCode
from models.upgrade import InstanceState, UpgradeReport, UpgradeRequest
from starter.upgrades import final_report, start_upgrade
from tests.helpers.upgrades import QUICK_HEALTH, V1, WorkerProcesses, eventually, product_worker

PUBLISHER = "Contoso.Monitoring"
OLD, NEW = "1.2.0", "1.3.0"
COMPLETED = RollingUpgradeStatusCode.COMPLETED
FAULTED = RollingUpgradeStatusCode.FAULTED
# Every ARM answer of the scale set comes this late, after its request took effect: an install
# PATCH is accepted at once and its answer (the status URL) is still on its way when the test,
# polling the emulator's log every 0.1 s, kills the worker.
SLOW_ANSWERS = FaultSpec(timeout_share=1.0, timeout_seconds=0.8)
# An install takes a second: still running when the worker dies.
SLOW_INSTALL = TimingSpec(
    reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0, 0], extension_seconds=[1, 1]
)


# --- scale sets with an extension, and what the emulator logged ------------------------------


async def extension_scale_set(
    fleet: EmulatorAdmin, capacity: int, timing: TimingSpec, faults: FaultSpec
) -> tuple[str, str]:
    """A scale set whose instances run extension `agent` (a type of its own) at OLD; NEW is
    published (and 2.0.0, a new major an upgrade never takes). Returns (scale set, type)."""
    type_ = f"Agent{uuid.uuid4().hex[:6]}"
    for version in (OLD, NEW, "2.0.0"):
        await fleet.publish_extension_version(PUBLISHER, type_, version)
    name = f"extd-{uuid.uuid4().hex[:10]}"
    await fleet.create_scale_set(
        ScaleSetSpec.model_validate(
            {
                "name": name,
                "location": "westeurope",
                "capacity": capacity,
                "updateDomainCount": 1,
                "imageReference": V1.to_json(),
                "timing": timing.to_json(),
                "faults": faults.to_json(),
                "extensions": [
                    {
                        "name": "agent",
                        "publisher": PUBLISHER,
                        "type": type_,
                        "typeHandlerVersion": "1.2",
                        "autoUpgradeMinorVersion": False,
                    }
                ],
            }
        )
    )
    return name, type_


def extension_upgrade(name: str, **policy: Any) -> UpgradeRequest:
    return UpgradeRequest(
        scale_set=name,
        extensions=[ExtensionRequest(name="agent")],
        health=QUICK_HEALTH,
        policy=RollingUpgradePolicy.model_validate(policy),
    )


def installs(ops: list[FleetOperation]) -> dict[str, list[str]]:
    """Every accepted install per instance, in the order sent: the versions."""
    done: dict[str, list[str]] = {}
    for op in sorted(ops, key=lambda o: o.start_time):
        if op.kind == OperationKind.INSTALL_EXTENSION:
            done.setdefault(op.instance_id, []).append(op.extension_version or "?")
    return done


async def versions(fleet: EmulatorAdmin, name: str) -> dict[str, tuple[str | None, str]]:
    """Each instance's `agent`: its version and provisioning status."""
    view = await fleet.show_scale_set(name)
    found = {i.instance_id: i.extension("agent") for i in view.instances}
    return {i: (e.type_handler_version, e.status) if e else (None, "missing") for i, e in found.items()}


def code_of(report: UpgradeReport) -> str:
    assert report.status.properties is not None
    return report.status.properties.running_status.code


# --- a worker SIGKILLed mid-install ------------------------------------------------------------

Moment = Callable[[list[FleetOperation]], bool]


def accepted(version: str, status: OperationStatus | None = None) -> Moment:
    """An install of `version` has been accepted (and, if `status` is given, is in that state)."""
    return lambda ops: any(
        op.kind == OperationKind.INSTALL_EXTENSION
        and op.extension_version == version
        and status in (None, op.status)
        for op in ops
    )


@dataclass
class Crash:
    """One upgrade whose worker is SIGKILLed at `moment`, as the emulator's log shows it."""

    capacity: int
    moment: Moment
    faults: FaultSpec = field(default_factory=FaultSpec)
    # When the answers turn slow (None: from the start). They must be slow before the PATCH the
    # kill is aimed at; slow earlier too, they only make the upgrade slower.
    slow_from: Moment | None = None
    name: str = ""
    report: UpgradeReport | None = None
    at_kill: list[FleetOperation] = field(default_factory=list)
    ops: list[FleetOperation] = field(default_factory=list)


async def crash(local_env: Any, fleet: EmulatorAdmin, emulator: Any, tmp_path: Any, run: Crash) -> Crash:
    slow = run.faults.model_copy(
        update={"timeout_share": SLOW_ANSWERS.timeout_share, "timeout_seconds": SLOW_ANSWERS.timeout_seconds}
    )
    run.name, _ = await extension_scale_set(
        fleet, run.capacity, SLOW_INSTALL, run.faults if run.slow_from else slow
    )
    address = local_env.client.service_client.config.target_host
    workers = WorkerProcesses(address, emulator, tmp_path)
    await workers.start()
    try:
        handle, _ = await start_upgrade(local_env.client, extension_upgrade(run.name), workers.task_queue)
        if run.slow_from is not None:
            await eventually(lambda: fleet.operations(run.name), run.slow_from, timeout=60)
            await fleet.set_faults(run.name, slow)
        run.at_kill = await eventually(lambda: fleet.operations(run.name), run.moment, timeout=60)
        await workers.crash()  # SIGKILL, and a new worker process takes over
        await fleet.set_faults(run.name, run.faults)  # answers on time from now on
        run.report = await asyncio.wait_for(final_report(handle), 120)
        run.ops = await fleet.operations(run.name)
    finally:
        workers.stop()
    return run


def in_flight_at_kill(run: Crash, version: str) -> FleetOperation:
    """The one install of `version` the dead worker had sent: still running when it died, and
    the one its instance got (the new worker read the instance and sent nothing)."""
    [caught] = [
        op
        for op in run.at_kill
        if op.kind == OperationKind.INSTALL_EXTENSION and op.extension_version == version
    ]
    assert caught.status == OperationStatus.IN_PROGRESS
    final = {op.operation_id: op for op in run.ops}
    assert caught.operation_id in final
    return final[caught.operation_id]


@pytest.mark.durability
async def test_a_worker_killed_mid_install_or_mid_reinstall_never_installs_twice(
    local_env, fleet, emulator, tmp_path
):
    # Three upgrades side by side, each with its worker process killed between a PATCH and its
    # answer: the install of a good version, the reinstall after a version that breaks health,
    # the install of a version whose install fails.
    good, unhealthy, failing = await asyncio.gather(
        crash(local_env, fleet, emulator, tmp_path, Crash(capacity=2, moment=accepted(NEW))),
        crash(
            local_env,
            fleet,
            emulator,
            tmp_path,
            Crash(
                capacity=1,
                moment=accepted(OLD),
                faults=FaultSpec(unhealthy_extension_versions=[f"agent:{NEW}"]),
                # The 2 s health wait lies between the install's end and the reinstall's PATCH.
                slow_from=accepted(NEW, OperationStatus.SUCCEEDED),
            ),
        ),
        crash(
            local_env,
            fleet,
            emulator,
            tmp_path,
            Crash(
                capacity=1,
                moment=accepted(NEW),
                faults=FaultSpec(failing_extension_versions=[f"agent:{NEW}"]),
            ),
        ),
    )

    # The good version: one install each, and instance 0's is the one the dead worker sent.
    assert good.report is not None and code_of(good.report) == COMPLETED
    assert [p.state for p in good.report.instances] == [InstanceState.SUCCEEDED] * 2
    assert installs(good.ops) == {"0": [NEW], "1": [NEW]}
    assert in_flight_at_kill(good, NEW).status == OperationStatus.SUCCEEDED
    assert installs(good.at_kill) == {"0": [NEW]}
    assert await versions(fleet, good.name) == {i: (NEW, "ProvisioningState/succeeded") for i in ("0", "1")}

    # The version that breaks health: installed once, reinstalled back once (the reinstall the
    # dead worker sent), rolled back and healthy; one of one failed faults the upgrade.
    assert unhealthy.report is not None and code_of(unhealthy.report) == FAULTED
    [instance] = unhealthy.report.instances
    assert (instance.state, instance.restored) == (InstanceState.ROLLED_BACK, True)
    assert "reinstalled agent 1.2.0" in (instance.message or "")
    assert installs(unhealthy.ops) == {"0": [NEW, OLD]}
    assert in_flight_at_kill(unhealthy, OLD).status == OperationStatus.SUCCEEDED
    assert await versions(fleet, unhealthy.name) == {"0": (OLD, "ProvisioningState/succeeded")}

    # The failing version: the new worker found the dead worker's install failed (it never sent
    # it again) and rolled back at once with the provisioning error.
    assert failing.report is not None and code_of(failing.report) == FAULTED
    [instance] = failing.report.instances
    assert (instance.state, instance.restored) == (InstanceState.ROLLED_BACK, True)
    assert (instance.cause, instance.code) == ("Install", "VMExtensionProvisioningError")
    assert installs(failing.ops) == {"0": [NEW, OLD]}
    assert in_flight_at_kill(failing, NEW).status == OperationStatus.FAILED
    assert await versions(fleet, failing.name) == {"0": (OLD, "ProvisioningState/succeeded")}
    assert all(op.status == OperationStatus.SUCCEEDED for op in failing.ops if op.extension_version == OLD)


# --- a 500 or a dropped connection after the PATCH was accepted ---------------------------------

ACCEPTED = "accepted"
ERROR_500 = "InternalServerError"
DROPPED = "ConnectionDropped"
# The fault on a PATCH: a 500 after the install took effect (or before: nothing was installed),
# a connection dropped after it took effect (the client sees no HTTP status).
LOST_ANSWERS = {
    ERROR_500: FaultSpec(transient_error_share=1.0, transient_status_codes=[500], after_accept_share=1.0),
    DROPPED: FaultSpec(dropped_connection_share=1.0),
}
REFUSED_500 = FaultSpec(transient_error_share=1.0, transient_status_codes=[500], after_accept_share=0.0)
INSTANT_INSTALL = TimingSpec(
    reimage_seconds=[0, 0], restore_seconds=[0, 0], boot_seconds=[0, 0], extension_seconds=[0, 0]
)


class ArmedInstalls:
    """The product's AzureFleet, unchanged but for this: the first install PATCH of each
    (instance, version) in `armed` is sent with that fault added to its scale set's own `faults`
    (which are set again right after). `answers[(instance, version)]` is what each PATCH got:
    ACCEPTED or the fleet error's code."""

    def __init__(
        self, azure: AzureFleet, fleet: EmulatorAdmin, armed: dict[str, FaultSpec], faults: FaultSpec
    ) -> None:
        self.azure, self.fleet, self.faults = azure, fleet, faults
        self.armed = {
            version: faults.model_copy(update=fault.model_dump(by_alias=False, exclude_unset=True))
            for version, fault in armed.items()
        }
        self.answers: dict[tuple[str, str], list[str]] = {}
        self._one_at_a_time = asyncio.Lock()  # faults are per scale set: one armed window at a time

    def __getattr__(self, name: str) -> Any:
        return getattr(self.azure, name)

    async def begin_install_extension(
        self, scale_set: str, instance_id: str, extension_name: str, version: str
    ) -> FleetOperation:
        key = (instance_id, version)
        fault = self.armed.get(version) if key not in self.answers else None
        answers = self.answers.setdefault(key, [])
        async with self._one_at_a_time:
            if fault is not None:
                await self.fleet.set_faults(scale_set, fault)
            try:
                operation = await self.azure.begin_install_extension(
                    scale_set, instance_id, extension_name, version
                )
                answers.append(ACCEPTED)
                return operation
            except FleetError as err:
                answers.append(err.code)
                raise
            finally:
                if fault is not None:
                    await self.fleet.set_faults(scale_set, self.faults)


@dataclass
class LostAnswer:
    """One upgrade of two instances (one at a time) whose install PATCHes meet `armed` faults,
    and what must come of it."""

    armed: dict[str, FaultSpec]  # version -> the fault on its PATCH
    answers: dict[tuple[str, str], list[str]]  # what each PATCH got
    installs: dict[str, list[str]]  # what the emulator accepted: the versions per instance
    code: str  # the upgrade's final status
    timing: TimingSpec = field(default_factory=lambda: SLOW_INSTALL)
    faults: FaultSpec = field(default_factory=FaultSpec)  # the scale set's own


LOST = {
    # The read after the doubt finds the install still running (wait for it), or done already
    # (a resend would be accepted: a second install).
    "500-after-accept, install in flight": LostAnswer(
        armed={NEW: LOST_ANSWERS[ERROR_500]},
        answers={("0", NEW): [ERROR_500], ("1", NEW): [ERROR_500]},
        installs={"0": [NEW], "1": [NEW]},
        code=COMPLETED,
    ),
    "dropped, install done": LostAnswer(
        armed={NEW: LOST_ANSWERS[DROPPED]},
        answers={("0", NEW): [DROPPED], ("1", NEW): [DROPPED]},
        installs={"0": [NEW], "1": [NEW]},
        code=COMPLETED,
        timing=INSTANT_INSTALL,
    ),
    # A 500 before the PATCH took effect: the read shows nothing installed, so it is sent again,
    # once.
    "500 before accept": LostAnswer(
        armed={NEW: REFUSED_500},
        answers={("0", NEW): [ERROR_500, ACCEPTED], ("1", NEW): [ERROR_500, ACCEPTED]},
        installs={"0": [NEW], "1": [NEW]},
        code=COMPLETED,
    ),
    # A version that breaks health: the install and the reinstall of the previous version both
    # lose their answer; instance 1 is never touched (one of one failed faults the upgrade).
    "breaks health, 500-after-accept on install and reinstall": LostAnswer(
        armed={NEW: LOST_ANSWERS[ERROR_500], OLD: LOST_ANSWERS[ERROR_500]},
        answers={("0", NEW): [ERROR_500], ("0", OLD): [ERROR_500]},
        installs={"0": [NEW, OLD]},
        code=FAULTED,
        faults=FaultSpec(unhealthy_extension_versions=[f"agent:{NEW}"]),
    ),
    # A version whose install fails: the read after the doubt finds it failed (reported, never
    # resent) and the reinstall, on an instance whose provisioning state is Failed, is sent once.
    "fails to install, dropped on install and reinstall": LostAnswer(
        armed={NEW: LOST_ANSWERS[DROPPED], OLD: LOST_ANSWERS[DROPPED]},
        answers={("0", NEW): [DROPPED], ("0", OLD): [DROPPED]},
        installs={"0": [NEW, OLD]},
        code=FAULTED,
        faults=FaultSpec(failing_extension_versions=[f"agent:{NEW}"]),
    ),
}


async def lost_answer(
    env: WorkflowEnvironment, azure: AzureFleet, fleet: EmulatorAdmin, case: LostAnswer
) -> tuple[str, UpgradeReport, ArmedInstalls]:
    name, _ = await extension_scale_set(fleet, 2, case.timing, case.faults)
    backend = ArmedInstalls(azure, fleet, case.armed, case.faults)
    async with product_worker(env, backend) as worker:
        handle, _ = await start_upgrade(env.client, extension_upgrade(name), worker.task_queue)
        report = await asyncio.wait_for(final_report(handle), 60)
    return name, report, backend


async def test_an_install_or_reinstall_whose_answer_was_lost_is_settled_by_reading_not_by_resending(
    local_env, azure, fleet
):
    # In-process workers on the dev server, every case side by side (each on its own scale set).
    results = await asyncio.gather(*(lost_answer(local_env, azure, fleet, c) for c in LOST.values()))

    for (case_id, case), (name, report, backend) in zip(LOST.items(), results, strict=True):
        ops = await fleet.operations(name)
        assert backend.answers == case.answers, case_id
        assert installs(ops) == case.installs, case_id
        assert code_of(report) == case.code, case_id
        touched = {i for i, _ in case.answers}
        expected = (
            (OLD, "ProvisioningState/succeeded")
            if case.code == FAULTED
            else (NEW, "ProvisioningState/succeeded")
        )
        assert {i: v for i, v in (await versions(fleet, name)).items() if i in touched} == {
            i: expected for i in touched
        }, case_id
        for instance in report.instances:
            if instance.instance_id not in touched:
                assert instance.state == InstanceState.NOT_STARTED, case_id
            elif case.code == COMPLETED:
                assert instance.state == InstanceState.SUCCEEDED, case_id
            else:
                assert (instance.state, instance.restored) == (InstanceState.ROLLED_BACK, True), case_id
                assert "reinstalled agent 1.2.0" in (instance.message or ""), case_id
                if case.faults.failing_extension_versions:
                    assert (instance.cause, instance.code) == ("Install", "VMExtensionProvisioningError"), (
                        case_id
                    )


# --- what an attempt leaves in its heartbeat for the next one ----------------------------------


class Scripted:
    """The product's AzureFleet, but for reads of instances: `on_read(view)` may replace the
    view read (with an older one: a lagging view) or raise instead; and the first `refuse`
    install PATCHes answer a 500 that came before the request took effect (nothing sent)."""

    def __init__(
        self,
        azure: AzureFleet,
        on_read: Callable[[InstanceView], InstanceView] = lambda v: v,
        refuse: int = 0,
    ) -> None:
        self.azure, self.on_read, self.refuse = azure, on_read, refuse
        self.sent: list[FleetOperation] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.azure, name)

    async def begin_install_extension(self, *args: str) -> FleetOperation:
        if self.refuse > 0:
            self.refuse -= 1
            raise FleetTransientError("InternalServerError", "refused", 500, maybe_accepted=True)
        operation = await self.azure.begin_install_extension(*args)
        self.sent.append(operation)
        return operation

    async def get_instance(self, scale_set: str, instance_id: str, *, watching: bool = False) -> InstanceView:
        return self.on_read(await self.azure.get_instance(scale_set, instance_id, watching=watching))


async def test_a_failed_read_after_the_patch_keeps_the_install_in_the_heartbeat_so_a_retry_never_resends(
    fleet, azure, monkeypatch
):
    monkeypatch.setattr(fleet_activities, "MAX_POLL_SECONDS", 0.05)  # looks again sooner
    name, type_ = await extension_scale_set(fleet, 1, INSTANT_INSTALL, FaultSpec())
    before = await azure.get_instance(name, "0")
    target = ExtensionTarget(name="agent", publisher=PUBLISHER, type_=type_, version=NEW, model_version="1.2")
    request = steps.InstallExtensionInput(scale_set=name, instance_id="0", extension=target, operation_id="x")

    # Attempt 1: the install is accepted (and done); the read that would confirm it times out,
    # and the worker dies during the pause after it.
    first = ActivityEnvironment()
    beats: list[Any] = []
    first.on_heartbeat = lambda *details: beats.append(details[-1] if details else None)

    def times_out_once_sent(view: InstanceView) -> InstanceView:
        if not dying.sent:
            return view
        first.cancel()
        raise FleetTransientError("GatewayTimeout", "the read timed out", 504)

    dying = Scripted(azure, on_read=times_out_once_sent)
    with pytest.raises(asyncio.CancelledError):
        await first.run(FleetActivities(dying).install_extension, request)
    [sent] = dying.sent

    # What the server hands the next attempt is the last heartbeat that reached it: each one
    # after the PATCH must name the install (its status URL), or the next attempt cannot know
    # that it was sent.
    assert beats and isinstance(beats[-1], dict)
    assert (beats[-1].get("operation") or {}).get("operationId") == sent.operation_id, beats[-1]

    # Attempt 2, from that heartbeat, reads a view that lags a little (the instance as it was
    # before the install): knowing its install succeeded, it waits for the view; not knowing, it
    # would send the install again, a second install.
    second = ActivityEnvironment()
    second.info = dataclasses.replace(second.info, attempt=2, heartbeat_details=[beats[-1]])
    lags = iter([before, before])
    result = await second.run(
        FleetActivities(Scripted(azure, on_read=lambda view: next(lags, view))).install_extension,
        request,
    )
    assert installs(await fleet.operations(name)) == {"0": [NEW]}
    assert result.operation.operation_id == sent.operation_id
    assert result.operation.request_count == 1


async def test_a_failure_an_earlier_upgrade_left_is_not_taken_for_this_install(fleet, azure):
    name, type_ = await extension_scale_set(
        fleet, 1, INSTANT_INSTALL, FaultSpec(failing_extension_versions=[f"agent:{NEW}"])
    )
    # An earlier upgrade without rollback left NEW failed on the instance; the publisher has
    # fixed NEW since (a handler that failed for a passing reason: the same version is retried).
    await azure.begin_install_extension(name, "0", "agent", NEW)
    await eventually(
        lambda: azure.get_instance(name, "0"),
        lambda i: not i.busy and (e := i.extension("agent")) is not None and e.failed,
    )
    await fleet.fix_extension_version(PUBLISHER, type_, NEW)
    target = ExtensionTarget(name="agent", publisher=PUBLISHER, type_=type_, version=NEW, model_version="1.2")
    request = steps.InstallExtensionInput(scale_set=name, instance_id="0", extension=target, operation_id="x")

    # This upgrade's PATCH meets a 500 before it took effect: nothing of ours was installed, and
    # the instance still shows the earlier failure.
    backend = Scripted(azure, refuse=1)
    result = await ActivityEnvironment().run(FleetActivities(backend).install_extension, request)

    assert installs(await fleet.operations(name)) == {"0": [NEW, NEW]}  # the earlier one, and ours
    assert result.operation.request_count == 1
    assert await versions(fleet, name) == {"0": (NEW, "ProvisioningState/succeeded")}
