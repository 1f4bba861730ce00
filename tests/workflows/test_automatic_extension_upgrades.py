"""Automatic extension upgrades on the watcher and its availability-first rollouts (seed 003), on the
time-skipping server, through the Azure SDK to the emulator: extensions are enrolled one by one
(without OS image upgrades, if so chosen; one Azure upgrades itself, enableAutomaticUpgrade on, is
refused); a new minor or patch version of an enrolled extension rolls to every set that enrolled
it, never a new major and never an extension not enrolled; two extensions due at once roll
independently (one rolled back, the other completes); a failed version is retried after the
retry interval, not before, and succeeds once the publisher fixes it; and the rollout keeps
availability first, as for OS images. Everything is asserted from the emulator's log of accepted
installs."""

from __future__ import annotations

import collections
import contextlib
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from fleet.emulator.admin import EmulatorAdmin
from models.automatic import (
    CHECK_NOW_SIGNAL,
    ENROLL_UPDATE,
    PLATFORM,
    ROLLOUT_CANCEL_SIGNAL,
    Enrollment,
    EnrollRequest,
    HoldRequest,
    RolloutSetState,
    RolloutState,
    RolloutStatus,
    WithdrawRequest,
    watcher_workflow_id,
)
from models.fleet import FaultSpec, HealthState, OperationKind
from models.policy import AutomaticOSUpgradePolicy, RollingUpgradePolicy
from models.upgrade import UpgradeReport, upgrade_workflow_id
from tests.helpers.automatic import (
    POLICY,
    Images,
    assert_availability_first,
    enroll,
    finished,
    rollout_status,
    watcher,
    withdraw,
)
from tests.helpers.automatic_extensions import (
    INSTANT,
    PUBLISHER,
    enrolled,
    extension,
    installed,
    installs,
    make_set,
    publish,
    rollout,
    rollouts,
    unique_type,
    versions_now,
)
from tests.helpers.upgrades import eventually
from workflows.rollout import details


