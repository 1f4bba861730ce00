"""The kinds of change an upgrade applies (DESIGN.md, "Batch"): an OS image, or versions of
extensions. Each kind says what it means for an instance: whether it is on the target, what it
has now, what a rollback brings back, and how the change reads in status, plan and the Web UI.
The batch child's steps for each kind (apply, restore) are in workflows/change_kinds.py.

`kind_of` is the one place that tells the kinds apart: a new kind (a surge replacement) is one
class here and one there, not a branch in each caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from models.change import NOT_INSTALLED, Change, ExtensionTarget, installed, version_key, view_version
from models.fleet import InstanceView
from models.image import ImageReference
from models.status import RollbackMethod, os_rollback_method
from models.upgrade import UpgradeRequest


def first_source(sources: list[str], prefix: str = "") -> str:
    """What the instances to upgrade have now, most common first (without `prefix`)."""
    if not sources:
        return "nothing to upgrade"
    more = f" (+{len(sources) - 1} more)" if len(sources) > 1 else ""
    return sources[0].removeprefix(prefix) + more


@dataclass(frozen=True)
class OsImageChange:
    """Reimage each instance to an exact image version; roll back to its previous OS disk."""

    image: ImageReference
    action = "a reimage"  # what `plan`'s estimate says an instance goes through
    # What one reimage takes on Azure (OS disk written, VM booted), for `plan`'s estimate only:
    # minutes in practice, depending on the image size and the VM size.
    typical = timedelta(minutes=3)
    all_done = "every instance is on the target image or skipped"  # `plan` with no batch

    def on_target(self, view: InstanceView) -> bool:
        return view.image_reference.same_image(self.image)

    def plan_line(self, described: str, asked: str) -> str:
        """`plan`'s line for the change (resolve_image keeps the asked version, 'latest')."""
        latest = " ('latest' resolved)" if self.image.version != self.image.resolved_version else ""
        return f"target image: {self.image}{latest}"

    def current(self, view: InstanceView) -> str:
        """What the instance has now of what the change moves (an instance's `from_image`)."""
        return str(view.image_reference)

    def versions_before(self, view: InstanceView) -> dict[str, str] | None:
        """The extension versions a rollback reinstalls: none (the OS disk is restored)."""
        return None

    def target(self, only: list[ExtensionTarget] | None = None) -> str:
        """What an instance the change failed is left on, without a rollback."""
        return self.image.resolved_version

    @property
    def _same_image(self) -> str:
        """The image without its version (a source on the same image shows only its version)."""
        return str(self.image)[: -len(self.image.resolved_version)]

    def summary(self, sources: list[str]) -> str:
        """From what to what, for the upgrade's one-line summary."""
        return f"{first_source(sources, self._same_image)} → {self.target()}"

    def describe(self, sources: Mapping[str, int]) -> str:
        """`OS image Contoso:web-os:2024:2024.11.01 → 2024.12.01` (see presentation.describe_change)."""
        if not sources:
            return f"OS image {self.image} (nothing to upgrade)"
        source, *others = sources
        more = f" (+{len(others)} more)" if others else ""
        same_image = self._same_image
        to = self.target() if same_image and source.startswith(same_image) else str(self.image)
        return f"OS image {source}{more} → {to}"

    def asked(self, request: UpgradeRequest) -> str:
        """A rollout's upgrade of one set, as its Web UI summary names it."""
        return f"OS upgrade to {request.target_image}"

    def rollback_method(self, restore_points: Iterable[str | None]) -> RollbackMethod | None:
        """As the instances' restore points allow (Uniform: a reimage; Flexible: a disk swap);
        None before admission has read the instances."""
        point = next((p for p in restore_points if p), None)
        return os_rollback_method(point) if point else None


