"""Azure's ImageReference: a platform image (publisher/offer/sku/version) or a gallery image."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from models.base import AzureModel

LATEST = "latest"


class ImageReference(AzureModel):
    """A platform image by URN parts, or an Azure Compute Gallery image definition `id`.

    `version` may be "latest"; admission resolves it and records the result in
    `exactVersion`, as Azure does.
    """

    publisher: str | None = None
    offer: str | None = None
    sku: str | None = None
    id: str | None = None
    version: str = LATEST
    exact_version: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ImageReference:
        platform = [self.publisher, self.offer, self.sku]
        if self.id:
            if any(platform):
                raise ValueError("give either a gallery image id or publisher/offer/sku, not both")
        elif not all(platform):
            raise ValueError(
                "an image needs publisher, offer and sku (or a gallery image id); "
                "write it as PUBLISHER:OFFER:SKU:VERSION or GALLERY_IMAGE_ID/versions/VERSION"
            )
        if not self.version:
            raise ValueError("version must not be empty (use 'latest' for the newest)")
        return self

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """PUBLISHER:OFFER:SKU[:VERSION] or /…/galleries/G/images/I[/versions/V]."""
        text = text.strip()
        fields: dict[str, Any]
        if text.startswith("/"):
            image_id, marker, version = text.partition("/versions/")
            fields = {"id": image_id, "version": version if marker else LATEST}
        else:
            parts = text.split(":")
            if len(parts) not in (3, 4) or not all(parts):
                raise ValueError(
                    f"image {text!r} is not PUBLISHER:OFFER:SKU:VERSION or GALLERY_IMAGE_ID/versions/VERSION"
                )
            fields = dict(zip(("publisher", "offer", "sku", "version"), parts))
        return cls.model_validate(fields)

    @property
    def definition(self) -> tuple[str, ...]:
        """What identifies the image regardless of version (case-insensitive, as in Azure)."""
        if self.id:
            return (self.id.lower(),)
        return (self.publisher.lower(), self.offer.lower(), self.sku.lower())  # type: ignore[union-attr]

    @property
    def resolved_version(self) -> str:
        return self.exact_version or self.version

    def same_image(self, other: ImageReference) -> bool:
        """The same definition at the same concrete version."""
        return self.definition == other.definition and self.resolved_version == other.resolved_version

    def at_version(self, version: str) -> ImageReference:
        return self.model_copy(update={"exact_version": version})

    def with_version(self, version: str) -> str:
        """The reference as text at `version`; empty: the image without a version."""
        base = self.id if self.id else f"{self.publisher}:{self.offer}:{self.sku}"
        return f"{base}{'/versions/' if self.id else ':'}{version}" if version else base

    def __str__(self) -> str:
        return self.with_version(self.resolved_version)
