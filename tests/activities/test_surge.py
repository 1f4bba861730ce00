"""MaxSurge's activities through the Azure SDK back end to the emulator: a batch's new instances
created and the old ones deleted exactly once under a 500 after acceptance and a retried attempt
(ARM has no idempotency key, the emulator no dedup), ids continuing the sequence, zones
balanced, the core quota, and the emulator's records of capacity."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections import Counter
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.fleet_activities import FleetActivities
from fleet.azure.backend import AzureFleet
from fleet.emulator.admin import EmulatorAdmin
from fleet.errors import FleetError
from models import steps
from models.fleet import FaultSpec, FleetOperation, OperationKind, TimingSpec
from models.image import ImageReference
from tests.helpers.arm import fewest_serving
from tests.helpers.upgrades import INSTANT, V1, V2, count_ops, make_scale_set

AFTER_ACCEPT = FaultSpec(transient_error_share=1.0, transient_status_codes=[500], after_accept_share=1.0)
# Long enough that the read after a lost answer finds the instances still Creating or Deleting.
SLOW = TimingSpec(reimage_seconds=[1, 1], restore_seconds=[0, 0], boot_seconds=[0, 0])
IN_FLIGHT_OR_DONE = pytest.mark.parametrize("timing", [SLOW, INSTANT], ids=["in-flight", "done"])
TARGET = V2.at_version(V2.version)


class WorkerKilled(Exception):
    """The worker died right after the action was accepted: nothing reached a heartbeat."""


class FaultAtAction:
    """The product's AzureFleet, but the first capacity raise and the first delete each meet a
    500 after the emulator accepted them (the fault armed just for that call); with `kill`, the
    attempt then dies instead of reading on. `answers` is what each action sent got."""

    def __init__(self, azure: AzureFleet, fleet: EmulatorAdmin, *, kill: bool = False) -> None:
        self.azure, self.fleet, self.kill = azure, fleet, kill
        self.answers: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.azure, name)

    async def begin_scale_out(
        self, scale_set: str, capacity: int, vm_size: str | None = None
    ) -> FleetOperation:
        return await self._action(scale_set, self.azure.begin_scale_out(scale_set, capacity, vm_size))

    async def begin_delete_instances(self, scale_set: str, instance_ids: list[str]) -> FleetOperation:
        return await self._action(scale_set, self.azure.begin_delete_instances(scale_set, instance_ids))

    async def _action(self, scale_set: str, send: Any) -> FleetOperation:
        first = not self.answers
        if first:
            await self.fleet.set_faults(scale_set, AFTER_ACCEPT)
        try:
            operation: FleetOperation = await send
            self.answers.append("accepted")
            return operation
        except FleetError as err:
            self.answers.append(err.code)
            if self.kill:
                raise WorkerKilled() from err
            raise
        finally:
            if first:
                await self.fleet.set_faults(scale_set, FaultSpec())


def retried() -> ActivityEnvironment:
    """A second attempt after the worker died before any heartbeat reached the server."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=2, heartbeat_details=[])
    return env


def create(
    name: str, known: list[str], count: int, image: ImageReference = TARGET
) -> steps.CreateInstancesInput:
    return steps.CreateInstancesInput(
        scale_set=name, count=count, known=known, image=image, operation_id="b1"
    )


@IN_FLIGHT_OR_DONE
async def test_a_raise_answered_500_after_acceptance_creates_exactly_the_batch_from_the_target(
    fleet, azure, timing
):
    name = await make_scale_set(fleet, 4, timing=timing)
    backend = FaultAtAction(azure, fleet)
    result = await ActivityEnvironment().run(
        FleetActivities(backend).create_instances, create(name, ["0", "1", "2", "3"], 2)
    )

    assert backend.answers == ["InternalServerError"]  # accepted, answered 500, never resent
    assert result.instance_ids == ["4", "5"]
    ops = await fleet.operations(name)
    assert count_ops(ops, OperationKind.CREATE) == {"4": 1, "5": 1}
    view = await fleet.show_scale_set(name)
    assert view.capacity == 6
    # The model was brought to the target first: the new instances run it, the old ones do not.
    assert view.image_reference.same_image(TARGET)
    images = {i.instance_id: i.image_reference.resolved_version for i in view.instances}
    assert images == {
        "0": V1.version,
        "1": V1.version,
        "2": V1.version,
        "3": V1.version,
        "4": V2.version,
        "5": V2.version,
    }
    assert all(i.provisioning_state == "Succeeded" for i in view.instances)


