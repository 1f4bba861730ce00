"""`upgradectl rollback`, pure: the upgrade that returns every instance the last upgrade moved to
the version it had before, under the same policy and gates, as an upgrade of its own.

Moved are the instances the upgrade left on its change: those that succeeded, and those that
failed without being rolled back. Their previous version is what each had before (its
`fromImage`, or the extension versions a rollback reinstalls); one version for all, or the
rollback is refused naming them (roll back each with `upgradectl start`)."""

from __future__ import annotations

from models.change import ExtensionRequest
from models.image import ImageReference
from models.upgrade import InstanceState, UpgradeReport, UpgradeRequest

MOVED = (InstanceState.SUCCEEDED, InstanceState.FAILED)


class RollbackRefused(ValueError):
    """Why there is nothing to roll back, or no one version to roll back to."""


def rollback_request(report: UpgradeReport, upgrade: str, by: str) -> UpgradeRequest:
    """The rollback of `report` (the upgrade `upgrade`, a workflow run), started by `by`."""
    if report.request is None:
        raise RollbackRefused(f"{upgrade} keeps no request to roll back (an upgrade from before rollbacks)")
    moved = [i for i in report.instances if i.state in MOVED]
    if not moved:
        raise RollbackRefused(
            f"{upgrade} moved no instance that is still on its change: nothing to roll back"
        )
    common = report.request.model_copy(
        update={
            "started_by": by,
            "rollback_of": upgrade,
            "only_instances": sorted(i.instance_id for i in moved),
            "waves": None,
            "deferral": False,
            "policy_given": None,
        }
    )
    if report.target_image is not None:
        versions = sorted({i.from_image for i in moved})
        if len(versions) > 1:
            raise RollbackRefused(
                f"the instances {upgrade} moved came from several images ({', '.join(versions)}): "
                "roll each back with `upgradectl start --image`"
            )
        return common.model_copy(
            update={"target_image": ImageReference.parse(versions[0]), "extensions": None}
        )
    before: dict[str, set[str]] = {}
    for instance in moved:
        for name, version in (instance.previous_extensions or {}).items():
            before.setdefault(name, set()).add(version)
    several = {name: versions for name, versions in before.items() if len(versions) > 1}
    if several or not before:
        shown = "; ".join(f"{n}: {', '.join(sorted(v))}" for n, v in several.items()) or "none recorded"
        raise RollbackRefused(f"no one previous version of each extension {upgrade} moved ({shown})")
    wanted = [
        ExtensionRequest(name=name, version=versions.pop()) for name, versions in sorted(before.items())
    ]
    return common.model_copy(update={"target_image": None, "extensions": wanted})
