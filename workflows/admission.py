"""Admission of an upgrade: read the scale set, resolve the change (the exact image, or each
extension's exact version), or refuse with why.

Shared by the preflight (run by `upgradectl start` before it starts anything) and by the
upgrade itself, which admits again: the fleet may have changed in between.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import VersioningBehavior
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.change import Change
    from models.errors import RefusalCode
    from models.fleet import ScaleSetView
    from models.status import ApiError
    from models.upgrade import PREFLIGHT_WORKFLOW, InstanceState, Preflight, UpgradeRequest
    from rules import presentation, refusals
    from rules.change_kinds import kind_asked
    from rules.ledger import UpgradeLedger, UpgradeRules
    from workflows import activity_calls
    from workflows.change_kinds import steps_of

# Patch (docs/maintaining.md: "Changing workflow code"), of the preflight and the upgrade
# (RollingUpgradeWorkflow lists it): 2026-12, the scale set's own
# upgradePolicy.rollingUpgradePolicy is the upgrade's policy where the user gave no value
# (requests that say which fields they gave: policyGiven).
SETS_OWN_POLICY = "sets-own-policy"


def refusal_of(err: ActivityError) -> ApplicationError | None:
    """The admission activities' refusals (unknown scale set or image), as the user sees them."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type in {c.value for c in RefusalCode}:
        return ApplicationError(cause.message, type=cause.type, non_retryable=True)
    return None


def rolled_by_azure(scale_set: ScaleSetView) -> ApplicationError | None:
    """rules.refusals.rolled_by_azure, as the workflows raise it."""
    return raised(refusals.rolled_by_azure(scale_set))


def health_source_refusal(scale_set: ScaleSetView) -> ApplicationError | None:
    """rules.refusals.health_source_refusal, as the workflows raise it."""
    return raised(refusals.health_source_refusal(scale_set))


def extension_enrollment_refusal(scale_set: ScaleSetView, name: str) -> ApplicationError | None:
    """rules.refusals.extension_enrollment_refusal, as the workflows raise it."""
    return raised(refusals.extension_enrollment_refusal(scale_set, name))


def raised(refusal: ApiError | None) -> ApplicationError | None:
    """A pure rule's refusal as the error a workflow raises (never retried)."""
    if refusal is None:
        return None
    return ApplicationError(str(refusal.message), type=refusal.code, non_retryable=True)


async def admit(request: UpgradeRequest) -> tuple[ScaleSetView, Change]:
    """The scale set as it is and the exact change; raises the refusal if refused."""
    try:
        scale_set = await activity_calls.describe_scale_set(request.scale_set)
        if refusal := rolled_by_azure(scale_set):
            raise refusal
        policy = request.with_scale_sets_policy(scale_set.rolling_upgrade_policy).policy
        if refusal := raised(refusals.max_surge_refusal(scale_set, policy)):
            raise refusal
        change = await steps_of(kind_asked(request)).resolve(request, scale_set)
    except ActivityError as err:
        if refusal := refusal_of(err):
            raise refusal from None
        raise
    return scale_set, change


# Pinned: short, on the build that started it.
@workflow.defn(name=PREFLIGHT_WORKFLOW, versioning_behavior=VersioningBehavior.PINNED)
class UpgradePreflightWorkflow:
    """What an upgrade would do if started now; fails with the refusal if it would be refused."""

    @workflow.run
    async def run(self, request: UpgradeRequest) -> Preflight:
        scale_set, change = await admit(request)
        rules = UpgradeRules(sets_own_policy=workflow.patched(SETS_OWN_POLICY))
        ledger = UpgradeLedger(request, workflow.now(), rules=rules)
        ledger.admit(scale_set, change)
        return Preflight(
            scale_set=request.scale_set,
            instance_count=len(ledger.instances),
            from_images=presentation.from_images(ledger),
            target_image=change.image,
            extensions=change.extensions,
            to_upgrade=len(ledger.candidates()),
            skipped=len(ledger.in_state(InstanceState.SKIPPED)),
            planned_batches=len(ledger.plan()),
            summary=presentation.upgrade_summary(ledger),
            details=presentation.policy_details(ledger.request),  # as admitted: the set's policy, health
        )
