"""What the automatic-upgrade watcher and its rollouts read: the enrolled scale sets (model only,
with the image and extension versions their instances run), what 'latest' means for an image
source in a region, and the newest version of one major of an extension published in a region.
Reads only; nothing here acts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.fleet_activities import fleet_errors
from fleet.errors import GONE
from fleet.protocol import FleetBackend
from models import steps
from models.change import installed, major_of, version_key
from models.fleet import HealthState, ScaleSetView
from models.image import LATEST

# Reads of many scale sets at once stay well inside ARM's read budget.
CONCURRENT_READS = 8
# Back-end codes that mean "no version may be 'latest' here (yet)", not a failure.
NO_VERSION_CODES = {"ImageNotFound", "ImageNotReplicatedToRegion"}
# Back-end codes that mean "no version of this extension is published here".
NO_EXTENSION_CODES = {"ArtifactNotFound", "NotFound", "ResourceNotFound"}


class AutomaticActivities:
    def __init__(self, fleet: FleetBackend) -> None:
        self.fleet = fleet

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.survey_scale_sets,
            self.latest_versions,
            self.newest_extension_versions,
            self.summarize_health,
        ]

    @activity.defn(name=steps.SUMMARIZE_HEALTH)
    async def summarize_health(self, request: steps.SummarizeHealthInput) -> steps.SummarizeHealthResult:
        """Each set's instances and unhealthy count now (one health read a set): a rollout's
        look at its earlier phases after the bake time. A deleted set is `gone`, not a failure."""
        gate = asyncio.Semaphore(CONCURRENT_READS)

        async def summary(name: str) -> steps.HealthSummary:
            async with gate:
                try:
                    with fleet_errors():
                        reading = await self.fleet.read_health(name)
                except Exception as err:
                    if getattr(err, "type", None) in GONE:
                        return steps.HealthSummary(scale_set=name, gone=True)
                    raise
            states = reading.health.values()
            unhealthy = sum(state != HealthState.HEALTHY for state in states)
            return steps.HealthSummary(scale_set=name, instances=len(states), unhealthy=unhealthy)

        return steps.SummarizeHealthResult(sets=list(await asyncio.gather(*map(summary, request.scale_sets))))

    @activity.defn(name=steps.SURVEY_SCALE_SETS)
    async def survey_scale_sets(self, request: steps.SurveyInput) -> steps.SurveyResult:
        gate = asyncio.Semaphore(CONCURRENT_READS)

        async def survey(name: str) -> steps.ScaleSetSurvey:
            async with gate:
                try:
                    with fleet_errors():
                        view = await self.fleet.get_scale_set(name)
                except Exception as err:  # gone: reported, not retried
                    if getattr(err, "type", None) in GONE:
                        return steps.ScaleSetSurvey(scale_set=name, error=f"scale set {name!r} not found")
                    raise
            versions = sorted({i.image_reference.resolved_version for i in view.instances})
            return steps.ScaleSetSurvey(
                scale_set=name,
                view=view.model_copy(update={"instances": []}),
                instance_versions=versions,
                instance_count=len(view.instances),
                extension_versions=extension_versions(view),
            )

        return steps.SurveyResult(sets=list(await asyncio.gather(*map(survey, request.scale_sets))))

    @activity.defn(name=steps.LATEST_VERSIONS)
    async def latest_versions(self, request: steps.LatestVersionsInput) -> steps.LatestVersionsResult:
        async def latest(query: steps.VersionQuery) -> steps.LatestVersion:
            source = query.source.model_copy(update={"version": LATEST, "exact_version": None})
            try:
                with fleet_errors():
                    image = await self.fleet.resolve_image(source, query.region)
            except Exception as err:
                if getattr(err, "type", None) in NO_VERSION_CODES:
                    return steps.LatestVersion(source=source, region=query.region, reason=str(err))
                raise
            return steps.LatestVersion(source=source, region=query.region, version=image.resolved_version)

        return steps.LatestVersionsResult(versions=list(await asyncio.gather(*map(latest, request.queries))))

    @activity.defn(name=steps.NEWEST_EXTENSION_VERSIONS)
    async def newest_extension_versions(
        self, request: steps.NewestExtensionVersionsInput
    ) -> steps.NewestExtensionVersionsResult:
        gate = asyncio.Semaphore(CONCURRENT_READS)

        async def newest(query: steps.ExtensionVersionQuery) -> steps.NewestExtensionVersion:
            found = steps.NewestExtensionVersion(
                publisher=query.publisher, type_=query.type_, major=query.major, region=query.region
            )
            async with gate:
                try:
                    with fleet_errors():
                        published = await self.fleet.extension_versions(
                            query.publisher, query.type_, query.region
                        )
                except Exception as err:
                    if getattr(err, "type", None) in NO_EXTENSION_CODES:
                        return found.model_copy(update={"reason": str(err)})
                    raise
            of_major = sorted((v for v in published if major_of(v) == query.major), key=version_key)
            return found.model_copy(
                update={"versions": of_major, "newest": of_major[-1] if of_major else None}
            )

        return steps.NewestExtensionVersionsResult(
            versions=list(await asyncio.gather(*map(newest, request.queries)))
        )


def extension_versions(view: ScaleSetView) -> dict[str, list[str]]:
    """Per extension of the model, the versions its instances run ('' where not installed and
    succeeded), in numeric order."""
    return {
        extension.name: sorted({installed(i, extension.name) or "" for i in view.instances}, key=version_key)
        for extension in view.extensions
    }
