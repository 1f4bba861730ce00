"""The credential the back end authenticates with: a static token (the emulator) or Azure's chain."""

from __future__ import annotations

import time
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential

from fleet.azure.settings import AzureSettings


class StaticTokenCredential:
    """Always the same bearer token (AZURE_ARM_TOKEN): for the local emulator, or a token
    obtained elsewhere (`az account get-access-token`)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> StaticTokenCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


def credential_for(settings: AzureSettings) -> AsyncTokenCredential:
    if settings.token:
        return StaticTokenCredential(settings.token)
    # az login, managed identity, AZURE_CLIENT_ID/SECRET/TENANT_ID, workload identity, ...
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()
