"""Where the Azure back end connects: subscription, resource group, ARM endpoint, TLS, auth."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

EMULATOR_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
PUBLIC_ARM_ENDPOINT = "https://management.azure.com"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Azure's rule: 1-90 letters, digits, underscores, hyphens, periods, parentheses; no final period.
_RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")


class AzureSettingsError(ValueError):
    """One environment variable has a value the back end cannot use; the message names it."""


@dataclass(frozen=True)
class AzureSettings:
    subscription_id: str = EMULATOR_SUBSCRIPTION
    resource_group: str = "fleet-emulator"
    endpoint: str = PUBLIC_ARM_ENDPOINT
    # A CA file to verify the endpoint's certificate with (the emulator's local CA); None: system CAs.
    ca_bundle: str | None = None
    # A static bearer token (the emulator); None: DefaultAzureCredential.
    token: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AzureSettings:
        env = os.environ if env is None else env

        def read(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        settings = cls(
            subscription_id=read("AZURE_SUBSCRIPTION_ID") or EMULATOR_SUBSCRIPTION,
            resource_group=read("AZURE_RESOURCE_GROUP") or "fleet-emulator",
            endpoint=(read("AZURE_ARM_ENDPOINT") or PUBLIC_ARM_ENDPOINT).rstrip("/"),
            ca_bundle=read("AZURE_CA_BUNDLE"),
            token=read("AZURE_ARM_TOKEN"),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Raise AzureSettingsError naming the first variable whose value cannot work."""
        if not _GUID.match(self.subscription_id):
            raise AzureSettingsError(
                f"AZURE_SUBSCRIPTION_ID must be a subscription GUID like {EMULATOR_SUBSCRIPTION} "
                f"(got {self.subscription_id!r})"
            )
        if not _RESOURCE_GROUP.match(self.resource_group):
            raise AzureSettingsError(
                "AZURE_RESOURCE_GROUP must be a resource group name: 1-90 letters, digits, underscores, "
                f"hyphens, periods or parentheses, not ending in a period (got {self.resource_group!r})"
            )
        parts = urlsplit(self.endpoint)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise AzureSettingsError(
                "AZURE_ARM_ENDPOINT must be an https:// URL of Azure Resource Manager, like "
                f"{PUBLIC_ARM_ENDPOINT} (got {self.endpoint!r}); plain http cannot carry a bearer token"
            )
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise AzureSettingsError(
                f"AZURE_CA_BUNDLE must name an existing PEM file of CA certificates (got {self.ca_bundle!r})"
            )
