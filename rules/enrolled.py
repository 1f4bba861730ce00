"""What a new version would reach (pure): the enrolled sets an automatic upgrade may move, as the
watcher groups them into rollouts and `upgradectl rollout plan` previews them."""

from __future__ import annotations

from collections.abc import Iterable

from models.automatic import Enrollment, ExtensionEnrollment, image_source_key


def by_image_source(enrollments: Iterable[Enrollment]) -> dict[str, list[Enrollment]]:
    """The enrolled sets whose OS image an automatic upgrade may reach (no note: they follow
    'latest'), by image source, in the order given."""
    by_source: dict[str, list[Enrollment]] = {}
    for enrollment in enrollments:
        if enrollment.note is None and enrollment.image_reference is not None:
            by_source.setdefault(image_source_key(enrollment.image_reference), []).append(enrollment)
    return by_source


def automatic_extensions(enrollments: Iterable[Enrollment]) -> list[tuple[Enrollment, ExtensionEnrollment]]:
    """The enrolled sets' extensions an automatic upgrade may reach (no note: enrolled, and
    Azure does not upgrade them itself; installed on instances), by set (in the order given) and
    extension name."""
    return [
        (enrollment, extension)
        for enrollment in enrollments
        if enrollment.location
        for extension in sorted(enrollment.extensions.values(), key=lambda e: e.name)
        if extension.note is None and extension.installed
    ]


def enrolled_instances(enrollments: Iterable[Enrollment]) -> dict[str, int]:
    """Per region, how many instances its enrolled sets have (what staged phases order regions
    by; a set not counted yet counts 0)."""
    instances: dict[str, int] = {}
    for enrollment in enrollments:
        if enrollment.location:
            region = enrollment.location.lower()
            instances[region] = instances.get(region, 0) + (enrollment.instance_count or 0)
    return instances
