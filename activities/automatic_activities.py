"""What the automatic-upgrade watcher and its rollouts read: the enrolled scale sets (model only)
and what 'latest' means for an image source in a region. Reads only; nothing here acts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.fleet_activities import fleet_errors
from fleet.protocol import FleetBackend
from models import steps
from models.image import LATEST

# Reads of many scale sets at once stay well inside ARM's read budget.
CONCURRENT_READS = 8
# Back-end codes that mean "no version may be 'latest' here (yet)", not a failure.
NO_VERSION_CODES = {"ImageNotFound", "ImageNotReplicatedToRegion"}
GONE = {"ResourceNotFound", "NotFound"}


class AutomaticActivities:
    def __init__(self, fleet: FleetBackend) -> None:
        self.fleet = fleet

    def all(self) -> list[Callable[..., Any]]:
        return [self.survey_scale_sets, self.latest_versions]

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
