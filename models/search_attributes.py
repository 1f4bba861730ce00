"""The typed search attributes of an upgrade, declared once, shared by the workflows that set them
and the command line and worker that read and register them (Temporal's types only, no workflow code).

Operators find upgrades in the Web UI and with `upgradectl history` by these: the scale set, the
target image, the status (RollingForward, Completed, Faulted, Cancelled) and who started it. They
must be registered on the namespace (the worker does it at start-up where it may, `make demo`
passes them to the dev server, the compose setup creates them).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

SCALE_SET = SearchAttributeKey.for_keyword("ScaleSet")
TARGET_IMAGE = SearchAttributeKey.for_keyword("TargetImage")
UPGRADE_STATUS = SearchAttributeKey.for_keyword("UpgradeStatus")
STARTED_BY = SearchAttributeKey.for_keyword("StartedBy")
ALL = (SCALE_SET, TARGET_IMAGE, UPGRADE_STATUS, STARTED_BY)


def at_start(scale_set: str, target_image: str, started_by: str) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(SCALE_SET, scale_set),
            SearchAttributePair(TARGET_IMAGE, target_image),
            SearchAttributePair(UPGRADE_STATUS, "RollingForward"),
            SearchAttributePair(STARTED_BY, started_by),
        ]
    )