async def test_a_new_minor_version_rolls_to_every_opted_in_extension_never_a_major_nor_one_left_off(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    agent, other = unique_type("Agent"), unique_type("Other")
    await publish(fleet, agent, "1.2.0")
    await publish(fleet, other, "1.2.0")
    # The same extension under another name in the second set; one extension left off in both.
    west = await make_set(
        fleet, "westeurope", [extension("agent", agent), extension("other", other, automatic=False)]
    )
    east = await make_set(
        fleet, "eastus", [extension("monitor", agent), extension("other", other, automatic=False)]
    )
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    for name, enrolled_name in ((west, "agent"), (east, "monitor")):
        note = (await enroll(handle, name, extensions=[enrolled_name])).note or ""
        assert "pinned to version" in note and "its enrolled extensions still follow" in note

    await publish(fleet, agent, "1.3.0", "2.0.0")  # a minor and a new major, published together
    await publish(fleet, other, "1.3.0")
    await handle.signal(CHECK_NOW_SIGNAL)
    status = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0"))

    assert status.state == RolloutState.COMPLETED
    assert {s.scale_set: s.state for s in status.sets} == dict.fromkeys(
        (west, east), RolloutSetState.COMPLETED
    )
    # Every instance: exactly one install, of 1.3.0, of the opted-in extension (by its name in
    # each set's model); never the new major, never the extension left off.
    assert await installed(fleet, west) == {(str(i), "agent"): ["1.3.0"] for i in range(3)}
    assert await installed(fleet, east) == {(str(i), "monitor"): ["1.3.0"] for i in range(3)}
    assert set((await versions_now(fleet, west, "other")).values()) == {"1.2.0"}
    # The OS image (pinned) was not touched.
    assert [op for op in await fleet.operations(west) if op.kind != OperationKind.INSTALL_EXTENSION] == []
    upgrade = ts_env.client.get_workflow_handle(upgrade_workflow_id(east), result_type=UpgradeReport)
    report = await upgrade.result()
    assert [str(t) for t in report.extensions] == ["monitor 1.3.0"] and report.target_image is None
    assert report.history_entry(None).properties.started_by == PLATFORM
    assert report.request is not None and not report.request.policy.enable_cross_zone_upgrade

    state = await eventually(lambda: enrolled(handle), lambda e: e[west].extensions["agent"].applied_version)
    assert state[west].extensions["agent"].applied_version == "1.3.0"
    assert state[east].extensions["monitor"].applied_version == "1.3.0"
    assert (
        state[west].extensions["other"].note
        == f"not enrolled (upgradectl auto enable {west} --extension other)"
    )
    # Later looks start nothing more: not the major, not the extension left off, not 1.3.0 again.
    await ts_env.sleep(timedelta(hours=1))
    assert [(r.source, r.version, r.state) for r in await rollouts(handle)] == [
        (f"ext:{PUBLISHER}.{agent}", "1.3.0", RolloutState.COMPLETED)
    ]
    assert len(await installs(fleet, west)) == 3 and len(await installs(fleet, east)) == 3


async def test_extensions_are_enrolled_one_by_one_without_os_upgrades_and_withdrawn_one_by_one(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    # Seed 003: "Each supported extension is enrolled individually"; OS upgrades stay optional.
    agent, other = unique_type("Solo"), unique_type("Left")
    await publish(fleet, agent, "1.2.0")
    await publish(fleet, other, "1.2.0")
    images = Images()
    await fleet.publish_image(images.at("1.0.0"))
    # The image follows 'latest': enrolled for its OS image, it would be reimaged.
    name = await make_set(
        fleet, "westeurope", [extension("agent", agent), extension("other", other)], image=images.latest
    )
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    enrollment = await enroll(handle, name, os_image=False, extensions=["AGENT"])  # (as Azure: any case)

    assert not enrollment.os_upgrades and enrollment.enrolled_extensions == ["agent"]
    assert enrollment.policy.automatic_os_upgrade_policy.enable_automatic_os_upgrade is False
    assert enrollment.note is not None and "automatic OS image upgrades are off" in enrollment.note
    assert enrollment.extensions["agent"].note is None
    assert (
        enrollment.extensions["other"].note
        == f"not enrolled (upgradectl auto enable {name} --extension other)"
    )

    await fleet.publish_image(images.at("1.1.0"))
    await publish(fleet, agent, "1.3.0")
    await publish(fleet, other, "1.3.0")
    await handle.signal(CHECK_NOW_SIGNAL)
    status = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0"))
    assert status.state == RolloutState.COMPLETED
    assert await installed(fleet, name) == {(str(i), "agent"): ["1.3.0"] for i in range(3)}
    await ts_env.sleep(timedelta(hours=1))  # more looks: still no OS image rollout, nor of `other`
    assert [(r.source, r.version) for r in await rollouts(handle)] == [(f"ext:{PUBLISHER}.{agent}", "1.3.0")]
    assert [op.kind for op in await fleet.operations(name)] == [OperationKind.INSTALL_EXTENSION] * 3

    # Enrolling another extension keeps the first (and OS upgrades off).
    both = await enroll(handle, name, os_image=False, extensions=["other"])
    assert both.enrolled_extensions == ["agent", "other"] and not both.os_upgrades
    # Withdrawing one leaves the other; withdrawing the last leaves the set not enrolled at all.
    left = await withdraw(handle, WithdrawRequest(scale_set=name, extensions=["agent"], by="test"))
    assert left.enrolled_extensions == ["other"] and left.extensions["agent"].note is not None
    assert name in await enrolled(handle)
    last = await withdraw(handle, WithdrawRequest(scale_set=name, extensions=["other"], by="test"))
    assert not last.enrolls_any and name not in await enrolled(handle)


async def test_an_extension_azure_upgrades_itself_is_refused_naming_the_field_and_the_az_command(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    agent = unique_type("Azure")
    await publish(fleet, agent, "1.2.0")
    name = await make_set(fleet, "westeurope", [extension("agent", agent, automatic=True)])
    handle = await watcher(ts_env.client, ts_worker.task_queue)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await enroll(handle, name, os_image=False, extensions=["agent"])
    cause = refused.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "AutomaticExtensionUpgradeEnabled"
    assert cause.message.startswith(f"extension 'agent' of scale set '{name}' has enableAutomaticUpgrade on")
    assert (
        f"az vmss extension set --resource-group <group> --vmss-name {name} --name {agent} --publisher "
        f"{PUBLISHER} --extension-instance-name agent --version 1.2 --enable-auto-upgrade false"
    ) in cause.message
    with pytest.raises(WorkflowUpdateFailedError, match="update failed") as unknown:
        await enroll(handle, name, extensions=["nope"])
    assert isinstance(unknown.value.cause, ApplicationError)
    assert unknown.value.cause.type == "ExtensionNotFound" and "'nope'" in unknown.value.cause.message
    assert name not in await enrolled(handle)  # nothing enrolled on a refusal


async def test_an_enrollment_from_before_extensions_were_enrolled_one_by_one_keeps_following_the_flag(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    # An EnrollRequest as recorded before (no os_image, no extensions): OS upgrades on, and the
    # extensions with enableAutomaticUpgrade follow, as they did.
    on, off = unique_type("On"), unique_type("Off")
    name = await make_set(fleet, "westeurope", [extension("on", on, automatic=True), extension("off", off)])
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    old = EnrollRequest.model_validate({"scaleSet": name, "policy": {}, "by": "test"})
    enrollment = await handle.execute_update(ENROLL_UPDATE, old, result_type=Enrollment)
    assert enrollment.os_upgrades and enrollment.enrolled_extensions is None
    assert enrollment.extensions["on"].note is None
    assert enrollment.extensions["off"].note == "enableAutomaticUpgrade is off: left alone"


async def test_two_extensions_due_at_once_roll_independently_one_rolled_back_the_other_completed(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    broken, good = unique_type("Broken"), unique_type("Good")
    await publish(fleet, broken, "1.2.0")
    await publish(fleet, good, "1.2.0")
    faults = FaultSpec(unhealthy_extension_versions=[f"{broken}:1.3.0"])
    extensions = [extension("broken", broken), extension("good", good)]
    first = await make_set(fleet, "westeurope", extensions, faults=faults)
    second = await make_set(fleet, "westeurope", extensions, faults=faults)
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    for name in (first, second):
        await enroll(handle, name, extensions=["broken", "good"])

    await publish(fleet, broken, "1.3.0")
    await publish(fleet, good, "1.3.0")
    await handle.signal(CHECK_NOW_SIGNAL)
    broken_rollout = await rollout(ts_env.client, broken, "1.3.0")
    good_rollout = await rollout(ts_env.client, good, "1.3.0")
    failed = await finished(ts_env, broken_rollout)
    completed = await finished(ts_env, good_rollout)

    # The broken version broke health on the sets it reached (the two sets of one region go in
    # one wave, as the second may have waited for the other extension's upgrade of it): rolled
    # back there, its rollout Faulted; a set it had not reached was never touched.
    assert failed.state == RolloutState.FAULTED
    states = {s.scale_set: s.state for s in failed.sets}
    assert RolloutSetState.FAULTED in states.values()
    for name, state in states.items():
        ours = {i: v for (i, ext), v in (await installed(fleet, name)).items() if ext == "broken"}
        if state == RolloutSetState.FAULTED:
            assert ours and all(v == ["1.3.0", "1.2.0"] for v in ours.values())
        else:
            assert state in (RolloutSetState.SKIPPED, RolloutSetState.CANCELLED) and not ours
    for name in (first, second):
        assert set((await versions_now(fleet, name, "broken")).values()) == {"1.2.0"}
    # The other extension was not stopped by it: every instance of both sets, once each.
    assert completed.state == RolloutState.COMPLETED
    assert {s.state for s in completed.sets} == {RolloutSetState.COMPLETED}
    for name in (first, second):
        good_installs = {i: v for (i, ext), v in (await installed(fleet, name)).items() if ext == "good"}
        assert good_installs == {str(i): ["1.3.0"] for i in range(3)}
        assert set((await versions_now(fleet, name, "good")).values()) == {"1.3.0"}
    # Both wanted the first set at once: one waited for the other's upgrade to end (its start
    # refused by the set's lock, then tried again), none skipped it.
    refused = 0
    for done in (broken_rollout, good_rollout):  # (each region's sets go in a cohort's child)
        cohort = ts_env.client.get_workflow_handle(f"{done.id}/westeurope/cohort-1")
        history = await cohort.fetch_history()
        refused += sum(
            e.HasField("start_child_workflow_execution_failed_event_attributes") for e in history.events
        )
    assert refused >= 1
    assert not [s for s in (*failed.sets, *completed.sets) if "another upgrade holds it" in (s.message or "")]
    enrollments = await eventually(
        lambda: enrolled(handle),
        lambda e: all(e[n].extensions["broken"].failed_version for n in (first, second)),
    )
    for name in (n for n, state_ in states.items() if state_ == RolloutSetState.FAULTED):
        assert enrollments[name].extensions["broken"].attempts == 1
        assert enrollments[name].extensions["broken"].retry
    assert all(enrollments[n].extensions["good"].applied_version == "1.3.0" for n in (first, second))


async def test_a_rollout_waiting_for_a_set_another_upgrade_holds_can_be_cancelled_meanwhile(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    first_type, second_type = unique_type("Early"), unique_type("Late")
    for type_ in (first_type, second_type):
        await publish(fleet, type_, "1.2.0")
    slow = INSTANT.model_copy(update={"extension_seconds": [1.0, 1.0]})
    name = await make_set(
        fleet, "westeurope", [extension("early", first_type), extension("late", second_type)], 3, timing=slow
    )
    handle = await watcher(ts_env.client, ts_worker.task_queue, extension_retry_interval=timedelta(hours=1))
    await enroll(handle, name, extensions=["early", "late"])
    for type_ in (first_type, second_type):
        await publish(fleet, type_, "1.3.0")
    await handle.signal(CHECK_NOW_SIGNAL)
    rollouts_of = {t: await rollout(ts_env.client, t, "1.3.0") for t in (first_type, second_type)}

    async def states() -> dict[str, RolloutStatus]:
        return {t: await rollout_status(h) for t, h in rollouts_of.items()}

    # One of the two upgrades the set; the other waits for it, visibly.
    seen = await eventually(
        states,
        lambda found: any(s.sets[0].state == RolloutSetState.WAITING_FOR_SCALE_SET for s in found.values()),
    )
    [(waiting_type, waiting)] = [
        (t, s) for t, s in seen.items() if s.sets[0].state == RolloutSetState.WAITING_FOR_SCALE_SET
    ]
    [running_type] = [t for t in rollouts_of if t != waiting_type]
    assert (
        waiting.sets[0].message
        == f"waiting for rolling-upgrade/{name} to finish (another upgrade holds the scale set)"
    )
    await rollouts_of[waiting_type].signal(ROLLOUT_CANCEL_SIGNAL, HoldRequest(by="test", reason="not now"))
    cancelled = await finished(ts_env, rollouts_of[waiting_type])
    completed = await finished(ts_env, rollouts_of[running_type])

    assert cancelled.state == RolloutState.CANCELLED
    assert cancelled.sets[0].state == RolloutSetState.SKIPPED
    assert cancelled.sets[0].message == "not started: the rollout was cancelled"
    assert completed.state == RolloutState.COMPLETED
    names = {first_type: "early", second_type: "late"}
    done = await installed(fleet, name)
    assert {k: v for k, v in done.items() if k[1] == names[running_type]} == {
        (str(i), names[running_type]): ["1.3.0"] for i in range(3)
    }
    assert not [k for k in done if k[1] == names[waiting_type]]  # never installed
    # A cancelled version is not tried again by itself (a faulted one would be, after PT1H).
    await ts_env.sleep(timedelta(hours=2))
    assert not [k for k in await installed(fleet, name) if k[1] == names[waiting_type]]
    state = await enrolled(handle)
    assert state[name].extensions[names[waiting_type]].failed_version == "1.3.0"
    assert not state[name].extensions[names[waiting_type]].retry


async def test_a_failed_version_is_retried_after_the_interval_not_before_and_succeeds_once_fixed(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    agent = unique_type("Flaky")
    await publish(fleet, agent, "1.2.0")
    faults = FaultSpec(failing_extension_versions=[f"{agent}:1.3.0"])
    name = await make_set(fleet, "westeurope", [extension("agent", agent)], faults=faults)
    handle = await watcher(ts_env.client, ts_worker.task_queue, extension_retry_interval=timedelta(hours=1))
    await enroll(handle, name, extensions=["agent"])

    await publish(fleet, agent, "1.3.0")
    await handle.signal(CHECK_NOW_SIGNAL)
    first = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0"))
    assert first.state == RolloutState.FAULTED and first.retry is None
    assert "VMExtensionProvisioningError" in (first.sets[0].message or "")
    [(instance, _)] = (await installed(fleet, name)).items()
    assert (await installed(fleet, name))[instance] == ["1.3.0", "1.2.0"]  # installed, failed, rolled back
    failure = (await eventually(lambda: enrolled(handle), lambda e: e[name].extensions["agent"].failed_at))[
        name
    ]
    assert failure.extensions["agent"].attempts == 1

    # Not before the interval: three more looks (every PT15M) start nothing.
    await ts_env.sleep(timedelta(minutes=50))
    assert [r.state for r in await rollouts(handle)] == [RolloutState.FAULTED]
    assert len(await installs(fleet, name)) == 2

    # After it, without anyone acting: retry 1, which fails again (not fixed yet) ...
    await ts_env.sleep(timedelta(minutes=15))
    retry_1 = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0", retry=1))
    # The interval runs from when the set's upgrade failed (a few ms before its rollout ended).
    assert first.sets[0].end_time is not None and retry_1.start_time is not None
    assert retry_1.start_time >= first.sets[0].end_time + timedelta(hours=1)
    assert retry_1.state == RolloutState.FAULTED
    assert retry_1.retry is not None and retry_1.retry.attempt == 1
    assert retry_1.retry.failed_at == first.sets[0].end_time
    assert "VMExtensionProvisioningError" in retry_1.retry.reason
    assert retry_1.sets[0].retry == retry_1.retry
    assert f"retry 1 of 1.3.0 after it failed at {first.sets[0].end_time:%Y-%m-%d %H:%M:%S} UTC" in details(
        retry_1, "default"
    )
    assert len(await installs(fleet, name)) == 4
    summaries = await eventually(lambda: rollouts(handle), lambda found: len(found) == 2)
    assert [(r.retry, r.state) for r in summaries] == [(0, RolloutState.FAULTED), (1, RolloutState.FAULTED)]

    # ... then the publisher fixes it, and retry 2 (again an interval later) succeeds everywhere.
    assert await fleet.fix_extension_version(PUBLISHER, agent, "1.3.0") == [name]
    await ts_env.sleep(timedelta(hours=1))
    retry_2 = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0", retry=2))
    assert retry_2.state == RolloutState.COMPLETED
    assert retry_2.retry is not None and retry_2.retry.attempt == 2
    assert retry_2.sets[0].message == "upgraded to 1.3.0 (retry 2)"
    assert retry_2.start_time is not None and retry_1.sets[0].end_time is not None
    assert retry_2.start_time >= retry_1.sets[0].end_time + timedelta(hours=1)
    done = await installed(fleet, name)
    assert done[instance] == ["1.3.0", "1.2.0"] * 2 + ["1.3.0"]
    assert {k: v for k, v in done.items() if k != instance} == {
        (i, "agent"): ["1.3.0"] for i in ("0", "1", "2") if (i, "agent") != instance
    }
    assert set((await versions_now(fleet, name, "agent")).values()) == {"1.3.0"}
    after = (
        await eventually(lambda: enrolled(handle), lambda e: e[name].extensions["agent"].applied_version)
    )[name]
    assert after.extensions["agent"].failed_version is None and after.extensions["agent"].attempts == 0


async def test_instances_rolled_back_in_an_upgrade_that_completed_are_retried_after_the_interval(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    # Seed 003: "A failed extension upgrade is automatically retried ... every few days", per
    # instance: one instance fails its health after the install and is rolled back, fewer than
    # the policy stops at, so the set's upgrade completes; that instance is tried again later.
    agent = unique_type("Partly")
    await publish(fleet, agent, "1.2.0")
    name = await make_set(fleet, "westeurope", [extension("agent", agent)], 3)
    lenient = POLICY.model_copy(
        update={
            "rolling_upgrade_policy": RollingUpgradePolicy(
                max_unhealthy_instance_percent=80, max_unhealthy_upgraded_instance_percent=50
            ),
            "automatic_os_upgrade_policy": AutomaticOSUpgradePolicy(use_rolling_upgrade_policy=True),
        }
    )
    handle = await watcher(ts_env.client, ts_worker.task_queue, extension_retry_interval=timedelta(hours=1))
    await enroll(handle, name, lenient, os_image=False, extensions=["agent"])
    await fleet.set_health(name, "2", HealthState.UNHEALTHY)  # whatever it runs

    await publish(fleet, agent, "1.3.0")
    await handle.signal(CHECK_NOW_SIGNAL)
    first = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0"))
    assert first.state == RolloutState.COMPLETED and first.sets[0].state == RolloutSetState.COMPLETED
    assert first.sets[0].rolled_back == ["2"]
    assert "1 instance(s) failed and were rolled back (2)" in (first.sets[0].message or "")
    assert await versions_now(fleet, name, "agent") == {"0": "1.3.0", "1": "1.3.0", "2": "1.2.0"}
    state = await eventually(lambda: enrolled(handle), lambda e: e[name].extensions["agent"].failed_at)
    failed = state[name].extensions["agent"]
    assert (failed.failed_version, failed.attempts, failed.retry) == ("1.3.0", 1, True)
    assert failed.applied_version == "1.2.0"  # (what every instance ran before), not 1.3.0
    assert failed.failed_at is not None
    retry_at = failed.failed_at + timedelta(hours=1)
    # The status says when: `auto show` (and the watcher's Web UI details) read this line.
    assert f"retry 1 at {retry_at:%Y-%m-%d %H:%M:%S} UTC" in failed.state_text(timedelta(hours=1))
    assert "1 instance(s) failed and were rolled back (2)" in failed.state_text(timedelta(hours=1))

    await fleet.set_health(name, "2", None)  # whatever broke it is gone
    await ts_env.sleep(timedelta(minutes=50))  # not before the interval
    assert [r.retry for r in await rollouts(handle)] == [0]
    await ts_env.sleep(timedelta(minutes=15))
    retried = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0", retry=1))
    assert retried.state == RolloutState.COMPLETED and retried.start_time is not None
    assert retried.start_time >= retry_at and retried.sets[0].rolled_back == []
    # Only the instance rolled back was upgraded again.
    assert await installed(fleet, name) == {
        ("0", "agent"): ["1.3.0"],
        ("1", "agent"): ["1.3.0"],
        ("2", "agent"): ["1.3.0", "1.2.0", "1.3.0"],
    }
    after = await eventually(lambda: enrolled(handle), lambda e: e[name].extensions["agent"].applied_version)
    assert after[name].extensions["agent"].applied_version == "1.3.0"
    assert after[name].extensions["agent"].failed_version is None


async def test_an_extension_rollout_keeps_availability_first(
    ts_env: WorkflowEnvironment, ts_worker: Worker, fleet: EmulatorAdmin
) -> None:
    agent = unique_type("Zonal")
    await publish(fleet, agent, "1.2.0")
    slow = INSTANT.model_copy(update={"extension_seconds": [0.2, 0.2]})  # windows with a length
    extensions = [extension("agent", agent)]
    # Two zonal sets of one region, starting from different zones: in parallel they would have
    # two zones in flight at once.
    west = await make_set(fleet, "westeurope", extensions, zones=["1", "2", "3"], timing=slow)
    west_too = await make_set(fleet, "westeurope", extensions, 2, zones=["2", "3"], timing=slow)
    north = await make_set(fleet, "northeurope", extensions, 2, timing=slow)
    east = await make_set(fleet, "eastus", extensions, 2, timing=slow)
    handle = await watcher(ts_env.client, ts_worker.task_queue)
    for name in (west, west_too, north, east):
        await enroll(handle, name, extensions=["agent"])

    await publish(fleet, agent, "1.3.0")
    await handle.signal(CHECK_NOW_SIGNAL)
    status = await finished(ts_env, await rollout(ts_env.client, agent, "1.3.0"))

    assert status.state == RolloutState.COMPLETED
    phase = {region: n for n, regions in enumerate(status.phases, 1) for region in regions}
    assert phase["northeurope"] != phase["westeurope"]
    ops = {name: await installs(fleet, name) for name in (west, west_too, north, east)}
    for name, capacity in ((west, 3), (west_too, 2), (north, 2), (east, 2)):
        counts = collections.Counter(op.instance_id for op in ops[name])
        assert counts == {str(i): 1 for i in range(capacity)}
        assert {op.extension_version for op in ops[name]} == {"1.3.0"}
    # The same assertions as for OS rollouts, on the installs' timestamps.
    windows = await assert_availability_first(fleet, ops, (west, west_too), north)
    assert len({zone for zone, _ in windows}) == 3


async def test_upgradectl_shows_each_extensions_automatic_state_and_its_rollouts(
    upgradectl, local_env, local_worker, fleet
):
    agent, flaky, other = unique_type("CliAgent"), unique_type("CliFlaky"), unique_type("CliOther")
    azure = unique_type("CliAzure")
    for type_ in (agent, flaky, other, azure):
        await publish(fleet, type_, "1.2.0")
    name = await make_set(
        fleet,
        "westeurope",
        [
            extension("agent", agent),
            extension("flaky", flaky),
            extension("other", other),
            extension("azure", azure, automatic=True),
        ],
        2,
        faults=FaultSpec(failing_extension_versions=[f"{flaky}:1.3.0"]),
    )
    try:
        refused = await upgradectl("auto", "enable", name, "--extension", "agent", "--extension", "azure")
        assert refused.code == 3, refused
        [line] = refused.err.strip().splitlines()
        assert "AutomaticExtensionUpgradeEnabled" in line and "has enableAutomaticUpgrade on" in line
        assert "az vmss extension set" in line and "--enable-auto-upgrade false" in line
        assert (await upgradectl("auto", "show", name)).code == 5  # nothing enrolled

        enabled = await upgradectl(
            "auto", "enable", name, "--extension", "agent", "--extension", "flaky", "--health-interval", "1"
        )
        assert enabled.code == 0, enabled
        assert "in automatic OS image upgrades" not in enabled.err
        assert (
            f"enrolled {name}'s extensions in automatic extension upgrades, each on its own: agent, flaky"
            in (enabled.err)
        )
        assert (
            f"extension agent ({PUBLISHER}.{agent} 1.2): follows new minor and patch versions" in enabled.err
        )
        assert f"extension other ({PUBLISHER}.{other} 1.2): not enrolled" in enabled.err
        assert "note: automatic OS image upgrades are off: only extensions are enrolled" in enabled.err
        changed = await upgradectl("auto", "settings", "--extension-retry-interval", "P2D", "--json")
        assert changed.code == 0, changed
        assert changed.json()["extensionRetryInterval"] == "P2D"

        for type_ in (agent, flaky, other):
            await publish(fleet, type_, "1.3.0")
        watcher = local_env.client.get_workflow_handle(watcher_workflow_id(local_worker.task_queue))
        await watcher.signal(CHECK_NOW_SIGNAL)

        async def shown() -> dict[str, Any]:
            result = await upgradectl("auto", "show", name, "--json")
            assert result.code == 0, result
            extensions: dict[str, Any] = result.json()["enrollments"][0]["extensions"]
            return extensions

        extensions = await eventually(
            shown,
            lambda e: e["agent"].get("appliedVersion") == "1.3.0" and e["flaky"].get("failedVersion"),
            timeout=90,
        )
        assert extensions["flaky"]["attempts"] == 1 and extensions["flaky"]["retry"]
        assert "VMExtensionProvisioningError" in extensions["flaky"]["failure"]
        assert extensions["other"]["installed"] == ["1.2.0"]  # left off: never moved

        table = await upgradectl("auto", "show", name)
        assert table.code == 0, table
        text = " ".join(table.out.split())  # (the table wraps long cells)
        assert "extension agent" in text and "following new 1.x versions; installed 1.3.0" in text
        assert "extension flaky" in text and "1.3.0 failed at" in text and "retry 1 at" in text
        assert "extension other" in text and "not enrolled" in text
        assert "enableAutomaticOSUpgrade │ false" in text and "enrolled extensions │ agent, flaky" in text
        assert "extensionRetryInterval" in text

        listed = await upgradectl("rollout", "list", "--json")
        sources = {r["source"]: r["state"] for r in listed.json()["value"]}
        assert sources == {f"ext:{PUBLISHER}.{agent}": "Completed", f"ext:{PUBLISHER}.{flaky}": "Faulted"}
        ambiguous = await upgradectl("rollout", "show", "1.3.0")
        assert ambiguous.code == 0 and ambiguous.out.count("rollout of extension") == 2
        one = await upgradectl("rollout", "show", "1.3.0", "--source", f"ext:{PUBLISHER}.{flaky}")
        assert one.code == 0, one
        flat = " ".join(one.out.split())
        assert f"rollout of extension {PUBLISHER}.{flaky} 1.3.0: Faulted" in flat
        assert "VMExtensionProvisioningError" in flat

        partly = await upgradectl("auto", "disable", name, "--extension", "flaky")
        assert partly.code == 0, partly
        assert (
            f"{name}: extension flaky withdrawn" in partly.err
            and "Still enrolled: extension agent" in partly.err
        )
        assert (await upgradectl("auto", "disable", name, "--extension", "flaky")).code == 5  # not now
        last = await upgradectl("auto", "disable", name, "--extension", "agent")
        assert last.code == 0 and f"{name} is no longer enrolled" in last.err, last
        assert (await upgradectl("auto", "show", name)).code == 5
    finally:
        with contextlib.suppress(Exception):
            await local_env.client.get_workflow_handle(
                watcher_workflow_id(local_worker.task_queue)
            ).terminate("the test's watcher")
