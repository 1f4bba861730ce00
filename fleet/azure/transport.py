"""The HTTP transport of the Azure back end: azure-core's aiohttp transport, keeping connections.

azure-core builds a new SSLContext for every request when `connection_verify` names a CA file
(AZURE_CA_BUNDLE: the emulator's local CA, or a proxy's), and aiohttp pools connections per SSL
context, so every ARM call opened a TCP connection of its own: a DNS lookup, a TLS handshake on
both ends and the CA file read again. That was half the CPU of a 1,000-instance upgrade against
the emulator. Here the session's connector verifies with one context, made once, and requests
reuse its pooled connections as they do against Azure with the system's CAs. aiohttp's
trust_env (proxy variables, ~/.netrc) stays on only when there is something to honour.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport


def environment_matters() -> bool:
    """Whether there are proxy variables or a netrc file for aiohttp's trust_env to honour.
    With trust_env on, aiohttp looks for both on a thread for every request (a fifth of a
    worker's CPU under load); without any, there is nothing to find."""
    netrc = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    return bool(urllib.request.getproxies()) or netrc.exists()


# azure-core exports AioHttpTransport through a module __getattr__ (aiohttp is optional there),
# so mypy sees Any; its defining module is private and its methods untyped.
class PooledTransport(AioHttpTransport):  # type: ignore[misc]
    """`PooledTransport(ca_bundle, **client_kwargs)`; `connections_opened` counts the TCP
    connections it opened (one per concurrent request at most, not one per request)."""

    session: aiohttp.ClientSession | None  # the base class's, untyped there

    def __init__(self, ca_bundle: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._context: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        )
        self.connections_opened = 0

    async def open(self) -> None:
        # Only a first open makes the session; after close() the base class refuses to reopen.
        if self.session is None and not self._has_been_opened:
            tracing = aiohttp.TraceConfig()
            tracing.on_connection_create_end.append(self._counted)
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._context),
                trust_env=self._use_env_settings and environment_matters(),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trace_configs=[tracing],
            )
        await super().open()

    async def _counted(self, *_: Any) -> None:
        self.connections_opened += 1
