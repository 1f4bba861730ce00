"""Which image version to use: 'latest' by numeric order, or an exact version checked.

Gallery versions come from `gallery_image_versions.list_by_gallery_image`, marketplace ones from
`virtual_machine_images.list`; both sorted here numerically (Azure's `$orderby=name` sorts strings,
8.9 after 8.10). Region names compare case- and space-insensitively ("West Europe" == "westeurope").
"""

from __future__ import annotations

from datetime import UTC, datetime

from fleet.azure.views import Json, arm_time, dig
from fleet.errors import FleetRequestError
from models.image import LATEST, ImageReference
from models.sorting import natural_key


def region_key(name: str) -> str:
    return "".join(name.split()).lower()


def _targets(version: Json) -> dict[str, Json]:
    regions = dig(version, "properties", "publishingProfile", "targetRegions") or []
    return {region_key(r.get("name") or ""): r for r in regions if isinstance(r, dict)}


def replicated_to(version: Json, location: str) -> bool:
    """A target region of the version and, when replication status was read, completed there."""
    where = region_key(location)
    if where not in _targets(version):
        return False
    for status in dig(version, "properties", "replicationStatus", "summary") or []:
        if region_key(status.get("region") or "") == where:
            return str(status.get("state") or "Completed").lower() == "completed"
    return True


def candidate_for_latest(version: Json, location: str, now: datetime) -> bool:
    """What Azure's 'latest' may pick in `location`."""
    publishing = dig(version, "properties", "publishingProfile") or {}
    if publishing.get("excludeFromLatest"):
        return False
    if _targets(version).get(region_key(location), {}).get("excludeFromLatest"):
        return False
    end_of_life = arm_time(publishing.get("endOfLifeDate"))
    if end_of_life is not None and end_of_life <= now:
        return False
    state = dig(version, "properties", "provisioningState")
    if state and state != "Succeeded":
        return False
    return replicated_to(version, location)


def pick_gallery_version(
    image: ImageReference, versions: list[Json], location: str, now: datetime | None = None
) -> str:
    """The version `image` names in `location`, or FleetRequestError ImageNotFound /
    ImageNotReplicatedToRegion saying what exists."""
    now = now or datetime.now(UTC)
    by_name = {v.get("name") or "": v for v in versions}
    known = sorted(by_name, key=natural_key)
    if image.version == LATEST:
        usable = [name for name in known if candidate_for_latest(by_name[name], location, now)]
        if not usable:
            raise FleetRequestError(
                "ImageNotFound",
                f"no version of {image.id} can be 'latest' in {location} "
                f"(known: {', '.join(known) or 'none'})",
            )
        return usable[-1]
    version = by_name.get(image.version)
    if version is None:
        raise FleetRequestError(
            "ImageNotFound",
            f"{image.id} has no version {image.version} (known: {', '.join(known) or 'none'})",
        )
    if not replicated_to(version, location):
        regions = [r.get("name") for r in _targets(version).values()]
        raise FleetRequestError(
            "ImageNotReplicatedToRegion",
            f"{image.id}/versions/{image.version} is not replicated to {location} "
            f"(target regions: {', '.join(str(r) for r in regions) or 'none'})",
        )
    return image.version


def pick_marketplace_version(image: ImageReference, names: list[str], location: str) -> str:
    known = sorted(names, key=natural_key)
    if image.version == LATEST:
        if not known:
            raise FleetRequestError("ImageNotFound", f"{image} has no versions in {location}")
        return known[-1]
    if image.version not in known:
        shown = ", ".join(known[-10:])
        raise FleetRequestError(
            "ImageNotFound",
            f"{image} is not offered in {location} (latest versions: {shown or 'none'})",
        )
    return image.version


def parse_gallery_image_id(image_id: str) -> tuple[str, str, str, str]:
    """(subscription, resource group, gallery, image) of /subscriptions/S/resourceGroups/R/
    providers/Microsoft.Compute/galleries/G/images/I."""
    parts = image_id.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    try:
        return (
            parts[lowered.index("subscriptions") + 1],
            parts[lowered.index("resourcegroups") + 1],
            parts[lowered.index("galleries") + 1],
            parts[lowered.index("images") + 1],
        )
    except (ValueError, IndexError):
        raise FleetRequestError(
            "InvalidImageReference",
            f"{image_id!r} is not a gallery image id "
            "(/subscriptions/S/resourceGroups/R/providers/Microsoft.Compute/galleries/G/images/I)",
        ) from None
