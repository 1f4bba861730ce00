"""The policy options `start`, `plan` and `auto enable` share, declared once (typer reads the
option from each Annotated alias; `rolling_flags` and `health_flags` declare a section's), and
the policy document they make: a policy file (Azure's upgradePolicy) overlaid with the flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from models.base import describe_validation_error
from models.policy import UpgradePolicy
from starter.common import fail, load_document
from starter.terminal import PATH_LIMIT, clean

MaxBatchPercent = Annotated[int | None, typer.Option(help="5-100, default 20.")]
MaxUnhealthyPercent = Annotated[int | None, typer.Option(help="5-100, default 20.")]
MaxUnhealthyUpgradedPercent = Annotated[int | None, typer.Option(help="0-100, default 20.")]
PauseBetweenBatches = Annotated[str | None, typer.Option(help="ISO 8601, PT0S-PT48H, default PT0S.")]
# The absolute limits beside the percentages: the stricter wins.
MaxBatchCount = Annotated[int | None, typer.Option(help="1-10000, default none (the percent alone).")]
MaxUnhealthyCount = Annotated[int | None, typer.Option(help="0-10000, default none (the percent alone).")]
MaxUnhealthyUpgradedCount = Annotated[
    int | None, typer.Option(help="0-10000, default none (the percent alone).")
]
CrossZone = Annotated[bool | None, typer.Option("--enable-cross-zone-upgrade/--no-cross-zone-upgrade")]
PrioritizeUnhealthy = Annotated[
    bool | None, typer.Option("--prioritize-unhealthy-instances/--no-prioritize-unhealthy-instances")
]
RollbackOnBreach = Annotated[
    bool | None,
    typer.Option("--rollback-failed-instances-on-policy-breach/--no-rollback-on-policy-breach"),
]
MaxSurge = Annotated[
    bool | None,
    typer.Option(
        "--max-surge/--no-max-surge",
        help="Create each batch's new instances from the target, then delete the old ones (OS images).",
    ),
]
HealthProtocol = Annotated[str | None, typer.Option(help="http, https or tcp.")]
HealthPort = Annotated[int | None, typer.Option(help="1-65535, default 80.")]
HealthPath = Annotated[str | None, typer.Option(help="requestPath, default /health.")]
HealthInterval = Annotated[int | None, typer.Option(help="intervalInSeconds, 1-60, default 5.")]
HealthProbes = Annotated[int | None, typer.Option(help="numberOfProbes, 1-24, default 1.")]
HealthGracePeriod = Annotated[int | None, typer.Option(help="gracePeriod in seconds, 0-7200.")]
HealthWaitTimeout = Annotated[str | None, typer.Option(help="ISO 8601, per instance, default PT5M.")]

# A section of the policy document as its flags give it (`with_options` passes it; a field None:
# not given, the file's or the default).
Section = dict[str, Any] | None


def rolling_flags(
    max_batch_instance_percent: MaxBatchPercent = None,
    max_unhealthy_instance_percent: MaxUnhealthyPercent = None,
    max_unhealthy_upgraded_instance_percent: MaxUnhealthyUpgradedPercent = None,
    pause_time_between_batches: PauseBetweenBatches = None,
    enable_cross_zone_upgrade: CrossZone = None,
    prioritize_unhealthy_instances: PrioritizeUnhealthy = None,
    rollback_failed_instances_on_policy_breach: RollbackOnBreach = None,
    max_surge: MaxSurge = None,
    max_batch_instance_count: MaxBatchCount = None,
    max_unhealthy_instance_count: MaxUnhealthyCount = None,
    max_unhealthy_upgraded_instance_count: MaxUnhealthyUpgradedCount = None,
) -> dict[str, Any]:
    """rollingUpgradePolicy as the flags give it: `with_options(rolling_upgrade_policy=rolling_flags)`."""
    return {
        "maxBatchInstancePercent": max_batch_instance_percent,
        "maxUnhealthyInstancePercent": max_unhealthy_instance_percent,
        "maxUnhealthyUpgradedInstancePercent": max_unhealthy_upgraded_instance_percent,
        "pauseTimeBetweenBatches": pause_time_between_batches,
        "enableCrossZoneUpgrade": enable_cross_zone_upgrade,
        "prioritizeUnhealthyInstances": prioritize_unhealthy_instances,
        "rollbackFailedInstancesOnPolicyBreach": rollback_failed_instances_on_policy_breach,
        "maxSurge": max_surge,
        "maxBatchInstanceCount": max_batch_instance_count,
        "maxUnhealthyInstanceCount": max_unhealthy_instance_count,
        "maxUnhealthyUpgradedInstanceCount": max_unhealthy_upgraded_instance_count,
    }


def health_flags(
    health_protocol: HealthProtocol = None,
    health_port: HealthPort = None,
    health_path: HealthPath = None,
    health_interval: HealthInterval = None,
    health_probes: HealthProbes = None,
    health_grace_period: HealthGracePeriod = None,
    health_wait_timeout: HealthWaitTimeout = None,
) -> dict[str, Any]:
    """applicationHealth as the flags give it: `with_options(application_health=health_flags)`."""
    return {
        "protocol": health_protocol,
        "port": health_port,
        "requestPath": health_path,
        "intervalInSeconds": health_interval,
        "numberOfProbes": health_probes,
        "gracePeriod": health_grace_period,
        "healthWaitTimeout": health_wait_timeout,
    }


def policy_document(policy_file: Path | None, flags: dict[str, Any]) -> dict[str, Any]:
    """Azure's upgradePolicy from `--policy` (none: empty), overlaid with the flags given: a
    section's fields merged into the file's, any other value in its place (None: not given)."""
    document = UpgradePolicy.normalize(load_document(policy_file, "--policy") if policy_file else {})
    for section, values in flags.items():
        if not isinstance(values, dict):
            if values is not None:
                document[section] = values
            continue
        chosen = {k: v for k, v in values.items() if v is not None}
        if chosen:
            current = document.get(section)
            document[section] = {**(current if isinstance(current, dict) else {}), **chosen}
    return document


def checked_policy(document: dict[str, Any], policy_file: Path | None) -> tuple[UpgradePolicy, list[str]]:
    """The policy a document holds, and the rollingUpgradePolicy fields it gives (the scale set's
    own policy decides the others); an invalid one is refused, one line per field."""
    where = f" in --policy {clean(policy_file, PATH_LIMIT)}" if policy_file else ""
    try:
        policy = UpgradePolicy.from_user(document)
    except ValidationError as err:
        fail(f"invalid upgrade policy{where}:\n" + describe_validation_error(err))
    except ValueError as err:
        fail(f"invalid upgrade policy{where}:\n{err}")
    rolling = document.get("rollingUpgradePolicy")
    return policy, sorted(rolling) if isinstance(rolling, dict) else []