@IN_FLIGHT_OR_DONE
async def test_an_attempt_retried_after_the_raise_was_accepted_waits_for_it_and_never_raises_again(
    fleet, azure, timing
):
    name = await make_scale_set(fleet, 3, timing=timing)
    request = create(name, ["0", "1", "2"], 3)
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(
            FleetActivities(FaultAtAction(azure, fleet, kill=True)).create_instances, request
        )
    # The dead attempt's raise stands (the capacity covers the batch): the next one waits for it.
    assert (await azure.get_scale_set(name)).capacity == 6

    result = await retried().run(FleetActivities(azure).create_instances, request)

    assert result.instance_ids == ["3", "4", "5"]
    assert count_ops(await fleet.operations(name), OperationKind.CREATE) == {"3": 1, "4": 1, "5": 1}
    assert (await fleet.show_scale_set(name)).capacity == 6


async def test_an_attempt_cancelled_while_waiting_resumes_from_its_heartbeat_without_raising_again(
    fleet, azure
):
    name = await make_scale_set(fleet, 2, timing=SLOW)
    request = create(name, ["0", "1"], 2)
    first, beats = ActivityEnvironment(), []

    def heartbeat(*details: Any) -> None:
        beats.append(details[-1])
        if (details[-1] or {}).get("operation"):
            first.cancel()  # the worker goes away once the raise is in the heartbeat

    first.on_heartbeat = heartbeat
    with pytest.raises(asyncio.CancelledError):
        await first.run(FleetActivities(azure).create_instances, request)
    sent = beats[-1]["operation"]

    second = ActivityEnvironment()
    second.info = dataclasses.replace(second.info, attempt=2, heartbeat_details=[beats[-1]])
    result = await second.run(FleetActivities(azure).create_instances, request)

    assert result.instance_ids == ["2", "3"]
    assert count_ops(await fleet.operations(name), OperationKind.CREATE) == {"2": 1, "3": 1}
    assert sent["kind"] == "create" and sent["statusUrl"]


@IN_FLIGHT_OR_DONE
async def test_a_delete_answered_500_after_acceptance_is_sent_once_and_waited_out(fleet, azure, timing):
    name = await make_scale_set(fleet, 4, timing=timing)
    backend = FaultAtAction(azure, fleet)
    request = steps.DeleteInstancesInput(scale_set=name, instance_ids=["1", "2"], operation_id="b1")
    result = await ActivityEnvironment().run(FleetActivities(backend).delete_instances, request)

    assert backend.answers == ["InternalServerError"]
    assert result.deleted == ["1", "2"]
    view = await fleet.show_scale_set(name)
    assert ([i.instance_id for i in view.instances], view.capacity) == (["0", "3"], 2)
    # A later attempt (the worker died before completing) finds them gone and sends nothing.
    again = await retried().run(FleetActivities(FaultAtAction(azure, fleet)).delete_instances, request)
    assert again.deleted == ["1", "2"]
    assert count_ops(await fleet.operations(name), OperationKind.DELETE) == {"1": 1, "2": 1}


async def test_an_attempt_retried_mid_delete_waits_for_the_deleting_instances(fleet, azure):
    name = await make_scale_set(fleet, 3, timing=SLOW)
    request = steps.DeleteInstancesInput(scale_set=name, instance_ids=["0", "2"], operation_id="b1")
    with pytest.raises(ApplicationError):
        await ActivityEnvironment().run(
            FleetActivities(FaultAtAction(azure, fleet, kill=True)).delete_instances, request
        )
    states = {i.instance_id: i.provisioning_state for i in (await azure.get_scale_set(name)).instances}
    assert states == {"0": "Deleting", "1": "Succeeded", "2": "Deleting"}

    await retried().run(FleetActivities(azure).delete_instances, request)
    assert count_ops(await fleet.operations(name), OperationKind.DELETE) == {"0": 1, "2": 1}


