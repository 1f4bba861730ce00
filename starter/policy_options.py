"""The policy options `start`, `plan` and `auto enable` share, declared once (typer reads the
option from each Annotated alias), and the policy document they make."""

from __future__ import annotations

from typing import Annotated, Any

import typer

MaxBatchPercent = Annotated[int | None, typer.Option(help="5-100, default 20.")]
MaxUnhealthyPercent = Annotated[int | None, typer.Option(help="5-100, default 20.")]
MaxUnhealthyUpgradedPercent = Annotated[int | None, typer.Option(help="0-100, default 20.")]
PauseBetweenBatches = Annotated[str | None, typer.Option(help="ISO 8601, PT0S-PT48H, default PT0S.")]
CrossZone = Annotated[bool | None, typer.Option("--enable-cross-zone-upgrade/--no-cross-zone-upgrade")]
PrioritizeUnhealthy = Annotated[
    bool | None, typer.Option("--prioritize-unhealthy-instances/--no-prioritize-unhealthy-instances")
]
RollbackOnBreach = Annotated[
    bool | None,
    typer.Option("--rollback-failed-instances-on-policy-breach/--no-rollback-on-policy-breach"),
]
HealthProtocol = Annotated[str | None, typer.Option(help="http, https or tcp.")]
HealthPort = Annotated[int | None, typer.Option(help="1-65535, default 80.")]
HealthPath = Annotated[str | None, typer.Option(help="requestPath, default /health.")]
HealthInterval = Annotated[int | None, typer.Option(help="intervalInSeconds, 1-60, default 5.")]
HealthProbes = Annotated[int | None, typer.Option(help="numberOfProbes, 1-24, default 1.")]
HealthGracePeriod = Annotated[int | None, typer.Option(help="gracePeriod in seconds, 0-7200.")]
HealthWaitTimeout = Annotated[str | None, typer.Option(help="ISO 8601, per instance, default PT5M.")]


def rolling_flags(
    max_batch: int | None,
    max_unhealthy: int | None,
    max_unhealthy_upgraded: int | None,
    pause: str | None,
    cross_zone: bool | None,
    prioritize_unhealthy: bool | None,
    rollback_on_breach: bool | None,
) -> dict[str, Any]:
    """rollingUpgradePolicy as the flags give it (None: not given, the file's or the default)."""
    return {
        "maxBatchInstancePercent": max_batch,
        "maxUnhealthyInstancePercent": max_unhealthy,
        "maxUnhealthyUpgradedInstancePercent": max_unhealthy_upgraded,
        "pauseTimeBetweenBatches": pause,
        "enableCrossZoneUpgrade": cross_zone,
        "prioritizeUnhealthyInstances": prioritize_unhealthy,
        "rollbackFailedInstancesOnPolicyBreach": rollback_on_breach,
    }


def health_flags(
    protocol: str | None,
    port: int | None,
    path: str | None,
    interval: int | None,
    probes: int | None,
    grace_period: int | None,
    wait_timeout: str | None,
) -> dict[str, Any]:
    """applicationHealth as the flags give it."""
    return {
        "protocol": protocol,
        "port": port,
        "requestPath": path,
        "intervalInSeconds": interval,
        "numberOfProbes": probes,
        "gracePeriod": grace_period,
        "healthWaitTimeout": wait_timeout,
    }
