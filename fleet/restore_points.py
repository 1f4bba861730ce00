"""Restore points: what `begin_restore` needs to bring an instance's previous OS disk back.

Flexible VMs support OS disk swap, so their restore point is the OS disk's resource id. Uniform
instances have no public restore call: restoring is reimaging back to the exact version the
instance had, so their restore point is `image:` + that image reference as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from models.fleet import IMAGE_RESTORE_POINT_PREFIX as IMAGE_PREFIX
from models.image import ImageReference


@dataclass(frozen=True)
class RestorePoint:
    """Exactly one of `os_disk_id` (Flexible) and `image` (Uniform, at an exact version)."""

    os_disk_id: str | None = None
    image: ImageReference | None = None


def image_restore_point(image: ImageReference) -> str:
    """The Uniform restore point of an instance running `image` (its exact version pinned, so
    the same image reads the same point before and after any reimage)."""
    exact = image.exact_version or image.version
    pinned = image.model_copy(update={"version": exact, "exact_version": exact})
    return IMAGE_PREFIX + json.dumps(pinned.to_json(), sort_keys=True, separators=(",", ":"))


def parse_restore_point(text: str) -> RestorePoint:
    """A restore point as `InstanceView.restore_point` shows it; ValueError when it is neither
    a disk id nor an image at an exact version."""
    if text.startswith(IMAGE_PREFIX):
        try:
            image = ImageReference.model_validate_json(text[len(IMAGE_PREFIX) :])
        except ValidationError as err:
            raise ValueError(f"restore point {text!r} is not an image reference: {err}") from err
        if not image.exact_version or image.exact_version == "latest":
            raise ValueError(f"restore point {text!r} has no exact version")
        return RestorePoint(image=image)
    if text.startswith("/") and "/disks/" in text.lower():
        return RestorePoint(os_disk_id=text)
    raise ValueError(f"restore point {text!r} is neither a managed disk id nor 'image:' + an image reference")


def same_restore_point(a: str | None, b: str | None) -> bool:
    """The same disk (resource ids are case-insensitive) or the same image at the same version."""
    if a is None or b is None:
        return a is b
    try:
        first, second = parse_restore_point(a), parse_restore_point(b)
    except ValueError:
        return a == b
    if first.os_disk_id and second.os_disk_id:
        return first.os_disk_id.lower() == second.os_disk_id.lower()
    if first.image and second.image:
        return first.image.same_image(second.image)
    return False
