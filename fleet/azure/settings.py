"""Where the Azure back end connects: subscription, resource group, ARM endpoint, TLS, auth."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fleet.azure.read_pacing import (
    DEFAULT_READ_BURST,
    DEFAULT_READS_PER_MINUTE,
    MAX_READ_BURST,
    MAX_READS_PER_MINUTE,
)

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
    # The process's ARM read budget per subscription (fleet/azure/read_pacing.py).
    reads_per_minute: int = DEFAULT_READS_PER_MINUTE
    read_burst: int = DEFAULT_READ_BURST

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
            reads_per_minute=_whole(read, "AZURE_READS_PER_MINUTE", DEFAULT_READS_PER_MINUTE),
            read_burst=_whole(read, "AZURE_READ_BURST", DEFAULT_READ_BURST),
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
        if not 1 <= self.reads_per_minute <= MAX_READS_PER_MINUTE:
            raise AzureSettingsError(_READS_PER_MINUTE_RANGE.format(self.reads_per_minute))
        if not 1 <= self.read_burst <= MAX_READ_BURST:
            raise AzureSettingsError(_READ_BURST_RANGE.format(self.read_burst))
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise AzureSettingsError(
                f"AZURE_CA_BUNDLE must name an existing PEM file of CA certificates (got {self.ca_bundle!r})"
            )


_READS_PER_MINUTE_RANGE = (
    f"AZURE_READS_PER_MINUTE must be a whole number of ARM reads a minute from 1 to {MAX_READS_PER_MINUTE:,} "
    "per worker process and subscription (ARM refills 1,500 a minute; with N processes on one "
    f"subscription, about {DEFAULT_READS_PER_MINUTE:,}/N) (got {{!r}})"
)
_READ_BURST_RANGE = (
    f"AZURE_READ_BURST must be a whole number of ARM reads sent at once from 1 to {MAX_READ_BURST:,} "
    "per worker process and subscription (ARM's bucket holds 250) (got {!r})"
)


def _whole(read: Callable[[str], str | None], name: str, default: int) -> int:
    value = read(name)
    if value is None:
        return default
    try:
        return int(value.replace("_", "").replace(",", ""))
    except ValueError:
        message = _READS_PER_MINUTE_RANGE if name == "AZURE_READS_PER_MINUTE" else _READ_BURST_RANGE
        raise AzureSettingsError(message.format(value)) from None
