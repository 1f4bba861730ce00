"""What an upgrade changes on each instance: an OS image, or the versions of extensions.

One engine applies both (DESIGN.md, "Batch"): the batch child reimages to an image and restores
the previous OS disk, or installs an extension version and reinstalls the previous one. An
upgrade carries one kind of change; which one is in `UpgradeRequest.extensions` (None: the OS
image). What each kind means for an instance is in rules/change_kinds.py.

Extension versions follow Azure's rules: a major version is never applied by an upgrade (it
takes a model change, `typeHandlerVersion`), so the newest version of an extension is the newest
of the model's major version published in the scale set's region.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from models.base import AzureModel
from models.fleet import InstanceView
from models.image import ImageReference

NOT_INSTALLED = "not installed"  # what `ExtensionChange.current` says of an extension an instance lacks

ExtensionVersion = Annotated[str, Field(pattern=r"^\d+(\.\d+){1,3}$", max_length=40)]


def version_key(version: str) -> tuple[int, ...]:
    """Image and extension versions compare numerically, part by part (1.9 before 1.10)."""
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


def major_of(version: str) -> str:
    return version.split(".", 1)[0]


def newest_of_major(versions: list[str], major: str) -> str | None:
    """The newest version with this major (never a newer major: it may break)."""
    same = [v for v in versions if major_of(v) == major]
    return max(same, key=version_key) if same else None


class ExtensionRequest(AzureModel):
    """One extension an upgrade is asked to move: by its name in the scale set's model, to an
    exact version (a rollout's) or, without one, to the newest of the model's major version."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    version: ExtensionVersion | None = None


class ExtensionTarget(AzureModel):
    """One extension an admitted upgrade moves, to an exact version."""

    name: str
    publisher: str
    type_: str = Field(alias="type")
    version: str
    model_version: str = Field(default="", description="typeHandlerVersion in the scale set's model")

    @property
    def full_type(self) -> str:
        return f"{self.publisher}.{self.type_}"

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def describe_extensions(targets: list[ExtensionTarget]) -> str:
    """The change an extension upgrade carries, as one line: `extension A 1.3.0, B 2.1.4`."""
    return "extension " + ", ".join(str(t) for t in targets)


class Change(AzureModel):
    """The change an admitted upgrade applies to each instance: an exact OS image, or exact
    versions of extensions (each installed on its own, in order)."""

    image: ImageReference | None = None
    extensions: list[ExtensionTarget] = Field(default_factory=list)

    def __str__(self) -> str:
        return str(self.image) if self.image is not None else describe_extensions(self.extensions)


def view_version(view: InstanceView, name: str) -> str | None:
    """The version of extension `name` on the instance, whatever its state."""
    found = view.extension(name)
    return found.type_handler_version if found else None


def installed(view: InstanceView, name: str) -> str | None:
    """The version of extension `name` installed and enabled on the instance (not a failed or
    unfinished install)."""
    found = view.extension(name)
    return found.type_handler_version if found is not None and found.succeeded else None