async def test_new_ids_continue_the_sequence_after_deletes_and_fill_the_emptiest_zones(fleet, azure):
    name = await make_scale_set(fleet, 4, zones=["1", "2", "3"])  # 0:1 1:2 2:3 3:1
    activities = FleetActivities(azure)
    delete = steps.DeleteInstancesInput(scale_set=name, instance_ids=["1", "3"], operation_id="b1")
    await ActivityEnvironment().run(activities.delete_instances, delete)  # zones 1: {0}, 2: {}, 3: {2}

    result = await ActivityEnvironment().run(activities.create_instances, create(name, ["0", "2"], 3))

    assert result.instance_ids == ["4", "5", "6"]  # never 1 or 3 again
    # The emptiest zone first (2, the only empty one); then among equals as Azure picks, never
    # leaving a zone two behind another.
    assert result.zones["4"] == "2"
    counts = Counter([*result.zones.values(), "1", "3"])
    assert sorted(counts.values()) == [1, 2, 2] and set(counts) == {"1", "2", "3"}


async def test_a_create_then_delete_cycle_never_drops_below_the_sets_size_by_the_emulators_records(
    fleet, azure
):
    name = await make_scale_set(fleet, 4, timing=SLOW)
    activities = FleetActivities(azure)
    created = await ActivityEnvironment().run(
        activities.create_instances, create(name, ["0", "1", "2", "3"], 2)
    )
    delete = steps.DeleteInstancesInput(scale_set=name, instance_ids=["0", "1"], operation_id="b1")
    await ActivityEnvironment().run(activities.delete_instances, delete)

    records = {r.instance_id: r for r in await fleet.instance_records(name)}
    assert set(records) == {"0", "1", "2", "3", *created.instance_ids}
    new, old = records[created.instance_ids[0]], records["0"]
    assert new.created < new.provisioned <= new.ready  # Creating for a while, then booted
    assert old.delete_started is not None and old.deleted is not None and old.delete_started < old.deleted
    assert records["2"].delete_started is None
    assert fewest_serving(list(records.values())) == 4
    # Deleting before creating would have shown: the same records, the old ones deleted first.
    early = [
        r.model_copy(update={"delete_started": r.created}) if r.instance_id in ("0", "1") else r
        for r in records.values()
    ]
    assert fewest_serving(early) == 2


async def test_the_usages_api_counts_the_instances_and_a_short_quota_leaves_no_room(fleet, azure):
    region = f"surge{uuid.uuid4().hex[:8]}"  # a region of its own: usage counts every set in it
    name = await make_scale_set(fleet, 3, location=region, vm_size="Standard_D4s_v3")
    quota = await azure.core_quota(name)
    assert (quota.vm_size, quota.family, quota.cores_per_instance) == (
        "Standard_D4s_v3",
        "standardDSv3Family",
        4,
    )
    assert quota.family_usage is not None and quota.regional_usage is not None
    assert (quota.family_usage.current_value, quota.regional_usage.current_value) == (12, 12)
    room = FleetActivities(azure).surge_room
    assert (await ActivityEnvironment().run(room, steps.SurgeRoomInput(scale_set=name, count=2))).room

    await fleet.set_core_quota(region, "standardDSv3Family", 16)
    short = await ActivityEnvironment().run(room, steps.SurgeRoomInput(scale_set=name, count=2))
    assert (short.room, short.needed_cores, short.available_cores) == (False, 8, 4)
    assert short.detail == (
        f"standardDSv3Family vCPUs in {region}: 12 of the limit 16 in use, 4 free; "
        "2 new Standard_D4s_v3 instance(s) need 8"
    )
    assert (await ActivityEnvironment().run(room, steps.SurgeRoomInput(scale_set=name, count=1))).room

    # Azure refuses a raise beyond the quota, as a whole: nothing is created.
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(
            FleetActivities(azure).create_instances, create(name, ["0", "1", "2"], 2)
        )
    assert refused.value.type == "OperationNotAllowed" and refused.value.non_retryable
    assert "standardDSv3Family Cores quota" in refused.value.message
    assert (await fleet.show_scale_set(name)).capacity == 3


async def test_create_and_delete_on_a_flexible_set_are_refused_naming_max_surge(fleet, azure):
    name = await make_scale_set(fleet, 2, orchestration_mode="Flexible")
    vms = [i.instance_id for i in (await fleet.show_scale_set(name)).instances]
    activities = FleetActivities(azure)
    delete = steps.DeleteInstancesInput(scale_set=name, instance_ids=vms[:1], operation_id="b")
    refusals = []
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.create_instances, create(name, vms, 1))
    refusals.append(refused.value)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(activities.delete_instances, delete)
    refusals.append(refused.value)
    for error in refusals:
        assert error.type == "OperationNotAllowed" and error.non_retryable
        assert "maxSurge" in error.message and "Flexible" in error.message
    assert await fleet.operations(name) == []  # nothing half done
