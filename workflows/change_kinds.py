"""The workflow steps of each kind of change (rules/change_kinds.py says what each kind means):
resolve it at admission, apply it to an instance of a batch, and restore an instance it failed.

An OS image: reimage (which keeps data disks and remembers the previous OS disk); roll back as
the mode allows (Uniform reimages back to the previous version, Flexible swaps the previous OS
disk back in). Extensions: install each version in order; reinstall the versions the instance
had. An extension that fails to install is rolled back at once; since the independent-extensions
patch, that extension alone, and the others still go ahead (seed 003).

The batch child (BatchUpgradeWorkflow) waits for health and records outcomes; `steps_of` gives
it the steps of its change's kind. Only workflow code runs here: the activities are called as
they always were, so recorded histories replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import steps
    from models.change import Change, ExtensionTarget
    from models.errors import EXTENSION_PROVISIONING_ERROR, FailureCause
    from models.fleet import HealthState, ScaleSetView
    from models.policy import format_duration
    from models.status import ROLLED_BACK_BY, os_rollback_method
    from models.upgrade import (
        BatchInstance,
        BatchRequest,
        ExtensionOutcome,
        InstanceOutcome,
        InstanceState,
        UpgradeRequest,
    )
    from rules.change_kinds import ChangeKind, ExtensionChange, OsImageChange
    from rules.failures import HEALTH_FAILURE_CODES
    from workflows import activity_calls


def operation_id(upgrade_id: str, instance_id: str, step: str) -> str:
    """Stable across retries, crashes and replays: the back end runs each id once."""
    return f"{upgrade_id}/{instance_id}/{step}"


def joined(first: str | None, then: str) -> str:
    return f"{first}; {then}" if first else then


class Batch(Protocol):
    """What the steps of a kind use of the batch child."""

    @property
    def request(self) -> BatchRequest: ...

    async def settle_health(
        self, outcome: InstanceOutcome, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome: ...

    async def roll_back(
        self, outcome: InstanceOutcome, step: str, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome: ...

    async def health_after_rollback(self, outcome: InstanceOutcome, done: str) -> InstanceOutcome: ...

    async def wait_for_health(self, instance_id: str) -> steps.HealthResult: ...

    def infrastructure(self, outcome: InstanceOutcome, err: ActivityError, step: str) -> InstanceOutcome: ...

    def end(self, outcome: InstanceOutcome, state: InstanceState) -> InstanceOutcome: ...


@dataclass(frozen=True)
class OsImageSteps:
    kind: OsImageChange

    async def resolve(self, request: UpgradeRequest, scale_set: ScaleSetView) -> Change:
        """The exact image (the request's `latest` resolved), or the admission's refusal."""
        return Change(image=await activity_calls.resolve_image(self.kind.image, scale_set))

    async def apply(self, batch: Batch, outcome: InstanceOutcome, instance: BatchInstance) -> InstanceOutcome:
        """Reimage, then wait for health."""
        request = batch.request
        try:
            operation = await activity_calls.reimage(
                steps.ReimageInput(
                    scale_set=request.scale_set,
                    instance_id=instance.instance_id,
                    image=self.kind.image,
                    operation_id=operation_id(request.upgrade_id, instance.instance_id, "reimage"),
                    restore_point=instance.previous_os_disk,
                )
            )
        except ActivityError as err:
            return batch.infrastructure(outcome, err, "reimage")
        outcome.previous_os_disk = operation.previous_os_disk
        return await batch.settle_health(outcome)

    async def roll_back(
        self, batch: Batch, outcome: InstanceOutcome, step: str, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome:
        """Bring back the OS disk the reimage replaced."""
        return await self._restore(batch, outcome, outcome.previous_os_disk, step)

    async def restore(
        self, batch: Batch, outcome: InstanceOutcome, instance: BatchInstance
    ) -> InstanceOutcome:
        """Roll back an instance a previous batch left failed with the change."""
        return await self._restore(batch, outcome, instance.previous_os_disk, "policy-restore")

    async def _restore(
        self, batch: Batch, outcome: InstanceOutcome, os_disk: str | None, step: str
    ) -> InstanceOutcome:
        request = batch.request
        outcome.restored = False  # until the instance is back and healthy
        if not os_disk:
            outcome.cause = FailureCause.INFRASTRUCTURE
            outcome.message = joined(outcome.message, "no previous OS disk to restore")
            return batch.end(outcome, InstanceState.FAILED)
        try:
            await activity_calls.restore_os_disk(
                steps.RestoreInput(
                    scale_set=request.scale_set,
                    instance_id=outcome.instance_id,
                    os_disk=os_disk,
                    operation_id=operation_id(request.upgrade_id, outcome.instance_id, step),
                )
            )
        except ActivityError as err:
            return batch.infrastructure(outcome, err, "restore")
        return await batch.health_after_rollback(outcome, ROLLED_BACK_BY[os_rollback_method(os_disk)])


@dataclass(frozen=True)
class ExtensionSteps:
    kind: ExtensionChange

    async def resolve(self, request: UpgradeRequest, scale_set: ScaleSetView) -> Change:
        """Each extension's exact version, or the admission's refusal."""
        extensions = await activity_calls.resolve_extensions(request.extensions or [], scale_set)
        return Change(extensions=extensions)

    async def apply(self, batch: Batch, outcome: InstanceOutcome, instance: BatchInstance) -> InstanceOutcome:
        """Install each extension version, then wait for health."""
        if batch.request.independent_extensions:
            return await self._install_each(batch, outcome, instance)
        failed = await self._install(batch, outcome, instance)
        if failed is not None:
            return failed
        return await batch.settle_health(outcome)

    async def roll_back(
        self, batch: Batch, outcome: InstanceOutcome, step: str, moved: list[ExtensionTarget] | None = None
    ) -> InstanceOutcome:
        """Reinstall the versions the instance had of `moved` (None: every extension)."""
        return await self._reinstall(batch, outcome, outcome.previous_extensions, step, moved)

    async def restore(
        self, batch: Batch, outcome: InstanceOutcome, instance: BatchInstance
    ) -> InstanceOutcome:
        """Roll back an instance a previous batch left failed with the change."""
        names = instance.restore_extensions
        only = [t for t in self.kind.extensions if names is None or t.name in names]
        outcome = await self._reinstall(batch, outcome, instance.previous_extensions, "policy-restore", only)
        if names is not None:  # the extensions an instance that succeeded left failed
            outcome.extension_outcomes = {t.name: ExtensionOutcome(state=outcome.state) for t in only}
        return outcome

    async def _install(
        self, batch: Batch, outcome: InstanceOutcome, instance: BatchInstance
    ) -> InstanceOutcome | None:
        """Install each extension version in order; an outcome if one failed (then rolled
        back, when rollback is on), None when all are installed."""
        outcome.previous_extensions = instance.previous_extensions
        for target in self.kind.extensions:
            failed = await self._install_target(batch, outcome, target)
            if isinstance(failed, InstanceOutcome):
                return failed
            if failed is not None:
                outcome.cause = FailureCause.INSTALL
                outcome.code, message = failed
                outcome.message = f"{target} failed to install: {message}"
                return await batch.roll_back(outcome, "restore")
        return None

    async def _install_target(
        self, batch: Batch, outcome: InstanceOutcome, target: ExtensionTarget
    ) -> InstanceOutcome | tuple[str, str] | None:
        """Install `target`: None once installed; its code and message when it failed to install
        (the extension's provisioning error); the instance's outcome when the fleet failed."""
        try:
            await self._install_one(batch, outcome.instance_id, target, "install")
        except ActivityError as err:
            code, message = activity_calls.infrastructure_failure(err)
            if code != EXTENSION_PROVISIONING_ERROR:
                return batch.infrastructure(outcome, err, f"install of {target}")
            return code, message
        return None

    async def _install_each(
        self, batch: Batch, outcome: InstanceOutcome, instance: BatchInstance
    ) -> InstanceOutcome:
        """Each extension on its own (seed 003): one that fails to install is reinstalled at its
        previous version at once (rollback on), and the others still go ahead. The health wait
        then judges what moved; an instance on which nothing moved failed, as a whole."""
        request = batch.request
        outcome.previous_extensions = instance.previous_extensions
        before = instance.previous_extensions or {}
        results: dict[str, ExtensionOutcome] = {}
        outcome.extension_outcomes = results
        moved: list[ExtensionTarget] = []
        reinstalled: list[ExtensionTarget] = []
        for target in self.kind.extensions:
            failed = await self._install_target(batch, outcome, target)
            if isinstance(failed, InstanceOutcome):
                return failed
            if failed is not None:
                code, message = failed
                failure = f"{target} failed to install: {message}"
                outcome.message = joined(outcome.message, failure)
                previous = before.get(target.name) if request.rollback else None
                state, after = InstanceState.FAILED, f"left on {target}"
                if request.rollback and previous is None:
                    after = f"no previous version of {target.name} to reinstall"
                elif previous is not None:
                    back = target.model_copy(update={"version": previous})
                    try:
                        await self._install_one(batch, outcome.instance_id, back, "restore")
                    except ActivityError as err:
                        return batch.infrastructure(outcome, err, f"reinstall of {back}")
                    state, after = InstanceState.ROLLED_BACK, f"reinstalled {back}"
                    reinstalled.append(back)
                results[target.name] = ExtensionOutcome(
                    state=state, cause=FailureCause.INSTALL, code=code, message=f"{failure}; {after}"
                )
                continue
            moved.append(target)
            results[target.name] = ExtensionOutcome(state=InstanceState.SUCCEEDED)
        if not moved:  # every extension failed to install: the instance failed the upgrade
            first = next(iter(results.values()))
            outcome.cause, outcome.code = first.cause, first.code
            if not reinstalled:
                outcome.message = joined(outcome.message, f"left on {self.kind.target()}")
                return batch.end(outcome, InstanceState.FAILED)
            outcome.restored = False  # until the instance is back and healthy
            done = "reinstalled " + ", ".join(str(t) for t in reinstalled)
            return await batch.health_after_rollback(outcome, done)
        if reinstalled:
            outcome.message = joined(outcome.message, "reinstalled " + ", ".join(str(t) for t in reinstalled))
        settled = await batch.settle_health(outcome, moved)
        if settled.state != InstanceState.SUCCEEDED:  # health cannot say which one broke it
            for target in moved:
                results[target.name] = ExtensionOutcome(
                    state=settled.state, cause=settled.cause, code=settled.code, message=settled.message
                )
        return settled

    @staticmethod
    async def _install_one(batch: Batch, instance_id: str, target: ExtensionTarget, step: str) -> None:
        request = batch.request
        await activity_calls.install_extension(
            steps.InstallExtensionInput(
                scale_set=request.scale_set,
                instance_id=instance_id,
                extension=target,
                operation_id=operation_id(request.upgrade_id, instance_id, f"{step}-{target.name}"),
            )
        )

    async def _reinstall(
        self,
        batch: Batch,
        outcome: InstanceOutcome,
        previous: dict[str, str] | None,
        step: str,
        only: list[ExtensionTarget] | None = None,
    ) -> InstanceOutcome:
        """Reinstall the versions the instance had before (of `only` these extensions, else
        every one of the change), then probe again."""
        outcome.restored = False  # until the instance is back and healthy
        missing, back = self.kind.reinstalls(previous, only)
        if missing:
            outcome.cause = FailureCause.INFRASTRUCTURE  # as an OS disk that is not there
            outcome.message = joined(
                outcome.message, f"no previous version of {', '.join(missing)} to reinstall"
            )
            return batch.end(outcome, InstanceState.FAILED)
        for target in back:
            try:
                await self._install_one(batch, outcome.instance_id, target, step)
            except ActivityError as err:
                return batch.infrastructure(outcome, err, f"reinstall of {target}")
        return await batch.health_after_rollback(outcome, "reinstalled " + ", ".join(str(t) for t in back))


async def await_replacement(
    batch: Batch, outcome: InstanceOutcome, instance: BatchInstance
) -> InstanceOutcome:
    """maxSurge: the upgrade created `instance.replacement` from the target before the batch.
    Healthy by the deadline, it replaces the instance (which the upgrade then deletes); if not,
    the upgrade deletes it and the instance stays as it was: nothing touched it, so it counts as
    a failed upgraded instance that is rolled back."""
    new = instance.replacement
    assert new is not None
    health = await batch.wait_for_health(new)
    if health.state == HealthState.HEALTHY:
        outcome.replaced_by = new
        outcome.health = HealthState.HEALTHY
        outcome.message = f"replaced by the new instance {new}"
        return batch.end(outcome, InstanceState.SUCCEEDED)
    waited = format_duration(batch.request.health.health_wait_timeout)
    outcome.cause = FailureCause.HEALTH
    outcome.code = HEALTH_FAILURE_CODES[health.state]
    outcome.restored = True
    outcome.message = (
        f"the new instance {new} was {health.state.value} after the {waited} health wait: it is "
        "deleted and this instance kept as it was"
    )
    return batch.end(outcome, InstanceState.ROLLED_BACK)


ChangeSteps = OsImageSteps | ExtensionSteps


def steps_of(kind: ChangeKind) -> ChangeSteps:
    """The workflow steps of a kind of change."""
    if isinstance(kind, OsImageChange):
        return OsImageSteps(kind)
    return ExtensionSteps(kind)