@dataclass(frozen=True)
class ExtensionChange:
    """Install each extension at an exact version, in order; roll back by reinstalling the
    versions the instance had."""

    extensions: list[ExtensionTarget]
    action = "an install"
    typical = timedelta(minutes=1)  # one install, for the estimate: on what its handler does
    all_done = "every instance has these versions or is skipped"

    def plan_line(self, described: str, asked: str) -> str:
        """`plan`'s line: each to the newest of its model's major version, or the version asked."""
        return f"change: {described} (asked: {asked})"

    def on_target(self, view: InstanceView) -> bool:
        """Every extension installed at its version, and succeeded."""
        return all(installed(view, t.name) == t.version for t in self.extensions)

    def current(self, view: InstanceView) -> str:
        """`agent 1.2.0, logs not installed` (`versions_in` reads it back)."""
        return ", ".join(f"{t.name} {view_version(view, t.name) or NOT_INSTALLED}" for t in self.extensions)

    def versions_before(self, view: InstanceView) -> dict[str, str] | None:
        """The installed versions a rollback reinstalls."""
        return {t.name: v for t in self.extensions if (v := installed(view, t.name))}

    def versions_in(self, current: str) -> dict[str, str] | None:
        """The extension versions in a text `current` wrote; None if it reads otherwise."""
        pattern = ", ".join(f"{re.escape(t.name)} (.+?)" for t in self.extensions)
        match = re.fullmatch(pattern, current, re.DOTALL) if self.extensions else None
        if match is None:
            return None
        return dict(zip((t.name for t in self.extensions), match.groups(), strict=True))

    def target(self, only: list[ExtensionTarget] | None = None) -> str:
        """The versions of `only` these extensions (None: every one of the change)."""
        return ", ".join(str(t) for t in (self.extensions if only is None else only))

    def summary(self, sources: list[str]) -> str:
        return f"extension {first_source(sources)} → {self.target()}"

    def describe(self, sources: Mapping[str, int]) -> str:
        """`extension agent 1.2.0 → 1.3.0, logs 2.0.1/2.0.2 → 2.0.3`: versions that differ between
        instances are listed with `/`."""
        if not self.extensions:
            return "extension: none admitted"
        if not sources:
            return f"extension {self.target()} (nothing to upgrade)"
        found: dict[str, set[str]] = {}
        for source in sources:
            for name, version in (self.versions_in(source) or {}).items():
                found.setdefault(name, set()).add(version)
        moves = []
        for extension in self.extensions:
            before = sorted(found.get(extension.name, set()), key=_version_order)
            moves.append(f"{extension.name} {'/'.join(before) or '?'} → {extension.version}")
        return "extension " + ", ".join(moves)

    def asked(self, request: UpgradeRequest) -> str:
        return "extension upgrade of " + ", ".join(
            f"{e.name} to {e.version}" for e in request.extensions or []
        )

    def rollback_method(self, restore_points: Iterable[str | None]) -> RollbackMethod | None:
        """None before admission has resolved the extensions."""
        return RollbackMethod.REINSTALL_PREVIOUS_VERSIONS if self.extensions else None

    def reinstalls(
        self, previous: dict[str, str] | None, only: list[ExtensionTarget] | None = None
    ) -> tuple[list[str], list[ExtensionTarget]]:
        """A rollback of `only` these extensions (None: every one): the names with no previous
        version to reinstall, and the versions to reinstall (an extension the instance already
        had at its target stays as it is)."""
        before = previous or {}
        targets = self.extensions if only is None else only
        missing = [t.name for t in targets if t.name not in before]
        back = [
            t.model_copy(update={"version": before[t.name]})
            for t in targets
            if t.name in before and before[t.name] != t.version
        ]
        return missing, back


def _version_order(version: str) -> tuple[bool, tuple[int, ...]]:
    return (version == NOT_INSTALLED, version_key(version))


ChangeKind = OsImageChange | ExtensionChange


def kind_of(change: Change) -> ChangeKind:
    """The kind of a change (as admitted, or as a batch carries it): the one place that tells
    the kinds apart."""
    if change.image is not None:
        return OsImageChange(change.image)
    return ExtensionChange(change.extensions)


def kind_asked(request: UpgradeRequest) -> ChangeKind:
    """The kind of change a request asks for (its extensions are not resolved yet)."""
    return kind_of(Change(image=request.target_image))
